"""The pure half of bench/discovery_experiment.py: statistics, goals, the plot and the markdown table."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from discovery.stats import PAIRED_T, mean_ci, paired, stderr

# ---------------------------------------------------------------- statistics (pure)


def best_so_far(values: list[float | None], k: int) -> list[float | None]:
    """Best full-fidelity mean among proposals 1..i, for i = 1..k (None until one is scored)."""
    out, best = [], None
    for i in range(k):
        v = values[i] if i < len(values) else None
        if v is not None and math.isfinite(v) and (best is None or v > best):
            best = v
        out.append(best)
    return out


def compare(values: dict[int, float], base: dict[int, float], test: str = PAIRED_T) -> dict:
    """`values` vs `base`, both {seed: fitness}, paired by seed: every loss starts from the same model and sees
    the same data order and scoring samples per seed, so the seed-to-seed noise they share cancels in the
    per-seed differences. diff = mean difference on the common seeds, se = its standard error, z = diff / se
    (the paired t statistic); `beats` = the 95% Student-t interval of diff (n-1 degrees of freedom, not a
    normal z: at n = 3 the t quantile is 4.30, not 1.96) lies above 0; p = two-sided p-value of `test`
    (`discovery.stats.paired`). The unpaired SE (all values of each side, as if independent) is kept beside it."""
    c = paired(values, base, test)
    out = {"diff": c.diff, "se": c.se, "z": c.t, "n": c.n, "beats": c.beats, "p": c.p_value, "test": c.test,
           "ci_low": c.ci_low, "ci_high": c.ci_high, "unpaired_se": math.nan, "unpaired_z": math.nan}
    if values and base:
        out["unpaired_se"] = math.sqrt(stderr(list(values.values())) ** 2 + stderr(list(base.values())) ** 2)
        gap = statistics.fmean(values.values()) - statistics.fmean(base.values())
        out["unpaired_z"] = _ratio(gap, out["unpaired_se"])
    return out


def _ratio(diff: float, se: float) -> float:
    if se > 0:
        return diff / se
    return math.copysign(math.inf, diff) if diff else 0.0


def summarize(values: list[float]) -> dict:
    mean, low, high = mean_ci(values) if values else (math.nan, math.nan, math.nan)
    return {"n": len(values), "mean": mean, "ci_half": (high - low) / 2 if values else math.nan,
            "se": stderr(values) if values else math.nan, "values": values}


@dataclass(frozen=True)
class Bar:
    """A confirmed win (issue 17, goal a): on the fresh seeds, at least `min_n` of them, DPO is beaten (95%
    paired t) by more than `min_z` paired standard errors, and on at least `heldout` held-out task instances
    (the same fresh seeds) DPO is beaten too (95% paired t)."""

    min_z: float = 3.0
    min_n: int = 10
    heldout: int = 2


def confirmed(seed: dict, bar: Bar) -> bool:
    fresh = seed.get("fresh_vs_dpo") or {}
    held = sum(1 for c in (seed.get("heldout") or {}).values() if c.get("beats"))
    return (bool(fresh.get("beats")) and (fresh.get("z") or -math.inf) > bar.min_z
            and fresh.get("n", 0) >= bar.min_n and held >= bar.heldout)


def goals(arms: dict, llm: str, control: str, seeds: int, bar: Bar = Bar()) -> list[dict]:
    """The issue's two goals, each met / not met with the evidence."""
    out = []
    if llm not in arms:
        return [{"goal": "LLM arm beats DPO", "met": None, "why": f"arm '{llm}' was not run"}]
    wins = sum(1 for s in arms[llm]["seeds"] if confirmed(s, bar))
    need = math.ceil(2 * seeds / 3)
    out.append({"goal": f"{llm} winner beats DPO by > {bar.min_z:g} paired SE on >= {bar.min_n} fresh seeds and on "
                        f">= {bar.heldout} held-out instances, in >= {need} of {seeds} loop seeds",
                "met": wins >= need, "why": f"{wins} of {seeds} loop seeds"})
    if control in arms:
        mine, theirs = arms[llm]["median_proposals_to_beat_dpo"], arms[control]["median_proposals_to_beat_dpo"]
        out.append({"goal": f"{llm} beats DPO (in-run, paired t, 95%) in fewer proposals than {control}",
                    "met": mine < theirs, "why": f"median proposals: {llm} {_count(mine)}, {control} {_count(theirs)}"})
    return out


def strict(obj):
    """JSON-safe: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def _count(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:g}"


# ---------------------------------------------------------------- outputs


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    k = result["settings"]["proposals"]
    xs = list(range(1, k + 1))
    for name, arm in result["arms"].items():
        curves = [s["best_so_far"] for s in arm["seeds"]]
        mean = [_nanmean([c[i] for c in curves]) for i in range(k)]
        low = [_nanmin([c[i] for c in curves]) for i in range(k)]
        high = [_nanmax([c[i] for c in curves]) for i in range(k)]
        (line,) = left.plot(xs, mean, marker=".", label=f"{name} ({len(curves)} loop seeds; mean of those scored)")
        left.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    fresh = result["reevaluation"]
    left.axhline(result["dpo_in_run"], color="k", ls="--", label="DPO (in-run seeds)")
    others = {k: v for k, v in result["baselines_in_run"].items() if k != "dpo"}
    if others:  # the curves are in-run numbers: compare them with the baselines run beside them
        best_lib = max(others, key=others.get)
        left.axhline(others[best_lib], color="gray", ls=":", label=f"best other baseline: {best_lib} (in-run seeds)")
    left.set(xlabel="proposals", ylabel="best-so-far fitness (full fidelity)", title="best so far; band = min..max")
    left.legend(fontsize=8)
    rows = sorted(fresh.items(), key=lambda kv: kv[1]["mean"] if kv[1]["n"] else -math.inf)[-14:]
    ys = range(len(rows))
    right.errorbar([r[1]["mean"] for r in rows], ys, xerr=[r[1]["ci_half"] for r in rows], fmt="o", ms=4)
    right.set_yticks(list(ys), [r[0] for r in rows], fontsize=7)
    right.axvline(fresh["dpo"]["mean"], color="k", ls="--")
    seeds = result["fresh_seeds"]
    right.set(xlabel=f"fitness on fresh seeds {seeds[0]}..{seeds[-1]} (mean ± 95% CI)", title="same harness, top 14")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def baselines_in_run(arms: dict) -> dict[str, float]:
    """Each baseline's in-run full-fidelity mean, averaged over every arm-seed that ran it."""
    values: dict[str, list[float]] = {}
    for arm in arms.values():
        for seed in arm["seeds"]:
            for name, mean in seed["baselines_in_run"].items():
                values.setdefault(name, []).append(mean)
    return {name: statistics.fmean(v) for name, v in values.items()}


def _finite(xs):
    return [x for x in xs if x is not None and math.isfinite(x)]


def _nanmean(xs):
    return statistics.fmean(_finite(xs)) if _finite(xs) else math.nan


def _nanmin(xs):
    return min(_finite(xs)) if _finite(xs) else math.nan


def _nanmax(xs):
    return max(_finite(xs)) if _finite(xs) else math.nan


def markdown(result: dict) -> str:
    fresh, lines = result["reevaluation"], []
    lines.append("| arm | loop seed | proposals | valid | duplicate | failed (training) | wall (s) | LLM tokens "
                 "| in-run: beats DPO at proposal | winner | winner on fresh seeds (95% CI) | vs DPO, paired by seed "
                 "| held-out instances: vs DPO |")
    lines.append("|" + "---|" * 13)
    for name, arm in result["arms"].items():
        for s in arm["seeds"]:
            w, sh = s["winner"], s["shares"]
            fr = fresh.get(s["label"]) if w else None
            lines.append(
                f"| {name} | {s['seed']} | {s['proposals']} | {sh['valid']:.0%} | {sh['duplicate']:.0%} | "
                f"{sh['failed']:.0%} | {s['wall_s']:.0f} | {s['llm_tokens']} | {_count(s['proposals_to_beat_dpo'])} | "
                f"{w['name'] if w else '-'} | {_fit(fr)} | "
                f"{_z(s.get('fresh_vs_dpo'))} | {_heldout(s.get('heldout'))} |")
    lines += ["", f"Fresh seeds {result['fresh_seeds']}, same harness for all (top 8 and DPO):", "",
              "| loss | fitness (95% CI) | vs DPO, paired by seed |", "|---|---|---|"]
    ranked = sorted(fresh.items(), key=lambda kv: -kv[1]["mean"] if kv[1]["n"] else math.inf)
    shown = [kv for kv in ranked[:8]] + [kv for kv in ranked[8:] if kv[0] == "dpo"]
    for label, s in shown:
        z = _z(compare(s["by_seed"], fresh["dpo"]["by_seed"])) if s["n"] > 1 and label != "dpo" else "-"
        lines.append(f"| {label} | {_fit(s)} | {z} |")
    lines += ["", "Goals:", ""] + [f"- {'MET' if g['met'] else 'NOT MET' if g['met'] is False else 'n/a'}: "
                                    f"{g['goal']} ({g['why']})" for g in result["goals"]]
    return "\n".join(lines) + "\n"


def _heldout(by_instance: dict | None) -> str:
    if not by_instance:
        return "-"
    return "; ".join(f"{i}: {c['diff']:+.4f} (z {c['z']:+.1f}{', beats' if c['beats'] else ''})"
                     for i, c in by_instance.items())


def _fit(s: dict | None) -> str:
    return "-" if not s or not s["n"] else f"{s['mean']:.4f} ± {s['ci_half']:.4f} (n={s['n']})"


def _z(c: dict | None) -> str:
    if not c:
        return "-"
    return f"{c['diff']:+.4f} (z {c['z']:+.1f}{', beats' if c['beats'] else ''}; unpaired z {c['unpaired_z']:+.1f})"

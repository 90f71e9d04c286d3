"""What an export says about its loss: provenance, formula, fitness with CI and seeds, task, config, versions."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

from discovery import __version__
from discovery.archive import Archive, CandidateSummary
from discovery.archive.store import environment_versions
from discovery.inspect.views import jsonable, per_beta, train_beta
from discovery.stats import fitness_text

CONFIG_SECTIONS = ("task", "train", "eval", "sandbox")  # the parts of the run config that define the score


def clean_name(name: str) -> str:
    """A Python identifier for the exported function, e.g. 'Log-Ratio Mod. 2' -> 'log_ratio_mod_2_loss'."""
    base = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "discovered"
    if base[0].isdigit():
        base = "loss_" + base
    return base if base.endswith("loss") else base + "_loss"


def class_name(function_name: str) -> str:
    return "".join(part.capitalize() for part in function_name.split("_") if part) + "DPOTrainer"


def fitness_block(summary: CandidateSummary, archive: Archive) -> dict[str, Any]:
    f = summary.fitness
    used = [e.result for e in archive.evaluations(summary.id, fidelity=summary.fidelity)
            if e.result.ok] if summary.fidelity else []
    seeds = sorted({r.seed for r in used})
    betas = sorted({r.beta for r in used if r.beta is not None})
    if f is None:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0, "seeds": [], "betas": [], "fidelity": None}
    return jsonable({"mean": f.mean, "ci_low": f.ci_low, "ci_high": f.ci_high, "n": f.n, "seeds": seeds,
                     "betas": betas,
                     "values": list(f.values), "fidelity": summary.fidelity, "level": 0.95,
                     "interval": "Student t over seeds"})


def build_metadata(archive: Archive, run_dir: str | Path, summary: CandidateSummary, function_name: str,
                   selection: str) -> dict[str, Any]:
    info = archive.run_info()
    config = info.config if info else {}
    c = summary.candidate
    return {
        "function": function_name,
        "candidate": {"id": summary.id, "name": c.name, "status": str(c.status), "origin": str(c.origin),
                      "generation": c.generation, "parents": list(c.parent_ids), "proposer": c.proposer,
                      "model": c.model, "code_hash": c.code_hash, "fingerprint": c.fingerprint},
        "thought": c.thought,
        "formula": {"plain": c.sympy, "latex": c.latex,
                    "margin": "rho = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))"},
        "fitness": fitness_block(summary, archive),
        "results_per_beta": [g.to_dict() for g in per_beta(archive.evaluations(summary.id), train_beta(config))],
        "selection": selection,
        "task": {"name": info.task_name if info else None, "cache_key": info.task_cache_key if info else None},
        "config": {k: config[k] for k in CONFIG_SECTIONS if k in config} | {"seed": config.get("seed")},
        "train_beta": train_beta(config),
        "diagnostics": jsonable(c.diagnostics),
        "run": {"dir": str(Path(run_dir).resolve()), "created_at": _iso(info.created_at) if info else None,
                "host": info.host if info else None, "git_revision": info.git_revision if info else None,
                "schema_version": info.schema_version if info else None},
        "versions": {"run": info.versions if info else {}, "export": environment_versions()},
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "exported_by": f"discovery {__version__}",
    }


def _iso(t: float | None) -> str | None:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds") if t else None


def fitness_line(fitness: dict[str, Any]) -> str:
    """`stats.fitness_text` (as every view writes it), then the interval, the seeds (x betas) and the fidelity."""
    if fitness.get("mean") is None:
        return "not scored"
    low, high = fitness.get("ci_low"), fitness.get("ci_high")
    has_ci = low is not None and high is not None and math.isfinite(high - low)
    ci = f"95% CI [{low:.4f}, {high:.4f}], Student t, " if has_ci else ""
    over = f"seeds {fitness['seeds']}" + (f" x betas {fitness['betas']}" if fitness.get("betas") else "")
    return (f"{fitness_text(fitness['mean'], low, high, fitness['n'])}: {ci}evaluations over {over} "
            f"at {fitness['fidelity']} fidelity")

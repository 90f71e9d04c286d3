"""The archive's read API (a mixin of `Archive`): typed records out, never a row or a cursor."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from discovery import ranking
from discovery.archive import rows
from discovery.archive.records import (
    CandidateDetail,
    CandidateSummary,
    Evaluation,
    Event,
    LLMCallRecord,
    RunInfo,
    Usage,
)
from discovery.candidate import Candidate, Origin, Status
from discovery.inner_loop.sweep import sweep_fitness

# Higher fidelities first: a candidate's fitness is measured at the first of these it has results for.
FIDELITY_ORDER = ("full", "screen")


class ArchiveQueries:
    def _query(self, sql: str, params=()) -> list: ...  # provided by Archive

    # ---------------------------------------------------------------- run

    def run_info(self) -> RunInfo | None:
        found = self._query("SELECT * FROM run WHERE id = 1")
        version = self._query("SELECT MAX(version) AS v FROM schema_version")[0]["v"]
        return rows.run_info_of(found[0], version) if found else None

    def schema_version(self) -> int:
        return int(self._query("SELECT MAX(version) AS v FROM schema_version")[0]["v"] or 0)

    # ---------------------------------------------------------------- candidates

    def candidate(self, candidate_id: int) -> Candidate:
        found = self._query("SELECT * FROM candidates WHERE id = ?", (candidate_id,))
        if not found:
            from discovery.archive.store import ArchiveError

            raise ArchiveError(f"no candidate with id {candidate_id}")
        return rows.candidate_of(found[0])

    def candidates(self, status: Status | str | None = None, origin: Origin | str | None = None) -> list[Candidate]:
        """Candidates in id order (= proposal order), optionally one status / origin."""
        sql, params = _filter("SELECT * FROM candidates", status=status, origin=origin)
        return [rows.candidate_of(r) for r in self._query(sql + " ORDER BY id", params)]

    def summaries(self, status: Status | str | None = None, origin: Origin | str | None = None) -> list[CandidateSummary]:
        """Candidates with their fitness (n, mean, 95% CI) at the highest fidelity reached, in id order."""
        sql, params = _filter("SELECT * FROM candidates", status=status, origin=origin)
        found = self._query(sql + " ORDER BY id", params)
        evals = self._evaluations_by_candidate([r["id"] for r in found])
        rule = self.fitness_rule()
        return [_summary(r, evals.get(r["id"], []), rule) for r in found]

    def summary(self, candidate_id: int) -> CandidateSummary:
        self.candidate(candidate_id)  # a clear error for an unknown id
        found = self._query("SELECT * FROM candidates WHERE id = ?", (candidate_id,))
        return _summary(found[0], self.evaluations(candidate_id), self.fitness_rule())

    def fitness_rule(self) -> tuple[str, float | None, float | None]:
        """(eval.fitness, train.beta, target KL) of this run: how results at several betas become one fitness
        (`discovery.inner_loop.sweep.sweep_fitness`); the target KL (matched_kl) is DPO's mean KL at train.beta."""
        info = self.run_info()
        config = (info.config if info else None) or {}
        mode = (config.get("eval") or {}).get("fitness", "best_beta")
        beta = (config.get("train") or {}).get("beta")
        return mode, beta, self._dpo_kl(beta) if mode == "matched_kl" else None

    def _dpo_kl(self, beta: float | None) -> float | None:
        dpo = [c for c in self.candidates(origin=Origin.LIBRARY) if c.name == "dpo"]
        kls = [e.result.metrics["kl"] for e in (self.evaluations(dpo[0].id, "full") if dpo else [])
               if e.result.ok and "kl" in e.result.metrics and (beta is None or e.result.beta is None
                                                             or abs(e.result.beta - beta) < 1e-9)]
        return sum(kls) / len(kls) if kls else None

    def best(self, k: int = 1, include_baselines: bool = True) -> list[CandidateSummary]:
        """The top `k` of those that may be called best (`discovery.ranking`), best first."""
        return ranking.best(self.summaries(status=Status.EVALUATED), self.needs_reeval(), include_baselines)[:k]

    def leaderboard(self, k: int | None = None) -> list[CandidateSummary]:
        """The scored candidates in table order (`ranking.order`): the first is `best()[0]` when there is one."""
        return ranking.leaderboard(self.summaries(), self.needs_reeval())[:k]

    def needs_reeval(self) -> bool:
        """Whether this run confirms proposals on fresh seeds before one may be called best."""
        info = self.run_info()
        return ranking.reeval_required(info.config if info else None)

    def baseline(self, name: str) -> CandidateSummary | None:
        """The library baseline `name` (e.g. 'dpo') as evaluated in this run, if it was."""
        found = self._query("SELECT id FROM candidates WHERE origin = ? AND name = ? ORDER BY id LIMIT 1",
                            (str(Origin.LIBRARY), name))
        return self.summary(found[0]["id"]) if found else None

    def detail(self, candidate_id: int) -> CandidateDetail:
        """One candidate with its evaluations, LLM calls, parents, ancestors, children and duplicates."""
        summary = self.summary(candidate_id)
        parents = [self.candidate(p) for p in summary.candidate.parent_ids if self._exists(p)]
        children = [c for c in self.candidates() if candidate_id in c.parent_ids]
        duplicates = [rows.candidate_of(r) for r in
                      self._query("SELECT * FROM candidates WHERE duplicate_of = ? ORDER BY id", (candidate_id,))]
        return CandidateDetail(
            summary=summary, evaluations=self.evaluations(candidate_id), llm_calls=self.llm_calls(candidate_id),
            parents=parents, ancestors=self.ancestors(candidate_id), children=children, duplicates=duplicates,
            events=self.events(candidate_id=candidate_id),
        )

    def ancestors(self, candidate_id: int) -> list[Candidate]:
        seen: set[int] = {candidate_id}
        out: list[Candidate] = []
        frontier = list(self.candidate(candidate_id).parent_ids)
        while frontier:
            pid = frontier.pop(0)
            if pid in seen or not self._exists(pid):
                continue
            seen.add(pid)
            parent = self.candidate(pid)
            out.append(parent)
            frontier.extend(parent.parent_ids)
        return out

    def all_probe_values(self) -> dict[int, list[float]]:
        """{candidate id: gradient-probe values} of every candidate, in one query."""
        return {r["id"]: json.loads(r["probe_values_json"])
                for r in self._query("SELECT id, probe_values_json FROM candidates")}

    def probe_values(self, candidate_id: int) -> list[float]:
        found = self._query("SELECT probe_values_json FROM candidates WHERE id = ?", (candidate_id,))
        return json.loads(found[0]["probe_values_json"]) if found else []

    def stage(self, candidate_id: int) -> str:
        found = self._query("SELECT stage FROM candidates WHERE id = ?", (candidate_id,))
        return found[0]["stage"] if found else ""

    def status_counts(self, include_baselines: bool = False) -> dict[str, int]:
        where = "" if include_baselines else " WHERE origin != 'library'"
        found = self._query(f"SELECT status, COUNT(*) AS n FROM candidates{where} GROUP BY status")
        return {str(s): 0 for s in Status} | {r["status"]: r["n"] for r in found}

    def proposal_count(self) -> int:
        """Proposals stored so far (everything that is not a library baseline)."""
        return int(self._query("SELECT COUNT(*) AS n FROM candidates WHERE origin != 'library'")[0]["n"])

    def _exists(self, candidate_id: int) -> bool:
        return bool(self._query("SELECT 1 FROM candidates WHERE id = ?", (candidate_id,)))

    # ---------------------------------------------------------------- evaluations, calls, events

    def evaluations(self, candidate_id: int | None = None, fidelity: str | None = None) -> list[Evaluation]:
        sql, params = "SELECT * FROM evaluations WHERE 1=1", []
        if candidate_id is not None:
            sql, params = sql + " AND candidate_id = ?", [*params, candidate_id]
        if fidelity is not None:
            sql, params = sql + " AND fidelity = ?", [*params, fidelity]
        return [rows.evaluation_of(r) for r in self._query(sql + " ORDER BY id", params)]

    def llm_calls(self, candidate_id: int | None = None) -> list[LLMCallRecord]:
        if candidate_id is None:
            found = self._query("SELECT * FROM llm_calls ORDER BY id")
        else:
            found = self._query("SELECT * FROM llm_calls WHERE candidate_id = ? ORDER BY id", (candidate_id,))
        return [rows.llm_call_of(r) for r in found]

    def usage(self) -> Usage:
        r = self._query("SELECT COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS p, "
                        "COALESCE(SUM(completion_tokens), 0) AS c, COALESCE(SUM(cost_usd), 0) AS usd FROM llm_calls")[0]
        return Usage(calls=r["calls"], prompt_tokens=r["p"], completion_tokens=r["c"], cost_usd=float(r["usd"]))

    def usage_by_model(self) -> dict[str, Usage]:
        """LLM usage totals per model (several with `proposer.models`), in order of first call."""
        found = self._query("SELECT model, COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS p, "
                            "COALESCE(SUM(completion_tokens), 0) AS c, COALESCE(SUM(cost_usd), 0) AS usd "
                            "FROM llm_calls GROUP BY model ORDER BY MIN(id)")
        return {r["model"]: Usage(calls=r["calls"], prompt_tokens=r["p"], completion_tokens=r["c"],
                                  cost_usd=float(r["usd"])) for r in found}

    def events(self, since: float | None = None, kind: str | None = None,
               candidate_id: int | None = None) -> list[Event]:
        """Events in time order (run start/end, proposals, status changes, evaluations, budget, errors)."""
        sql, params = "SELECT * FROM events WHERE 1=1", []
        for column, op, value in (("t", ">", since), ("kind", "=", kind), ("candidate_id", "=", candidate_id)):
            if value is not None:
                sql, params = f"{sql} AND {column} {op} ?", [*params, value]
        return [rows.event_of(r) for r in self._query(sql + " ORDER BY id", params)]

    def _evaluations_by_candidate(self, ids: list[int]) -> dict[int, list[Evaluation]]:
        out: dict[int, list[Evaluation]] = defaultdict(list)
        if ids:
            for e in self.evaluations():
                out[e.candidate_id].append(e)
        return out


def _filter(sql: str, **columns: Any) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for column, value in columns.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(str(value))
    return (sql + (" WHERE " + " AND ".join(clauses) if clauses else "")), params


def _summary(row: Any, evals: list[Evaluation], rule: tuple = ("best_beta", None, None)) -> CandidateSummary:
    candidate = rows.candidate_of(row)
    failed = sum(1 for e in evals if not e.result.ok)
    for fidelity in FIDELITY_ORDER:
        done = [e for e in evals if e.result.fidelity == fidelity and e.result.ok and e.result.fitness is not None
                and math.isfinite(e.result.fitness)]
        rated = sweep_fitness([e.result for e in done], *rule) if done else None  # one fitness over the betas
        if rated is not None and rated.fitness is not None:
            at = rated.beta  # metrics at the beta the fitness is measured at (all of them when pooled/matched)
            metrics = _mean_metrics([e for e in done if at is None or _at(e.result.beta, rule[1], at)])
            return CandidateSummary(candidate.with_fitness(rated.fitness, metrics), row["stage"], fidelity,
                                    rated.fitness, failed)
    return CandidateSummary(candidate, row["stage"], None, None, failed)


def _at(beta: float | None, default: float | None, at: float) -> bool:
    beta = beta if beta is not None else default
    return beta is not None and abs(beta - at) < 1e-9


def _mean_metrics(evals: list[Evaluation]) -> dict[str, float]:
    """Per-metric mean over the evaluations (numeric metrics only)."""
    sums: dict[str, list[float]] = defaultdict(list)
    for e in evals:
        for key, value in e.result.metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                sums[key].append(float(value))
    return {k: sum(v) / len(v) for k, v in sums.items()}


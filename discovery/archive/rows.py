"""Conversions between sqlite3 rows and the typed records. Private to discovery.archive."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from discovery.archive.records import Evaluation, Event, LLMCallRecord, RunInfo
from discovery.candidate import Candidate, EvalResult, Origin, Status

if TYPE_CHECKING:  # the proposer's record, for the type only
    from discovery.proposer.base import LLMCall


def dumps(value: Any) -> str:
    return json.dumps(value, default=_jsonable, sort_keys=True, allow_nan=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def candidate_values(c: Candidate) -> dict[str, Any]:
    return {
        "name": c.name,
        "thought": c.thought or "",
        "code": c.code,
        "code_hash": c.code_hash,
        "origin": str(Origin(c.origin)),
        "parent_ids_json": dumps(list(c.parent_ids)),
        "generation": int(c.generation),
        "proposer": c.proposer or "",
        "model": c.model or "",
        "status": str(Status(c.status)),
        "reason": c.reason or "",
        "fingerprint": c.fingerprint,
        "duplicate_of": c.duplicate_of,
        "sympy": c.sympy,
        "latex": c.latex,
        "diagnostics_json": dumps(c.diagnostics or {}),
    }


def candidate_of(row: sqlite3.Row) -> Candidate:
    return Candidate(
        id=row["id"],
        name=row["name"],
        code=row["code"],
        thought=row["thought"],
        origin=Origin(row["origin"]),
        parent_ids=tuple(json.loads(row["parent_ids_json"])),
        generation=row["generation"],
        proposer=row["proposer"],
        model=row["model"],
        status=Status(row["status"]),
        reason=row["reason"],
        fingerprint=row["fingerprint"],
        duplicate_of=row["duplicate_of"],
        sympy=row["sympy"],
        latex=row["latex"],
        diagnostics=json.loads(row["diagnostics_json"]),
    )


def evaluation_values(candidate_id: int, r: EvalResult) -> dict[str, Any]:
    return {
        "candidate_id": candidate_id,
        "seed": int(r.seed),
        "fidelity": r.fidelity,
        "beta": None if r.beta is None else float(r.beta),
        "ok": int(bool(r.ok) and r.fitness is not None),
        "fitness": None if r.fitness is None else float(r.fitness),
        "reason": r.reason or "",
        "metrics_json": dumps(r.metrics or {}),
        "seconds": float(r.seconds or 0.0),
        "steps": int(r.steps or 0),
        "isolation_json": dumps(list(r.isolation or ())),
    }


def evaluation_of(row: sqlite3.Row) -> Evaluation:
    result = EvalResult(
        seed=row["seed"],
        fitness=row["fitness"],
        metrics=json.loads(row["metrics_json"]),
        seconds=row["seconds"],
        steps=row["steps"],
        fidelity=row["fidelity"],
        beta=row["beta"],
        ok=bool(row["ok"]),
        reason=row["reason"],
        isolation=tuple(json.loads(row["isolation_json"])),
    )
    return Evaluation(id=row["id"], candidate_id=row["candidate_id"], created_at=row["created_at"], result=result)


def llm_call_values(call: LLMCall) -> dict[str, Any]:
    """The columns of one of the proposer's `LLMCall`s."""
    return {
        "model": str(call.model or ""),
        "prompt_hash": str(call.prompt_hash or ""),
        "prompt_tokens": int(call.prompt_tokens or 0),
        "completion_tokens": int(call.completion_tokens or 0),
        "latency_s": float(call.latency_s or 0.0),
        "cost_usd": float(call.cost_usd or 0.0),
        "verdict": str(call.verdict or ""),
        "reply": str(call.reply or ""),
    }


def llm_call_of(row: sqlite3.Row) -> LLMCallRecord:
    return LLMCallRecord(
        id=row["id"], candidate_id=row["candidate_id"], created_at=row["created_at"], model=row["model"],
        prompt_hash=row["prompt_hash"], prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"], latency_s=row["latency_s"], cost_usd=row["cost_usd"],
        verdict=row["verdict"], reply=row["reply"],
    )


def event_of(row: sqlite3.Row) -> Event:
    return Event(id=row["id"], t=row["t"], kind=row["kind"], candidate_id=row["candidate_id"],
                 message=row["message"], data=json.loads(row["data_json"]))


def run_info_of(row: sqlite3.Row, schema_version: int) -> RunInfo:
    return RunInfo(
        created_at=row["created_at"], config=json.loads(row["config_json"]),
        versions=json.loads(row["versions_json"]), host=row["host"], git_revision=row["git_revision"],
        task_name=row["task_name"], task_cache_key=row["task_cache_key"], ended_at=row["ended_at"],
        end_reason=row["end_reason"], schema_version=schema_version,
    )

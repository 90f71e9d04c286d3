"""The archive: typed records in and out, atomic transitions, migrations, read-only use, run-dir lock."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from discovery.archive import Archive, ArchiveError, RunDirLock, RunDirLocked, db_path, schema
from discovery.candidate import Candidate, EvalResult, Origin, Status


class Call:
    """Shaped like the proposer's LLMCall."""

    def __init__(self, tokens: int, cost: float, verdict: str = "valid"):
        self.model, self.prompt_hash, self.prompt_tokens, self.completion_tokens = "m", "h", tokens, tokens // 2
        self.latency_s, self.cost_usd, self.verdict, self.reply = 0.5, cost, verdict, "def f(): ..."


def _candidate(name: str, **kw) -> Candidate:
    return Candidate(name=name, code=f"def {name}(a, b, c, d, beta):\n    return a - b\n", **kw)


@pytest.fixture
def archive(tmp_path):
    with Archive.open(tmp_path) as a:
        a.start_run({"task": {"name": "synthetic"}}, "synthetic", "key1")
        yield a


def test_candidate_round_trip_keeps_every_field(archive):
    c = _candidate("x", thought="why", origin=Origin.LLM, parent_ids=(1, 2), generation=3, proposer="replay",
                   model="m", fingerprint="fp", sympy="a - b", latex="a-b", diagnostics={"grad": [1.0, 2.0]})
    cid = archive.add_candidate(c, calls=[Call(100, 0.01)], probe_values=[0.1, 0.2])
    back = archive.candidate(cid)
    for field in ("name", "code", "thought", "origin", "parent_ids", "generation", "proposer", "model",
                  "status", "fingerprint", "sympy", "latex", "diagnostics"):
        assert getattr(back, field) == getattr(c, field), field
    assert archive.probe_values(cid) == [0.1, 0.2] and archive.all_probe_values() == {cid: [0.1, 0.2]}
    assert archive.llm_calls(cid)[0].prompt_tokens == 100
    assert archive.usage().tokens == 150 and archive.usage().cost_usd == pytest.approx(0.01)


def test_fitness_summary_and_ranking_by_lower_confidence_bound(archive):
    steady = archive.add_candidate(_candidate("steady", status=Status.QUEUED))
    lucky = archive.add_candidate(_candidate("lucky", status=Status.QUEUED))
    for seed, value in enumerate([0.60, 0.61, 0.59]):
        assert archive.add_evaluation(steady, EvalResult(seed=seed, fitness=value, metrics={"acc": value}))
    for seed, value in enumerate([0.95, 0.30, 0.80]):
        archive.add_evaluation(lucky, EvalResult(seed=seed, fitness=value))
    for cid in (steady, lucky):
        archive.transition(cid, Status.EVALUATED, expect=[Status.QUEUED], stage="reeval")
    best = archive.best(k=2)
    assert [s.candidate.name for s in best] == ["steady", "lucky"]  # lucky has the higher mean
    assert archive.summary(lucky).fitness.mean > archive.summary(steady).fitness.mean
    s = best[0]
    assert s.fitness.n == 3 and s.fitness.ci_low < 0.60 < s.fitness.ci_high and s.lcb == s.fitness.ci_low
    assert s.candidate.metrics["acc"] == pytest.approx(0.60)


def test_screen_only_candidates_are_scored_at_screen_fidelity_and_never_best(archive):
    cid = archive.add_candidate(_candidate("s", status=Status.EVALUATED))
    archive.add_evaluation(cid, EvalResult(seed=0, fitness=0.9, fidelity="screen"))
    s = archive.summary(cid)
    assert s.fidelity == "screen" and s.fitness.n == 1 and s.lcb == -math.inf
    assert archive.best() == []


def test_an_evaluation_is_stored_once(archive):
    cid = archive.add_candidate(_candidate("x", status=Status.TRAINING))
    assert archive.add_evaluation(cid, EvalResult(seed=0, fitness=0.5))
    assert not archive.add_evaluation(cid, EvalResult(seed=0, fitness=0.7))
    assert archive.add_evaluation(cid, EvalResult(seed=0, fitness=0.7, fidelity="screen"))
    assert archive.add_evaluation(cid, EvalResult(seed=0, fitness=0.7, beta=0.5))
    assert [e.result.fitness for e in archive.evaluations(cid)] == [0.5, 0.7, 0.7]


def test_guarded_transition_refuses_and_changes_nothing(archive):
    cid = archive.add_candidate(_candidate("x", status=Status.EVALUATED))
    with pytest.raises(ArchiveError, match="expected one of"):
        archive.transition(cid, Status.TRAINING, expect=[Status.QUEUED])
    assert archive.candidate(cid).status == Status.EVALUATED


def test_failed_write_rolls_back_the_whole_transition(archive):
    class Broken(Call):
        @property
        def prompt_tokens(self):
            raise RuntimeError("boom")

        @prompt_tokens.setter
        def prompt_tokens(self, value):
            pass

    with pytest.raises(RuntimeError):
        archive.add_candidate(_candidate("x"), calls=[Call(10, 0), Broken(10, 0)])
    assert archive.candidates() == [] and archive.llm_calls() == []


def test_duplicates_and_lineage(archive):
    a = archive.add_candidate(_candidate("a", status=Status.EVALUATED, fingerprint="F"))
    b = archive.add_candidate(_candidate("b", status=Status.EVALUATED, parent_ids=(a,)))
    c = archive.add_candidate(_candidate("c", status=Status.PROPOSED, parent_ids=(b,), fingerprint="F"))
    archive.transition(c, Status.DUPLICATE, f"same behaviour as #{a}", duplicate_of=a)
    detail = archive.detail(a)
    assert [d.id for d in detail.duplicates] == [c] and [k.id for k in detail.children] == [b]
    assert [x.id for x in archive.detail(c).ancestors] == [b, a]
    assert archive.status_counts()["duplicate"] == 1 and archive.proposal_count() == 3
    kinds = [e.kind for e in archive.events(candidate_id=c)]
    assert kinds == ["candidate", "status"]


def test_readonly_reader_sees_a_live_writer_and_cannot_write(archive, tmp_path):
    reader = Archive.open(tmp_path, readonly=True)
    archive.add_candidate(_candidate("late"))
    assert [c.name for c in reader.candidates()] == ["late"]
    with pytest.raises(ArchiveError, match="read-only"):
        reader.log_event("x")
    reader.close()


def test_readonly_open_of_a_missing_archive_is_a_clear_error(tmp_path):
    with pytest.raises(ArchiveError, match="no archive at"):
        Archive.open(tmp_path / "nope", readonly=True)


def test_not_an_archive_is_a_clear_error(tmp_path):
    db_path(tmp_path).write_text("this is not sqlite" * 100)
    with pytest.raises(ArchiveError, match="not a readable archive"):
        Archive.open(tmp_path)


def _write_v1_archive(run_dir) -> None:
    """An archive as the first schema version wrote it."""
    run_dir.mkdir(exist_ok=True)
    db = sqlite3.connect(db_path(run_dir), isolation_level=None)
    schema.migrate(db, upto=1)
    db.execute("INSERT INTO run (id, created_at, config_json, versions_json, host, task_name) "
               "VALUES (1, 0, '{}', '{}', 'h', 'synthetic')")
    db.execute("INSERT INTO candidates (created_at, updated_at, name, code, code_hash, origin, status) "
               "VALUES (0, 0, 'old', 'code', 'hash', 'llm', 'evaluated')")
    db.execute("INSERT INTO evaluations (candidate_id, created_at, seed, fidelity, ok, fitness) "
               "VALUES (1, 0, 0, 'full', 1, 0.25)")
    db.execute("INSERT INTO llm_calls (candidate_id, created_at, model, prompt_hash) VALUES (1, 0, 'm', 'h')")
    db.close()


def test_an_older_schema_is_read_in_memory_and_upgraded_on_write(tmp_path):
    _write_v1_archive(tmp_path)
    with Archive.open(tmp_path, readonly=True) as ro:
        assert ro.summary(1).fitness.mean == 0.25 and ro.stage(1) == "" and ro.llm_calls()[0].reply == ""
    raw = sqlite3.connect(db_path(tmp_path))
    assert schema.current_version(raw) == 1  # the read-only open did not touch the file
    raw.close()
    with Archive.open(tmp_path) as rw:
        assert rw.schema_version() == schema.LATEST
        assert rw.candidate(1).name == "old" and rw.run_info().end_reason == ""


def test_a_newer_schema_is_refused(tmp_path):
    _write_v1_archive(tmp_path)
    db = sqlite3.connect(db_path(tmp_path), isolation_level=None)
    db.execute("INSERT INTO schema_version VALUES (999, 0)")
    db.close()
    for readonly in (False, True):
        with pytest.raises(ArchiveError, match="upgrade discovery"):
            Archive.open(tmp_path, readonly=readonly)


def test_second_run_on_a_locked_run_dir_gets_a_clear_error(tmp_path):
    code = textwrap.dedent(f"""
        from discovery.archive import RunDirLock, RunDirLocked
        try:
            RunDirLock({str(tmp_path)!r}).acquire()
        except RunDirLocked as exc:
            print("LOCKED", exc)
    """)
    with RunDirLock(tmp_path):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
        assert "LOCKED" in out and "in use by a live run" in out and "pid" in out
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "LOCKED" not in out


def test_lock_error_type(tmp_path):
    with RunDirLock(tmp_path):
        with pytest.raises(RunDirLocked):
            RunDirLock(tmp_path).acquire()


def test_resume_on_other_task_data_is_refused_and_the_record_is_kept(tmp_path):
    """A newer build of the task (or other options) gives another cache key: resuming would mix two tasks."""
    with Archive.open(tmp_path) as a:
        a.start_run({"task": {"name": "synthetic"}}, "synthetic", "build2")
    with Archive.open(tmp_path) as a:
        assert a.start_run({"task": {"name": "synthetic"}}, "synthetic", "build2").task_cache_key == "build2"
        a.end_run("done")
        with pytest.raises(ArchiveError, match="start a new run directory"):
            a.start_run({"task": {"name": "synthetic"}}, "synthetic", "build3")
        with pytest.raises(ArchiveError, match="task synthetic"):
            a.start_run({"task": {"name": "hf_dpo"}}, "hf_dpo", "build2")
        info = a.run_info()
        assert (info.task_cache_key, info.end_reason) == ("build2", "done")  # nothing stored was changed

"""The Python API: docs/python-api.md executed on a real tiny run, open_run's typed records and pandas frames,
read-only opening, one clear line for a corrupt or newer-schema archive."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_inspect_fixtures import build_archive

import discovery
from discovery.archive import (
    Archive,
    ArchiveError,
    CandidateSummary,
    Evaluation,
    LLMCallRecord,
    db_path,
    schema,
)
from discovery.errors import DiscoveryError

DOC = REPO / "docs" / "python-api.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


@pytest.fixture(scope="module")
def doc_run(tmp_path_factory):
    """The doc's code blocks executed in order, in one namespace, in a fresh folder (a real symbolic run)."""
    import os

    folder = tmp_path_factory.mktemp("notebook")
    namespace: dict = {}
    old = os.getcwd()
    os.chdir(folder)
    try:
        for block in python_blocks(DOC):
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        os.chdir(old)
    return folder, namespace


def test_the_doc_has_code_to_run():
    blocks = python_blocks(DOC)
    assert len(blocks) >= 3 and "discovery.run(" in blocks[0] and "open_run" in blocks[1]


def test_doc_example_runs_and_its_callback_saw_every_event(doc_run):
    folder, ns = doc_run
    run_dir = folder / "runs" / "notebook-demo"
    assert ns["result"].stop_reason == "proposal budget of 3 used"
    with Archive.open(run_dir, readonly=True) as archive:
        session = max(e.id for e in archive.events(kind="session"))
        written = [e for e in archive.events() if e.id > session]
        assert archive.proposal_count() == 3
    # every event the loop wrote after it started reached the callback, each once
    assert ns["kinds"] == {k: sum(1 for e in written if e.kind == k) for k in {e.kind for e in written}}
    assert {"candidate", "status", "evaluation", "run_end"} <= set(ns["kinds"])
    run = ns["run"]
    assert run.state.state == "finished" and len(run.candidates) == 4  # dpo + 3 proposals
    frame = ns["candidates"]
    assert list(frame.id) == [s.id for s in run.candidates] and {"code", "thought", "kl"} <= set(frame.columns)
    assert ns["per_candidate"]["count"].sum() == sum(1 for e in run.evaluations if e.result.ok)


def test_doc_run_reported_to_tensorboard(doc_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, ns = doc_run
    acc = EventAccumulator(str(folder / "runs" / "notebook-demo" / "tensorboard"))
    acc.Reload()
    stored = acc.Scalars("proposals/stored")
    assert stored[-1].value == 3 and [s.step for s in stored] == sorted(s.step for s in stored)
    assert acc.Scalars("dpo/fitness")[-1].value == pytest.approx(ns["dpo"].fitness.mean, rel=1e-6)
    table = acc.Tensors("candidates/text_summary")[0].tensor_proto.string_val[0].decode()
    assert all(s.candidate.name in table for s in ns["run"].candidates)


# ---------------------------------------------------------------- reading (a fixture archive)


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("api") / "run"
    ids = build_archive(run_dir)
    return run_dir, ids


def test_open_run_gives_the_archives_typed_records(fixture_run):
    run_dir, ids = fixture_run
    run = discovery.open_run(run_dir)
    assert all(isinstance(s, CandidateSummary) for s in run.candidates)
    assert all(isinstance(e, Evaluation) for e in run.evaluations)
    assert all(isinstance(c, LLMCallRecord) for c in run.llm_calls)
    assert {s.candidate.name: s.id for s in run.candidates} == ids
    assert isinstance(run.candidates, tuple) and run.best()[0].id == ids["smooth_hinge"]
    assert run.state.state == "finished" and run.state.reason == "proposal budget used"
    assert run.config.eval.betas == (0.05, 0.1, 0.5)
    assert run.candidate(ids["log_cosh"]).parents[0].id == ids["smooth_hinge"]


def test_candidate_frame_matches_the_cli_rows(fixture_run):
    run_dir, ids = fixture_run
    frame = discovery.open_run(run_dir).candidates.to_pandas().set_index("id")
    out = run_cli("archive", "list", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    for row in json.loads(out.stdout):
        mine = frame.loc[row["id"]]
        for key in ("name", "status", "n", "tokens", "fitness", "ci_low", "kl", "heldout_accuracy"):
            expected, got = row[key], mine[key]
            if expected is None:
                assert got is None or got != got, key  # None or NaN
            else:
                assert got == pytest.approx(expected) if isinstance(expected, float) else got == expected, key
    assert frame.loc[ids["smooth_hinge"], "thought"].startswith("Add a hinge")


def test_evaluation_and_call_frames(fixture_run):
    run_dir, ids = fixture_run
    run = discovery.open_run(run_dir)
    evals = run.evaluations.to_pandas()
    assert len(evals) == len(run.evaluations) and {"seed", "fidelity", "beta", "fitness", "kl"} <= set(evals.columns)
    calls = run.llm_calls.to_pandas()
    assert int(calls.prompt_tokens.sum() + calls.completion_tokens.sum()) == run.usage.tokens


def test_to_pandas_without_pandas_says_what_to_install(fixture_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(DiscoveryError, match="pip install pandas"):
        discovery.open_run(fixture_run[0]).llm_calls.to_pandas()


def test_open_run_never_writes_and_reads_a_live_run(tmp_path):
    run_dir = tmp_path / "live"
    build_archive(run_dir, finish=False)
    with Archive.open(run_dir) as writer:  # a live run holds the archive open
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        run = discovery.open_run(run_dir)
        assert len(run.candidates) == 8 and run.state.state == "stopped"  # no end record, no live pid
        run.evaluations.to_pandas()
        after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        assert before == after
        assert writer.run_info().ended_at is None


def corrupt_archive(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    db_path(run_dir).write_bytes(b"this is not an SQLite database" * 100)


def newer_archive(run_dir: Path) -> None:
    build_archive(run_dir)
    db = sqlite3.connect(db_path(run_dir))
    db.execute("INSERT INTO schema_version VALUES (?, 0)", (schema.LATEST + 1,))
    db.commit()
    db.close()


@pytest.mark.parametrize("make, says", [(corrupt_archive, "is not a readable archive"),
                                        (newer_archive, "upgrade discovery")])
def test_unreadable_archive_is_one_line_everywhere(tmp_path, make, says):
    run_dir = tmp_path / "run"
    make(run_dir)
    with pytest.raises(ArchiveError, match=says) as err:
        discovery.open_run(run_dir)
    assert "\n" not in str(err.value)
    for args in (["report", str(run_dir), "--curves", "0"], ["report", str(run_dir), "--watch"],
                 ["archive", "list", str(run_dir)], ["runs", str(tmp_path)], ["runs", str(tmp_path), "--json"]):
        out = run_cli(*args, timeout=120)
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1 and says in lines[0], (args, out.stderr)

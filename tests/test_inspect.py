"""`discovery archive list|show|diff|export-jsonl` on a finished run, a live run and an older schema."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, run_cli
from test_inspect_fixtures import build_archive, write_v1_archive

from discovery.archive import Archive, db_path, schema


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("inspect") / "run"
    ids = build_archive(run_dir)
    return run_dir, ids


def _json(out) -> object:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def _one_error_line(out) -> str:
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("discovery: error: "), out.stderr
    return lines[0]


def test_list_ranks_by_lower_confidence_bound_and_filters(run):
    run_dir, ids = run
    rows = _json(run_cli("archive", "list", str(run_dir), "--json"))
    with Archive.open(run_dir, readonly=True) as archive:
        summaries = {s.id: s for s in archive.summaries()}
    assert len(rows) == len(summaries)
    # those that may be called best (evaluated, full fidelity, re-evaluated or a baseline) first, then the rest
    confirmed = [r["status"] == "evaluated" and r["fidelity"] == "full" and (r["baseline"] or r["stage"] == "reeval")
                 for r in rows]
    assert confirmed == sorted(confirmed, reverse=True) and any(confirmed)
    for group in (True, False):
        full = [r for r, c in zip(rows, confirmed, strict=True) if c == group and r["fidelity"] == "full"]
        assert [r["lcb"] for r in full] == sorted((r["lcb"] for r in full), reverse=True)
    # the re-evaluated winner beats its child, whose mean is higher but whose interval is wide
    assert rows[0]["id"] == ids["smooth_hinge"]
    child = next(r for r in rows if r["id"] == ids["log_cosh"])
    assert child["fitness"] > rows[0]["fitness"] and child["lcb"] < rows[0]["lcb"]
    for r in rows:
        s = summaries[r["id"]]
        assert r["n"] == (s.fitness.n if s.fitness else 0)
        assert r["baseline"] == s.candidate.is_baseline
    # unscored candidates last
    scored = [r["fitness"] is not None for r in rows]
    assert scored == sorted(scored, reverse=True)

    by_time = _json(run_cli("archive", "list", str(run_dir), "--json", "--sort", "time", "--limit", "3"))
    assert [r["id"] for r in by_time] == sorted(ids.values())[:3]
    failed = _json(run_cli("archive", "list", str(run_dir), "--json", "--status", "failed"))
    assert [r["name"] for r in failed] == ["diverges"] and failed[0]["reason"]


def test_list_table_shows_baselines_cost_and_reasons(run):
    run_dir, ids = run
    out = run_cli("archive", "list", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert "dpo (baseline)" in out.stdout and "ipo (baseline)" in out.stdout
    assert "non-finite loss" in out.stdout and "duplicate of #" in out.stdout
    with Archive.open(run_dir, readonly=True) as archive:
        cost = sum(c.cost_usd for c in archive.llm_calls(ids["log_cosh"]))
    assert f"${cost:.4f}" in out.stdout


def test_show_has_code_results_per_beta_lineage_and_calls(run):
    run_dir, ids = run
    doc = _json(run_cli("archive", "show", str(run_dir), str(ids["log_cosh"]), "--json"))
    assert doc["thought"] and "def log_cosh(" in doc["code"] and doc["sympy"]
    with Archive.open(run_dir, readonly=True) as archive:
        evals = archive.evaluations(ids["log_cosh"])
    assert len(doc["evaluations"]) == len(evals)
    betas = sorted({e.result.beta for e in evals})
    assert [g["beta"] for g in doc["results"]] == betas
    for g in doc["results"]:
        values = [e.result.fitness for e in evals if e.result.beta == g["beta"]]
        assert g["fitness"] == pytest.approx(sum(values) / len(values)) and g["n"] == len(values)
    assert [p["id"] for p in doc["lineage"]["parents"]] == [ids["smooth_hinge"]]
    assert [c["id"] for c in doc["lineage"]["children"]] == [ids["copy"]]
    assert [c["verdict"] for c in doc["llm_calls"]] == ["invalid", "valid"]  # the proposal and its fix-up

    text = run_cli("archive", "show", str(run_dir), str(ids["smooth_hinge"]))
    assert text.returncode == 0, text.stderr
    for needle in ("smooth_hinge", "F.logsigmoid", "results per fidelity and beta", "reeval", "lineage",
                   "log_cosh", "duplicates: #"):
        assert needle in text.stdout, needle


def test_diff_shows_code_changes_and_metric_deltas(run):
    run_dir, ids = run
    a, b = ids["smooth_hinge"], ids["log_cosh"]
    doc = _json(run_cli("archive", "diff", str(run_dir), str(a), str(b), "--json"))
    assert "-import torch.nn.functional as F" in doc["code_diff"] and "+import torch" in doc["code_diff"]
    with Archive.open(run_dir, readonly=True) as archive:
        fa, fb = archive.summary(a).fitness, archive.summary(b).fitness
    assert doc["deltas"]["fitness"]["delta"] == pytest.approx(fb.mean - fa.mean)
    assert doc["deltas"]["n"] == {"a": fa.n, "b": fb.n, "delta": fb.n - fa.n}
    text = run_cli("archive", "diff", str(run_dir), str(a), str(b))
    assert text.returncode == 0 and f"{fb.mean - fa.mean:+.4f}" in text.stdout


def test_export_jsonl_is_one_strict_json_row_per_candidate(run, tmp_path):
    run_dir, ids = run
    out_file = tmp_path / "sub" / "candidates.jsonl"
    out = run_cli("archive", "export-jsonl", str(run_dir), "-o", str(out_file))
    assert out.returncode == 0, out.stderr
    lines = out_file.read_text().splitlines()
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(c)) for line in lines]
    assert sorted(r["id"] for r in rows) == sorted(ids.values())
    import pandas as pd

    frame = pd.read_json(out_file, lines=True)
    assert len(frame) == len(ids) and {"fitness", "ci_low", "ci_high", "lcb", "kl", "status"} <= set(frame.columns)
    assert math.isnan(frame.set_index("name").loc["uses_os", "fitness"])


WRITER = textwrap.dedent("""
    import os, sys, time
    from discovery.archive import Archive, RunDirLock
    from discovery.candidate import Candidate, EvalResult, Status
    run_dir = sys.argv[1]
    with RunDirLock(run_dir), Archive.open(run_dir) as archive:
        print("ready", flush=True)
        n = 0
        deadline = time.time() + 300
        while time.time() < deadline and not (n > 0 and os.path.exists(sys.argv[2])):
            cid = archive.add_candidate(Candidate(name=f"live{n}", code=f"def live{n}(a, b, c, d, beta):\\n    return a\\n",
                                                  status=Status.QUEUED))
            archive.add_evaluation(cid, EvalResult(seed=0, fitness=0.1 * n, fidelity="screen"))
            archive.transition(cid, Status.EVALUATED)
            n += 1
            time.sleep(0.02)
        print("wrote", n, flush=True)
""")


def test_views_work_on_a_live_run_without_taking_its_lock(tmp_path):
    run_dir = tmp_path / "live"
    build_archive(run_dir, finish=False)
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir), str(stop)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        assert writer.stdout.readline().strip() == "ready"
        seen = []
        for _ in range(2):
            rows = _json(run_cli("archive", "list", str(run_dir), "--json", "--sort", "time"))
            seen.append(len(rows))
            assert _json(run_cli("archive", "show", str(run_dir), str(rows[-1]["id"]), "--json"))["code"]
        out = run_cli("archive", "export-jsonl", str(run_dir), "-o", str(tmp_path / "live.jsonl"))
        assert out.returncode == 0, out.stderr
        assert writer.poll() is None, "the writer must still be running"
    finally:
        stop.touch()
        rest, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0 and rest.startswith("wrote")
    assert seen[1] >= seen[0]  # the reader saw the run growing, never a lock error
    with Archive.open(run_dir, readonly=True) as archive:
        assert len(archive.candidates()) == 8 + int(rest.split()[1])


def test_views_read_an_older_schema_without_touching_the_file(tmp_path):
    run_dir = tmp_path / "v1"
    write_v1_archive(run_dir)
    before = db_path(run_dir).read_bytes()
    rows = _json(run_cli("archive", "list", str(run_dir), "--json"))
    assert [r["name"] for r in rows] == ["old_b", "old_a"] and rows[0]["kl"] == 1.5 and rows[0]["n"] == 2
    doc = _json(run_cli("archive", "show", str(run_dir), "1", "--json"))
    assert doc["validation"]["probe_values"] == [] and doc["candidate"]["stage"] == ""
    assert _json(run_cli("archive", "diff", str(run_dir), "1", "2", "--json"))["deltas"]["fitness"]["delta"] == \
        pytest.approx(0.1)
    assert run_cli("archive", "export-jsonl", str(run_dir), "-o", str(tmp_path / "v1.jsonl")).returncode == 0
    assert run_cli("archive", "list", str(run_dir)).returncode == 0
    assert db_path(run_dir).read_bytes() == before
    raw = sqlite3.connect(db_path(run_dir))
    assert schema.current_version(raw) == 1
    raw.close()


def test_bad_input_is_one_line(run, tmp_path):
    run_dir, _ = run
    assert "no candidate with id 999" in _one_error_line(run_cli("archive", "show", str(run_dir), "999"))
    assert "no archive at" in _one_error_line(run_cli("archive", "list", str(tmp_path / "missing")))
    assert "--limit" in _one_error_line(run_cli("archive", "list", str(run_dir), "--limit", "-1"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "cannot write" in _one_error_line(
        run_cli("archive", "export-jsonl", str(run_dir), "-o", str(blocker / "out.jsonl")))

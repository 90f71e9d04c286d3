"""`discovery runs [DIR]`: every run's state (running, stopped with reason, finished), best, DPO, cost; strict JSON."""

from __future__ import annotations

import json
import os
import sqlite3

from conftest import run_cli
from test_api import corrupt_archive, newer_archive
from test_inspect_fixtures import build_archive

from discovery.archive import Archive
from discovery.archive.lock import PID_NAME
from discovery.candidate import Candidate, Status
from discovery.inspect.runs import classify, find_runs


def strict_json(text: str):
    def refuse(token):
        raise AssertionError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_states_of_runs_in_a_folder(tmp_path):
    root = tmp_path / "runs"
    ids = build_archive(root / "a-finished")
    build_archive(root / "b-stopped", finish=False)
    with Archive.open(root / "b-stopped") as a:
        a.end_run("wall time of 900s used")
    build_archive(root / "c-interrupted", finish=False)  # the process died: no end record, no live pid
    build_archive(root / "nested" / "d-running", finish=False)
    (root / "nested" / "d-running" / PID_NAME).write_text(str(os.getpid()))  # a live process holds it
    build_archive(root / "e-unfinished", finish=False)
    with Archive.open(root / "e-unfinished") as a:
        a.add_candidate(Candidate(name="waiting", code="x", status=Status.QUEUED), stage="screen")
        a.end_run("proposal budget of 8 used")
    (root / "not-a-run").mkdir()

    out = run_cli("runs", str(root), "--json")
    assert out.returncode == 0, out.stderr
    rows = {os.path.basename(r["path"]): r for r in strict_json(out.stdout)}
    assert sorted(rows) == ["a-finished", "b-stopped", "c-interrupted", "d-running", "e-unfinished"]
    assert (rows["a-finished"]["state"], rows["a-finished"]["reason"]) == ("finished", "proposal budget used")
    assert (rows["b-stopped"]["state"], rows["b-stopped"]["reason"]) == ("stopped", "wall time of 900s used")
    assert (rows["c-interrupted"]["state"], rows["c-interrupted"]["reason"]) == \
        ("stopped", "interrupted (no end record)")
    assert rows["d-running"]["state"] == "running" and rows["d-running"]["pid"] == os.getpid()
    assert rows["e-unfinished"]["state"] == "stopped" and "1 candidate(s) not finished" in rows["e-unfinished"]["reason"]
    a = rows["a-finished"]
    with Archive.open(root / "a-finished", readonly=True) as archive:
        best, usage = archive.best(k=1, include_baselines=False)[0], archive.usage()
    assert a["proposals"] == 6 and a["best"]["id"] == ids["smooth_hinge"] == best.id
    assert (a["best"]["n"], a["best"]["mean"]) == (best.fitness.n, best.fitness.mean) and best.fitness.n >= 2
    assert a["best"]["ci_low"] < a["best"]["mean"] < a["best"]["ci_high"]
    assert a["dpo"]["name"] == "dpo" and a["tokens"] == usage.tokens > 0 and a["cost_usd"] == usage.cost_usd > 0

    table = run_cli("runs", str(root))
    assert table.returncode == 0 and "wall time of 900s used" in table.stdout and "smooth_hinge" in table.stdout


def test_a_single_run_dir_and_the_default_folder(tmp_path):
    build_archive(tmp_path / "runs" / "only")
    assert find_runs(tmp_path / "runs" / "only") == [tmp_path / "runs" / "only"]
    out = run_cli("runs", "--json", cwd=str(tmp_path))  # DIR defaults to ./runs
    assert out.returncode == 0 and len(strict_json(out.stdout)) == 1


def test_unreadable_archives_are_listed_and_exit_non_zero(tmp_path):
    build_archive(tmp_path / "good")
    corrupt_archive(tmp_path / "corrupt")
    newer_archive(tmp_path / "newer")
    out = run_cli("runs", str(tmp_path), "--json")
    rows = {os.path.basename(r["path"]): r for r in strict_json(out.stdout)}
    assert rows["good"]["state"] == "finished"
    assert rows["corrupt"]["state"] == rows["newer"]["state"] == "unreadable"
    assert "upgrade discovery" in rows["newer"]["reason"]
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("discovery: error: 2 archive(s) could not be read")


def test_missing_folder_is_one_line(tmp_path):
    out = run_cli("runs", str(tmp_path / "nope"))
    assert out.returncode == 2 and out.stderr.strip() == f"discovery: error: no such folder: {tmp_path / 'nope'}"


def test_candidate_text_cannot_drive_the_terminal(tmp_path):
    run_dir = tmp_path / "r"
    build_archive(run_dir)
    db = sqlite3.connect(run_dir / "archive.sqlite")
    db.execute("UPDATE candidates SET name = ? WHERE name = 'smooth_hinge'", ("evil\x1b[2J[bold]x[/bold]",))
    db.commit()
    db.close()
    out = run_cli("runs", str(tmp_path))
    assert out.returncode == 0 and "\x1b" not in out.stdout and "evil\\x1b[2J[bold]x[/bold]" in out.stdout


def test_classify():
    assert classify(None, "", 123, 0) == ("running", "")
    assert classify(1.0, "done", None, 0) == ("finished", "done")
    assert classify(1.0, "cost cap of $1.00 reached", None, 0) == ("stopped", "cost cap of $1.00 reached")

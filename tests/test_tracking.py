"""report_to trackers, read back offline: TensorBoard event files (EventAccumulator), W&B offline run files.

The observer gets the loop's real `Snapshot`s built from a fixture archive written through the Archive API;
each tracker writes with its own client; the files it left are read back with the tracker's own reader.
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from test_inspect_fixtures import build_archive

from discovery import tracking
from discovery.archive import Archive
from discovery.errors import ConfigError
from discovery.loop import Snapshot
from discovery.tracking.observer import RunObserver
from discovery.tracking.series import CANDIDATE_COLUMNS, candidate_table

HOSTILE = "evil|<script>alert(1)</script>\nline2"


def snapshot(archive: Archive, generation: int, elapsed: float) -> Snapshot:
    best = archive.best(k=1)
    return Snapshot(phase="discovery", elapsed=elapsed, eta=None, baselines_done=2, baselines_total=2,
                    generation=generation, proposing=0, in_flight=[], best=best[0] if best else None,
                    dpo=archive.baseline("dpo"), counts=archive.status_counts(), usage=archive.usage())


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    build_archive(path)
    db = sqlite3.connect(path / "archive.sqlite")
    db.execute("UPDATE candidates SET thought = ? WHERE name = 'log_cosh'", (HOSTILE,))
    db.commit()
    db.close()
    return path


def drive(run_dir, names: list[str]) -> Archive:
    """Three updates as the loop makes them (a repeat that changes nothing is not logged), then close."""
    archive = Archive.open(run_dir, readonly=True)
    trackers = tracking.make_trackers(names, run_dir, {"train": {"beta": 0.1}})
    with RunObserver(archive, None, None, trackers) as observer:
        observer.update(snapshot(archive, 4, 10.0))
        observer.update(snapshot(archive, 4, 11.0))  # nothing new: no point
        observer.update(snapshot(archive, 6, 20.0))
    return archive


def test_report_to_names_like_trl(monkeypatch):
    assert tracking.resolve(None) == tracking.resolve("none") == tracking.resolve(["none"]) == []
    with pytest.raises(ConfigError, match="unknown tracker 'mlflowz'"):
        tracking.resolve(["mlflowz"])
    monkeypatch.setattr(tracking, "installed", lambda package: package == "tensorboard")
    assert tracking.resolve("all") == ["tensorboard"]
    with pytest.raises(ConfigError, match="wandb is not installed; pip install wandb"):
        tracking.resolve(["wandb"])


def test_unknown_tracker_is_one_line_before_the_run_starts(tmp_path):
    from conftest import run_cli

    out = run_cli("run", "--run-dir", str(tmp_path / "r"), "--proposer", "symbolic", "--report-to", "mlflowz")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "discovery: error: report_to: unknown tracker 'mlflowz'; known: none, all, tensorboard, wandb"]
    assert not (tmp_path / "r" / "archive.sqlite").exists()


def test_candidate_table_has_one_row_per_candidate(run_dir):
    with Archive.open(run_dir, readonly=True) as archive:
        columns, rows = candidate_table(archive)
        summaries = archive.summaries()
    assert columns == CANDIDATE_COLUMNS and [r[0] for r in rows] == [s.id for s in summaries]
    by_name = {r[1]: dict(zip(columns, r, strict=True)) for r in rows}
    hinge = next(s for s in summaries if s.candidate.name == "smooth_hinge")
    assert by_name["smooth_hinge"]["fitness"] == hinge.fitness.mean and by_name["smooth_hinge"]["n"] == hinge.fitness.n
    assert by_name["log_cosh"]["parents"] == str(hinge.id) and by_name["log_cosh"]["thought"] == HOSTILE
    assert by_name["uses_os"]["status"] == "invalid" and by_name["uses_os"]["fitness"] is None
    assert by_name["smooth_hinge"]["kl"] is not None and "def smooth_hinge" in by_name["smooth_hinge"]["code"]


def test_tensorboard_event_files_read_back(run_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    archive = drive(run_dir, ["tensorboard"])
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    stored = acc.Scalars("proposals/stored")
    assert [(s.step, s.value) for s in stored] == [(4, 4.0), (6, 6.0)]  # the unchanged repeat was not logged
    best, dpo = archive.best(k=1)[0], archive.baseline("dpo")
    assert acc.Scalars("best/fitness")[-1].value == pytest.approx(best.fitness.mean)
    assert acc.Scalars("best/ci_low")[-1].value == pytest.approx(best.fitness.ci_low)
    assert acc.Scalars("dpo/ci_high")[-1].value == pytest.approx(dpo.fitness.ci_high)
    assert acc.Scalars("proposals/invalid")[-1].value == 1 and acc.Scalars("llm/tokens")[-1].value == archive.usage().tokens
    assert acc.Scalars("time/elapsed_s")[-1].value == 20.0
    table = acc.Tensors("candidates/text_summary")[0].tensor_proto.string_val[0].decode()
    lines = table.splitlines()
    assert lines[0] == "| " + " | ".join(CANDIDATE_COLUMNS) + " |" and len(lines) == 2 + len(archive.summaries())
    assert "<script>" not in table and "evil&#124;&lt;script&gt;alert(1)&lt;/script&gt;<br>line2" in table
    archive.close()


def test_wandb_offline_run_read_back(run_dir, monkeypatch):
    """W&B offline keeps history in its binary run file; its client's summary (the committed steps) and the
    table file it wrote are what can be read back without the service."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    archive = Archive.open(run_dir, readonly=True)
    (tracker,) = tracking.make_trackers(["wandb"], run_dir, {"train": {"beta": 0.1}})
    observer = RunObserver(archive, None, None, [tracker])
    observer.update(snapshot(archive, 4, 10.0))
    observer.update(snapshot(archive, 6, 20.0))  # commits step 4
    summary = dict(tracker.run.summary)
    best = archive.best(k=1)[0]
    assert summary["_step"] == 4 and summary["proposals/stored"] == 4 and summary["time/elapsed_s"] == 10.0
    assert summary["best/fitness"] == pytest.approx(best.fitness.mean)
    assert summary["dpo/ci_low"] == pytest.approx(archive.baseline("dpo").fitness.ci_low)
    assert tracker.run.settings.mode == "offline"
    observer.close()
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (table_file,) = (offline / "files" / "media" / "table").glob("candidates_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == CANDIDATE_COLUMNS and len(table["data"]) == len(archive.summaries())
    assert any(row[-1] == HOSTILE for row in table["data"])  # data, stored as is (W&B's viewer escapes it)
    assert list(offline.glob("run-*.wandb")) and not os.environ.get("WANDB_API_KEY")
    archive.close()

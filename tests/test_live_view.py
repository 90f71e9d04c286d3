"""The live view (`discovery report RUN --watch`): a real `discovery run --proposer symbolic` writes while a
headless Chromium watches the page refresh; candidate text is escaped; unreadable archives are one line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import REPO, run_cli
from test_inspect_fixtures import build_archive
from test_loop_e2e import TINY_TASK
from test_report import _browser

from discovery.archive import db_path
from discovery.inspect.live import make_server, serve_in_thread

NAME = '<img src=x onerror="window.pwned=1">'
REASON = "</td><script>window.pwned=2</script>"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = _browser(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def page_state(browser) -> dict:
    """What the page shows now, read in one script (the fragment is swapped under us)."""
    return browser.execute_script("""
        var s = document.getElementById("live-summary");
        var rows = Array.prototype.map.call(document.querySelectorAll("#live-in-flight tbody tr"),
            function (tr) { return tr.cells[3].textContent; });
        return {state: s.getAttribute("data-state"), proposals: parseInt(s.getAttribute("data-proposals")),
                stages: rows, best: document.getElementById("live-best").textContent,
                cost: document.getElementById("live-cost").textContent, loaded: window.__loaded || 0};
    """)


def test_live_view_follows_a_real_run(tmp_path, browser):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "discovery.cli", "run", "--run-dir", str(run_dir), "--proposer", "symbolic",
           "--proposals", "3", "--seeds", "1", "--set", "eval.betas=[]", "--workers", "2", "--set", "train.max_steps=3",
           "--set", "eval.reeval_seeds=1", "--set", "eval.promote_fraction=1.0", "--set", "eval.baselines=[dpo]",
           "--set", f"task.cache_dir={tmp_path / 'cache'}", "--set", TINY_TASK, "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not db_path(run_dir).is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert db_path(run_dir).is_file(), proc.communicate()[1][-2000:]
        server, url = serve_in_thread(run_dir, interval_s=0.5)
        browser.get(url)
        browser.execute_script("window.__loaded = 1")  # gone if the page reloads instead of refreshing in place
        seen = []
        while proc.poll() is None and time.monotonic() < deadline:
            seen.append(page_state(browser))
            time.sleep(0.3)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        for _ in range(40):  # the page catches up with the end of the run by itself
            final = page_state(browser)
            if final["state"] == "finished":
                break
            time.sleep(0.25)
        server.shutdown()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert final["state"] == "finished" and final["proposals"] == 3 and final["loaded"] == 1, final
    running = [s for s in seen if s["state"] == "running"]
    assert running, seen[-3:]
    assert min(s["proposals"] for s in running) < 3  # it showed the run before all proposals were stored
    stages = {stage for s in running for stage in s["stages"]}
    assert stages & {"baseline", "screen", "full", "reeval"}, stages  # in-flight candidates with their stage
    assert final["best"].startswith("#") and "(n=" in final["best"] and "tokens" in final["cost"]
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []


@pytest.fixture
def hostile_run(tmp_path):
    run_dir = tmp_path / "hostile"
    ids = build_archive(run_dir)
    db = sqlite3.connect(db_path(run_dir))
    db.execute("UPDATE candidates SET name = ? WHERE id = ?", (NAME, ids["diverges"]))
    db.execute("UPDATE candidates SET reason = ? WHERE id = ?", (REASON, ids["diverges"]))
    db.execute("UPDATE candidates SET name = ? WHERE id = ?", (NAME, ids["smooth_hinge"]))
    db.commit()
    db.close()
    return run_dir, ids


def test_candidate_text_is_escaped_in_the_live_view(hostile_run, browser):
    run_dir, ids = hostile_run
    server, url = serve_in_thread(run_dir, interval_s=0.5)
    try:
        raw = urllib.request.urlopen(url + "fragment", timeout=30).read().decode()
        assert NAME not in raw and "<script>window.pwned" not in raw and "&lt;img src=x" in raw
        state = json.loads(urllib.request.urlopen(url + "state.json", timeout=30).read().decode(),
                           parse_constant=lambda t: pytest.fail(f"not strict JSON: {t}"))
        assert {f["id"]: f["reason"] for f in state["failures"]}[ids["diverges"]] == REASON
        browser.get(url)
        time.sleep(1.5)  # at least one refresh swapped the fragment in
        assert browser.execute_script("return window.pwned === undefined")
        assert browser.execute_script("return document.querySelectorAll('#live img, #live script').length") == 0
        # read in one script call: the page swaps its fragment every 0.5 s, so an element found in one
        # WebDriver call may be gone (stale) by the next
        failures = browser.execute_script("return document.getElementById('live-failures').innerText")
        assert NAME in failures and REASON in failures  # shown as the text it is
        assert NAME in browser.execute_script("return document.getElementById('live-best').innerText")
    finally:
        server.shutdown()


def test_candidate_text_is_escaped_in_the_report(hostile_run, browser, tmp_path):
    run_dir, ids = hostile_run
    out = run_cli("report", str(run_dir), "--curves", "0", "-o", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    assert NAME not in (tmp_path / "r.html").read_text()
    browser.get((tmp_path / "r.html").as_uri())
    header = [h for h in browser.find_elements("css selector", "#candidates thead th") if h.text == "name"][0]
    header.click()  # rows re-rendered by the script from the JSON block
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.execute_script("return document.querySelectorAll('#candidates img, #candidates script').length") == 0
    rows = {tr.get_attribute("data-id"): tr.text for tr in browser.find_elements("css selector", "#candidates tbody tr")}
    assert NAME in rows[str(ids["diverges"])] and REASON in rows[str(ids["diverges"])]


def test_the_server_listens_on_loopback_only(hostile_run):
    server = make_server(hostile_run[0])
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()


def test_watch_on_a_missing_run_is_one_line(tmp_path):
    out = run_cli("report", str(tmp_path / "nope"), "--watch")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"discovery: error: no archive at {tmp_path / 'nope' / 'archive.sqlite'}"]

"""`discovery report`: a self-contained HTML file, checked as text and in a real headless Chromium."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, run_cli
from test_inspect_fixtures import build_archive, write_v1_archive

from discovery.archive import Archive

FIGURES = ("fig-progress", "fig-curves", "fig-frontier", "fig-lineage", "fig-usage")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1300,1000")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(run_dir, ids, html path) of a report written by the real CLI."""
    root = tmp_path_factory.mktemp("report")
    ids = build_archive(root / "run")
    out = run_cli("report", str(root / "run"), "-o", str(root / "out" / "report.html"))
    assert out.returncode == 0, out.stderr
    return root / "run", ids, root / "out" / "report.html"


def test_report_is_self_contained_with_every_section(report):
    run_dir, ids, path = report
    html = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no network assets"
    assert "<link" not in html and "@import" not in html
    for fig in FIGURES:
        assert re.search(rf'id="{fig}"><img alt="[^"]+" src="data:image/png;base64,', html), fig
    rows = re.findall(r'<tr class="status-[a-z]+[^"]*" data-id="(\d+)"', html)
    assert sorted(map(int, rows)) == sorted(ids.values())
    assert f"Winner: #{ids['smooth_hinge']} smooth_hinge" in html and "re-evaluation" in html
    assert "#3 smooth_hinge" in html and "Curve not drawn" not in html


def test_loss_curves_come_from_the_sandbox_not_this_process(tmp_path):
    run_dir = tmp_path / "run"
    build_archive(run_dir)
    code = textwrap.dedent(f"""
        import sys
        from discovery.inspect.report import build_report
        html = build_report({str(run_dir)!r}, curves=2)
        assert "fig-curves" in html
        loaded = sorted(m for m in sys.modules if m.startswith("discovery.sandbox.") and m.split(".")[-1] in
                        ("loader", "jobs", "checks", "diagnostics"))
        print("LOADED", loaded)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout  # no module that executes candidate code was imported here


def test_report_on_an_older_schema_and_a_live_run(tmp_path):
    write_v1_archive(tmp_path / "v1")
    out = run_cli("report", str(tmp_path / "v1"), "--curves", "0")
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "v1" / "report.html").read_text()
    assert html.count('data-id="') == 2 and "No loss curves" in html
    build_archive(tmp_path / "live", finish=False)
    with Archive.open(tmp_path / "live") as writer:  # a writer holds the archive open, as a live run does
        out = run_cli("report", str(tmp_path / "live"), "--curves", "0", "-o", str(tmp_path / "live.html"))
        assert out.returncode == 0, out.stderr
        assert writer.run_info().ended_at is None


def test_missing_run_is_one_line(tmp_path):
    out = run_cli("report", str(tmp_path / "nope"))
    assert out.returncode == 2 and out.stderr.strip().startswith("discovery: error: no archive at")
    assert len(out.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- in a real browser


def _browser(profile):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium / chromedriver not installed (CI installs Debian's chromium and chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = _browser(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def _not_blank(png: bytes) -> tuple[float, int]:
    """(fraction of non-white pixels, number of distinct colours) of a screenshot."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    ink = float((pixels.min(axis=1) < 235).mean())
    return ink, len(np.unique(pixels, axis=0))


def test_report_in_headless_chromium(report, browser):
    from selenium.webdriver.common.by import By

    run_dir, ids, path = report
    browser.get(path.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors

    rows = browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")
    assert len(rows) == len(ids)

    for fig in FIGURES:
        img = browser.find_element(By.CSS_SELECTOR, f"#{fig} img")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 100, fig
        browser.execute_script("arguments[0].scrollIntoView()", img)
        ink, colours = _not_blank(img.screenshot_as_png)
        assert ink > 0.01 and colours > 20, (fig, ink, colours)

    headers = browser.find_elements(By.CSS_SELECTOR, "#candidates thead th")
    names = [h.text for h in headers]

    def column(name: str) -> list[str]:
        """The sort keys of one column, top to bottom (data-value where the cell has one)."""
        i = names.index(name)
        cells = [r.find_elements(By.TAG_NAME, "td")[i] for r in browser.find_elements(By.CSS_SELECTOR, "#candidates tbody tr")]
        return [c.text if c.get_attribute("data-value") is None else c.get_attribute("data-value") for c in cells]

    headers[names.index("LCB")].click()
    ascending = column("LCB")
    numbers = [float(v) for v in ascending if v != ""]
    assert numbers == sorted(numbers) and ascending[len(numbers):] == [""] * (len(ascending) - len(numbers))
    assert headers[names.index("LCB")].get_attribute("aria-sort") == "ascending"
    headers[names.index("LCB")].click()
    numbers = [float(v) for v in column("LCB") if v != ""]
    assert numbers == sorted(numbers, reverse=True)
    headers[names.index("name")].click()
    texts = [t.lower() for t in column("name")]
    assert texts == sorted(texts)
    headers[names.index("id")].click()
    assert [int(v) for v in column("id")] == sorted(ids.values())
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []

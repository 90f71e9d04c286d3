"""Inspect, report and export on the archive of a real (tiny) `discovery run` with the replay proposer."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import run_cli

HEAD = ("def {name}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
        "reference_rejected_logps, beta):\n")
MARGIN = ("    margin = (policy_chosen_logps - reference_chosen_logps) - "
          "(policy_rejected_logps - reference_rejected_logps)\n")
REPLAY = {
    "a_hinged": "import torch.nn.functional as F\n\n\n" + HEAD.format(name="a_hinged") + MARGIN
    + "    return -F.logsigmoid(beta * margin) + 0.1 * F.relu(1 - beta * margin)\n",
    "b_invalid": "import os\n\n\n" + HEAD.format(name="b_invalid") + "    return os.getcwd()\n",
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("realrun")
    (root / "replay").mkdir()
    for name, code in REPLAY.items():
        (root / "replay" / f"{name}.py").write_text(code)
    out = run_cli("run", "--run-dir", str(root / "run"), "--proposer", "replay",
                  "--set", f"proposer.replay_dir={root / 'replay'}", "--seeds", "2", "--set", "eval.betas=[]", "--workers", "2",
                  "--set", "train.max_steps=3", "--set", "eval.reeval_seeds=0", "--set", "eval.screen=false",
                  "--set", "budget.wall_time=600", "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    return root


def test_list_report_and_export_of_a_real_run(real_run, tmp_path):
    run_dir = real_run / "run"
    out = run_cli("archive", "list", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert {n for n, r in rows.items() if not r["baseline"]} == {"a_hinged", "b_invalid"} and "dpo" in rows
    assert rows["a_hinged"]["status"] == "evaluated" and rows["a_hinged"]["n"] == 2
    assert rows["b_invalid"]["status"] == "invalid" and "os" in rows["b_invalid"]["reason"]

    out = run_cli("report", str(run_dir), "--curves", "1")
    assert out.returncode == 0, out.stderr
    html = (run_dir / "report.html").read_text()
    assert html.count('data-id="') == len(rows) and 'id="fig-curves"' in html and "a_hinged" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)

    # no re-evaluation configured: --best is the best proposal at full fidelity, and says so
    out = run_cli("export", str(run_dir), "--best", "-o", str(tmp_path / "best.py"))
    assert out.returncode == 0, out.stderr
    assert "did not re-evaluate" in out.stderr and "a_hinged" in out.stderr
    check = subprocess.run([sys.executable, str(tmp_path / "best.py")], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
    assert check.returncode == 0 and "9/9 probe checks passed" in check.stdout, check.stdout + check.stderr

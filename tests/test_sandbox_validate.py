"""validate(): every library loss valid; broken and hostile candidates rejected with the right reason;
fingerprints identify rewrites; the CLI's exit codes and JSON."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import run_cli
from hostile.candidates import BROKEN, HOSTILE, make

from discovery import library
from discovery.config import SandboxConfig
from discovery.sandbox import spares, validate
from discovery.sandbox.fingerprint import distance
from discovery.sandbox.probe import loss_curve
from discovery.sandbox.validation import SPARES, validation_runner

CONFIG = SandboxConfig(timeout=8.0)


@pytest.fixture(scope="module")
def runner():
    # the runner starts in a process holding a key (the hostile `read_env` candidate must not see it); set for
    # this module only, so it does not leak into later tests
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", "sk-validate-secret")
        with validation_runner() as r:
            yield r


@pytest.fixture(scope="module")
def library_reports(runner):
    return {loss.name: validate(loss.code, CONFIG, runner, formula=True) for loss in library.LOSSES}


@pytest.mark.parametrize("name", library.names())
def test_every_library_loss_is_valid(library_reports, name):
    report = library_reports[name]
    assert report.valid, report.summary()
    assert report.fingerprint and len(report.probe_values) > 0
    assert "seccomp" in report.isolation or "rlimits" in report.isolation
    assert report.summary().startswith("valid:")


def test_library_fingerprints_are_distinct(library_reports):
    prints = {r.fingerprint for r in library_reports.values()}
    assert len(prints) == len(library_reports)


def test_diagnostics(library_reports):
    dpo, ipo, lrml = (library_reports[n].diagnostics for n in ("dpo", "ipo", "lrml"))
    assert dpo["monotonic"] and dpo["convex"] and dpo["margin_only"] and dpo["beta_first"]
    assert dpo["slope_at_zero"] < 0 and not dpo["batch_dependent"] and dpo["uses_reference"]
    assert not ipo["monotonic"] and ipo["convex"] and not ipo["beta_first"]
    assert not lrml["convex"]
    assert library_reports["kto_pair"].diagnostics["batch_dependent"]
    assert not library_reports["sppo_hard"].diagnostics["margin_only"]


def test_sympy_forms(library_reports):
    assert library_reports["dpo"].sympy == "log(1 + exp(-beta*rho))"
    assert "rho" in library_reports["dpo"].latex
    assert library_reports["slic"].sympy.startswith("Max(0")
    assert library_reports["kto_pair"].sympy is None
    assert library_reports["kto_pair"].diagnostics["sympy_note"].startswith("no formula")


def test_the_verdict_does_not_wait_for_the_formula(runner):
    """`validate` alone gives the verdict, diagnostics and fingerprint; the sympy form is a second sandbox job that
    only `formula=True` asks for (the loop, `discovery validate`), and only for a valid loss."""
    code = library.get("dpo").code
    verdict = validate(code, CONFIG, runner, cache=False)
    described = validate(code, CONFIG, runner, cache=False, formula=True)
    assert verdict.valid and verdict.sympy is None and verdict.latex is None
    assert "sympy_note" not in verdict.diagnostics
    assert described.sympy == "log(1 + exp(-beta*rho))" and described.diagnostics["sympy_note"] == "ok"
    assert (described.fingerprint, described.probe_values) == (verdict.fingerprint, verdict.probe_values)
    broken = validate(BROKEN["scalar"][0], CONFIG, runner, formula=True)
    assert not broken.valid and broken.sympy is None and "sympy_note" not in broken.diagnostics


# ten nested rewrites of the margin: fast in torch, an expression sympy takes far longer than 2 s to print
SYMPY_BOMB = make("    x = margin\n" + "    x = torch.sigmoid(x) * x + torch.tanh(x) - x\n" * 10
                  + "    return -F.logsigmoid(beta * x)\n")


def test_code_that_makes_sympy_hang_is_valid_without_a_formula_after_two_seconds(runner):
    start = time.perf_counter()
    report = validate(SYMPY_BOMB, CONFIG, runner, cache=False, formula=True)
    assert report.valid, report.summary()
    assert report.sympy is None and report.diagnostics["sympy_note"] == "no formula: sympy took too long"
    assert 2.0 <= report.diagnostics["sympy_seconds"] < 4.0 and time.perf_counter() - start < CONFIG.timeout


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_candidates_are_rejected_with_the_right_reason(runner, name):
    code, check = BROKEN[name]
    report = validate(code, CONFIG, runner)
    assert not report.valid
    # a too-slow loss is caught by the per-call limit ("speed") or, on a loaded machine, by the child's
    # wall clock ("timeout"); both tell the LLM the same thing
    allowed = {"speed", "timeout"} if check == "speed" else {check}
    assert report.errors[0].check in allowed, report.summary()
    assert report.summary().startswith("invalid: ")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_candidates_are_rejected_with_the_right_reason(runner, name, tmp_path):
    code, check = HOSTILE[name]
    before = set(os.listdir("/tmp"))
    report = validate(code.replace("/tmp/", f"{tmp_path}/"), CONFIG, runner)
    assert not report.valid
    allowed = {"speed", "timeout"} if check == "speed" else {check}
    assert allowed & {e.check for e in report.errors}, report.summary()
    assert set(os.listdir("/tmp")) - before == set() and not any(tmp_path.iterdir())


def test_the_host_survives_and_the_runner_keeps_working(runner):
    assert validate(library.get("dpo").code, CONFIG, runner).valid
    deadline = time.monotonic() + 5
    while finished_job_folders(runner) and time.monotonic() < deadline:
        time.sleep(0.05)  # the last child's scratch dir is removed right after its answer went out
    assert finished_job_folders(runner) == set()
    waiting = set(os.listdir(runner._scratch_base)) - {"server.log"}
    assert len(waiting) <= SPARES, "only the spare children waiting for the next jobs have folders"


def finished_job_folders(runner) -> set[str]:
    """Entries of the scratch base other than the server's log and the waiting spares' folders."""
    return {name for name in os.listdir(runner._scratch_base)
            if name != "server.log" and not name.startswith(spares.PREFIX)}


DPO_REWRITES = [
    make("    return F.softplus(-beta * margin)\n"),
    make("    return torch.log1p(torch.exp(-(margin * beta)))\n"),
    make("    return -torch.log(torch.sigmoid(beta * margin))\n"),
    make("    pi = policy_chosen_logps - policy_rejected_logps\n"
         "    ref = reference_chosen_logps - reference_rejected_logps\n"
         "    z = beta * pi - beta * ref\n    return torch.log(1 + torch.exp(-z))\n"),
]


def test_equivalent_dpo_rewrites_share_one_fingerprint(runner, library_reports):
    dpo = library_reports["dpo"]
    for code in DPO_REWRITES:
        report = validate(code, CONFIG, runner)
        assert report.valid, report.summary()
        assert report.fingerprint == dpo.fingerprint
        assert distance(report.probe_values, dpo.probe_values) < 1e-6


def test_dpo_and_ipo_differ(runner, library_reports):
    dpo, ipo, cdpo = (library_reports[n] for n in ("dpo", "ipo", "cdpo"))
    assert dpo.fingerprint != ipo.fingerprint
    assert distance(dpo.probe_values, ipo.probe_values) > 0.3
    assert distance(dpo.probe_values, cdpo.probe_values) < distance(dpo.probe_values, ipo.probe_values)
    scaled = validate(make("    return -2 * F.logsigmoid(beta * margin)\n"), CONFIG, runner)
    assert scaled.fingerprint != dpo.fingerprint and distance(scaled.probe_values, dpo.probe_values) < 1e-6


def test_loss_curve_runs_in_the_sandbox(runner):
    curve = loss_curve(library.get("dpo").code, 0.1, [-10.0, 0.0, 10.0], runner=runner)
    assert curve["margin"] == [-10.0, 0.0, 10.0]
    assert curve["loss"][0] > curve["loss"][1] > curve["loss"][2]
    assert abs(curve["loss"][1] - 0.6931) < 1e-3 and abs(curve["dloss"][1] + 0.05) < 1e-6


def test_cli_validate_exit_codes_and_json(tmp_path):
    good = tmp_path / "dpo.py"
    good.write_text(library.get("dpo").code)
    bad = tmp_path / "scalar.py"
    bad.write_text(BROKEN["scalar"][0])
    out = run_cli("validate", str(good), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["valid"] and data["fingerprint"] and data["latex"] and data["isolation"]
    assert set(data) >= {"valid", "errors", "diagnostics", "fingerprint", "latex", "isolation", "seconds"}
    out = run_cli("validate", str(bad))
    assert out.returncode == 1 and "not the mean" in out.stdout
    out = run_cli("validate", str(tmp_path / "missing.py"))
    assert out.returncode == 2 and out.stderr.strip().startswith("discovery: error:")
    assert "Traceback" not in out.stderr

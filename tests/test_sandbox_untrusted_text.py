"""Candidate text is data: rich markup and terminal escapes in exception messages, names, reasons and
thoughts never crash `discovery validate` / `archive list|show` nor reach the terminal; `validate --json`
is strict JSON with the rule id and line of each refusal; the sympy form never ignores keywords."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from hostile.candidates import make

from discovery.sandbox.symbolic import to_sympy

HOSTILE_TEXT = "[/bold] [red]x[/red] \x1b[2J\x1b]0;pwned\x07 \r"
RAISES = make(f"    raise ValueError({HOSTILE_TEXT!r})\n    return -F.logsigmoid(beta * margin)\n")


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _clean(out: str) -> None:
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out.replace("\r\n", "\n")
    assert "Traceback" not in out and "MarkupError" not in out


@pytest.fixture(scope="module")
def hostile_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("untrusted") / "[bold]evil\x1b[0m.py"
    path.write_text(RAISES)
    return path


def test_validate_prints_hostile_exception_text_as_data(hostile_file):
    out = run_cli("validate", str(hostile_file))
    assert out.returncode == 1, out.stderr
    _clean(out.stdout + out.stderr)
    assert "[/bold]" in out.stdout and "ValueError" in out.stdout


def test_validate_json_is_strict_and_keeps_rule_and_line(hostile_file, tmp_path):
    data = _strict(run_cli("validate", str(hostile_file), "--json").stdout)
    assert not data["valid"]
    (error,) = data["errors"]
    assert error["rule"] == "runs" and error["line"] == 7 and "[/bold]" in error["message"]
    static = tmp_path / "static.py"
    static.write_text(make("    x = policy_chosen_logps.shape\n    return -margin\n"))
    (error, *_) = _strict(run_cli("validate", str(static), "--json").stdout)["errors"]
    assert error["check"] == "static" and error["rule"] == "introspection" and error["line"] == 7


def test_dynamic_refusals_carry_a_rule_and_a_line(tmp_path):
    from discovery.sandbox import validate

    report = validate(make("    reference_chosen_logps += 1.0\n    return -F.logsigmoid(beta * margin)\n"))
    (error,) = report.errors
    assert error.rule == "inplace" and error.line == 7 and error.message.startswith("line 7: ")
    slow = validate(make("    out = margin * 0\n    for i in range(200000):\n        out = out + 0.0\n"
                         "    return -F.logsigmoid(beta * margin) + out\n"))
    (error,) = slow.errors
    assert error.rule == "speed" and error.line == 8


def test_archive_list_and_show_print_hostile_text_as_data(tmp_path):
    from discovery.archive import Archive
    from discovery.candidate import Candidate, Status
    from discovery.config import RunConfig

    run_dir = tmp_path / "run"
    with Archive.open(run_dir) as archive:
        archive.start_run(RunConfig().to_dict(), "synthetic", "key")
        cid = archive.add_candidate(Candidate(name="evil[/bold]\x1b[31m", code=RAISES, thought=HOSTILE_TEXT,
                                              status=Status.QUEUED))
        archive.transition(cid, Status.INVALID, f"[runs] ValueError: {HOSTILE_TEXT}")
    for args in (("archive", "list", str(run_dir)), ("archive", "show", str(run_dir), str(cid))):
        out = run_cli(*args)
        assert out.returncode == 0, out.stderr
        _clean(out.stdout + out.stderr)
        assert "[/bold]" in out.stdout


@pytest.mark.parametrize("body", [
    "    return F.softplus(-beta * margin, beta=2.0)\n",
    "    return torch.sigmoid(-beta * margin).pow(exponent=2)\n",
    "    return F.leaky_relu(-beta * margin, negative_slope=0.5)\n",
])
def test_sympy_form_never_ignores_keywords(body):
    form, latex, note = to_sympy(make(body))
    assert form is None and latex is None and "keyword" in note


def test_sympy_form_keeps_clamp_keywords():
    form, _, note = to_sympy(make("    return torch.clamp(-F.logsigmoid(beta * margin), max=5.0)\n"))
    assert note == "ok" and "Min(5" in form

"""The six classes of issue 18, end to end through the real entry points (run by hand, ~1-2 min):

    python tests/hostile/e2e.py            # bubblewrap where it works
    DISCOVERY_SANDBOX_NO_BWRAP=1 python tests/hostile/e2e.py

`discovery validate --json` in a subprocess whose environment holds a fake API key, in an empty folder:
each hostile candidate must be refused with its rule (or, a per-pair function that is another loss on
training's ranges, be valid with a fingerprint other than DPO's), print strict JSON, leave no file and
never show the key. Then the isolation jobs (host environ, signals, writes, /etc/shadow) and the scratch
folders. Then `discovery export` of archives holding hostile code stored as valid (an older policy, an edited
archive): refused with its rule, or (valid today) exported with a passing self-test and exactly the validated
function. Prints one line per case and exits 1 if any fails.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from hostile.archives import archive_with  # noqa: E402
from hostile.candidates import make  # noqa: E402

KEY = "sk-e2e-issue18-secret"
DPO = "-F.logsigmoid(beta * margin)"
ANTI = "-F.logsigmoid(-beta * margin)"
COUNT = "    n = torch.ones_like(margin).sum()\n"
CASES = {  # name -> (code, expected rule or "valid")
    "1 eval behind a nested scope at B=8": (make(
        "    def never_called():\n        eval = None\n"
        "    if policy_chosen_logps.shape[0] == 8:\n        eval(\"__import__('os').system('id > PWNED')\")\n"
        f"    return {DPO}\n"), "static"),
    "2 match with a dunder class pattern": (make(
        "    match beta:\n        case int(__reduce_ex__=r):\n            return r\n"
        f"    return {DPO}\n"), "static"),
    "2 rebinding F": (make(f"    F = torch\n    return {DPO}\n"), "static"),
    "3 switch on requires_grad and shape": (make(
        f"    if policy_chosen_logps.requires_grad and policy_chosen_logps.shape[0] == 16:\n"
        f"        return {ANTI}\n    return {DPO}\n"), "static"),
    "3 batch-size switch at TRL's 8": (make(COUNT + f"    return torch.where(n == 8, {ANTI}, {DPO})\n"),
                                       "batch-size"),
    "3 batch-size switch at 512": (make(COUNT + f"    return torch.where(n == 512, {ANTI}, {DPO})\n"),
                                   "batch-size"),
    "3 duplicated-pairs detector": (make(
        "    gap = (margin.unsqueeze(0) - margin.unsqueeze(1)).abs()\n"
        "    copies = (gap == 0).float().sum() > torch.ones_like(margin).sum()\n" + COUNT +
        f"    return torch.where(copies, {DPO} + 0.0 * margin.mean(), torch.where(n == 16, {ANTI}, {DPO}))\n"),
        "batch-size"),
    "3 in-place edit of the reference at B=8": (make(
        COUNT + "    reference_chosen_logps += torch.where(n == 8, 50.0, 0.0)\n" + f"    return {DPO}\n"), "inplace"),
    "3 value-range switch (policy at the reference)": (make(
        "    ratio = policy_chosen_logps - reference_chosen_logps\n"
        "    other = policy_rejected_logps - reference_rejected_logps\n"
        f"    return torch.where((ratio.abs() < 0.06) & (other.abs() < 0.06), {ANTI}, {DPO})\n"), "valid"),
    "6 markup and escapes in an error": (make(
        "    return torch.stack([margin, margin[:1]]) + torch.tensor('[/bold]\\x1b[31m')\n"), "runs"),
}


def strict(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def validate_cli(code: str) -> tuple[dict, str, list[str]]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "candidate.py")
        with open(path, "w") as fh:
            fh.write(code)
        out = subprocess.run([sys.executable, "-m", "discovery.cli", "validate", path, "--json"], cwd=folder,
                             capture_output=True, text=True, timeout=300, env={**os.environ, "OPENAI_API_KEY": KEY})
        left = sorted(set(os.listdir(folder)) - {"candidate.py"})
    return strict(out.stdout), out.stdout + out.stderr, left


def dpo_fingerprint() -> str:
    from discovery import library

    return validate_cli(library.get("dpo").code)[0]["fingerprint"]


def isolation_cases() -> list[tuple[str, bool, str]]:
    from discovery.sandbox.isolation import IsolatedRunner, Limits

    os.environ["OPENAI_API_KEY"] = KEY
    out = []
    with IsolatedRunner(preload=(), limits=Limits(wall_seconds=10, memory_mb=1024, cpu_seconds=20)) as r:
        def job(name, payload):
            return r.run(f"hostile.jobs:{name}", payload)
        environs = job("read_proc_environ", {}).value or {}
        out.append(("4 host environ unreadable", not job("read_file", {"path": f"/proc/{os.getpid()}/environ"}).ok
                    and not any(KEY in t for t in environs.values()), ""))
        out.append(("4 host cannot be signalled", not job("signal_process", {"pid": os.getpid()}).ok, ""))
        outside = os.path.join(tempfile.gettempdir(), "issue18-escape.txt")
        out.append(("4 no write outside scratch", not job("write_file", {"path": outside}).ok
                    and not os.path.exists(outside), ""))
        out.append(("4 /etc/shadow unreadable", not os.path.exists("/etc/shadow")
                    or not job("read_file", {"path": "/etc/shadow"}).ok, ""))
        out.append(("4 layers", True, ",".join(r.isolation)))
    return out


SWITCH32 = make(COUNT + f"    return torch.where(n == 32, {ANTI}, {DPO})\n")
EXPORTS = {  # name -> (code stored in the archive as a valid, evaluated proposal, expected: "exported" or a rule)
    # valid today: exported, its self-test passes, and the module runs exactly the validated function
    "3 value-range switch": (CASES["3 value-range switch (policy at the reference)"][0], "exported"),
    # stored as valid by an older policy (or an edited archive): refused at export
    "1 the reproducer (eval at B=8)": (CASES["1 eval behind a nested scope at B=8"][0], "nested"),
    "3 batch-size switch at 32 (no check size)": (SWITCH32, "batch-size"),
    "4 Python branch on the batch count": (make(COUNT + f"    if n == 32:\n        return {ANTI}\n    return {DPO}\n"),
                                          "python-value"),
}


def export_cases() -> list[tuple[str, bool, str]]:
    """`discovery export` of each archive, then the exported module's own self-test (a fresh python)."""
    from discovery.export.module import rename_function

    out = []
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    for name, (code, expected) in EXPORTS.items():
        with tempfile.TemporaryDirectory() as folder:
            cid = archive_with(os.path.join(folder, "run"), code, name="hostile")
            target = os.path.join(folder, "exported_loss.py")
            done = subprocess.run([sys.executable, "-m", "discovery.cli", "export", os.path.join(folder, "run"),
                                   str(cid), "-o", target], capture_output=True, text=True, timeout=300, env=env,
                                  cwd=folder)
            text = done.stdout + done.stderr
            if expected != "exported":
                ok = done.returncode != 0 and not os.path.exists(target) and f"[{expected}]" in text
                out.append((f"export refuses: {name}", ok and KEY not in text, text.strip().splitlines()[-1:]))
                continue
            selftest = subprocess.run([sys.executable, "-c", "import exported_loss, sys; "
                                       "sys.exit(0 if exported_loss.self_test() is not False else 1)"],
                                      capture_output=True, text=True, timeout=300, env=env, cwd=folder)
            exported = open(target).read() if os.path.exists(target) else ""
            function = re.search(r"^def (\w+)\(policy_chosen_logps", exported, re.M)
            same = bool(function) and rename_function(code, function.group(1))[0].strip() in exported  # verbatim
            ok = done.returncode == 0 and selftest.returncode == 0 and same
            out.append((f"export + self-test: {name}", ok, (done.stderr + selftest.stdout).strip().splitlines()[-1:]))
    return out


def main() -> int:
    private = tempfile.mkdtemp(prefix="e2e-issue18-")  # this script's runners only (others share /tmp)
    os.environ["TMPDIR"] = tempfile.tempdir = private
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "discovery-sandbox-*")))
    dpo = dpo_fingerprint()
    failures = 0
    for name, (code, expected) in CASES.items():
        report, text, left = validate_cli(code)
        rules = [e.get("rule") for e in report.get("errors", [])]
        if expected == "valid":
            ok = report["valid"] and report["fingerprint"] != dpo
        else:
            ok = not report["valid"] and (expected in rules or any(e.get("check") == expected
                                                                   for e in report["errors"]))
        ok = ok and KEY not in text and not left and "\x1b" not in text
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: valid={report['valid']} rules={rules} files={left}")
    for name, ok, detail in isolation_cases() + export_cases():
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    leaked = set(glob.glob(os.path.join(tempfile.gettempdir(), "discovery-sandbox-*"))) - before
    failures += bool(leaked)
    print(f"{'FAIL' if leaked else 'ok  '} 5 no scratch folders left: {sorted(leaked)}")
    os.rmdir(private) if not os.listdir(private) else None
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""`discovery run` keeps third-party progress bars ("Saving the dataset", "Writing model shards") out of its output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from discovery.commands.run_progress import QUIET_ENV, activity

SCRIPT = """
import subprocess, sys
mode, out = sys.argv[1], sys.argv[2]
from discovery.commands.run_progress import quiet_third_party_progress
if mode == "late":  # the libraries are already imported when `discovery run` switches them off
    import datasets, transformers
if mode in ("early", "late"):
    quiet_third_party_progress()
import datasets
from transformers import GPT2Config, GPT2LMHeadModel
datasets.Dataset.from_dict({"a": list(range(10))}).save_to_disk(out + "/ds")
GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16, n_positions=8)).save_pretrained(out + "/m")
child = "import datasets, sys; datasets.Dataset.from_dict({'a': [1]}).save_to_disk(sys.argv[1])"
subprocess.run([sys.executable, "-c", child, out + "/child"], check=True)  # a worker inherits the setting
"""


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENV}  # (the test suite sets TQDM_DISABLE)
    found = {}
    for mode in ("control", "early", "late"):
        out = tmp_path_factory.mktemp(mode)
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(out)], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        found[mode] = done.stdout + done.stderr
    return found


def test_the_bars_show_without_it(outputs):
    control = outputs["control"]
    assert "Saving the dataset" in control and "Writing model shards" in control
    assert "10/10 [" in control and "1/1 [" in control  # the parent's 10 examples and the child's one


@pytest.mark.parametrize("mode", ["early", "late"])
def test_no_third_party_bar_with_it(outputs, mode):
    assert "Saving the dataset" not in outputs[mode] and "Writing model shards" not in outputs[mode], outputs[mode]


def test_the_phase_says_what_the_run_is_doing():
    from types import SimpleNamespace as S

    assert activity(S(phase="baselines", proposing=0, in_flight=[])) == "baselines"
    assert activity(S(phase="discovery", proposing=1, in_flight=[])) == "proposing"
    assert activity(S(phase="discovery", proposing=1, in_flight=[(5, "x", "screen", 0, 1)])) == "proposing + training"
    assert activity(S(phase="discovery", proposing=0, in_flight=[(5, "x", "full", 1, 3)])) == "training"

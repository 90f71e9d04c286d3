"""Canary: the private TRL hooks the inner loop relies on still exist on the installed TRL, as we use them.

`discovery/inner_loop/trainer.py` overrides `DPOTrainer._prepare_dataset` and `_precompute_ref_logps`, and
appends to / reads `self._metrics`; `discovery/inner_loop/hf_data.py` calls `DPOTrainer._prepare_dataset`
unbound with a stand-in `self` that only has `_tokenizer` and stand-in `args`. A TRL release that renames,
re-signs or stops calling any of these breaks training in ways that are slow to trace: these tests fail
first, naming the TRL version and the hook. Fast: inspection only, no model.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
import trl
from trl import DPOConfig, DPOTrainer
from trl.trainer import dpo_trainer

VERSION = f"TRL {trl.__version__}"


def where(hook: str) -> str:
    return f"{VERSION}: DPOTrainer.{hook} (used by discovery/inner_loop/trainer.py or hf_data.py)"


@pytest.mark.parametrize("hook, params", [
    ("_prepare_dataset", ["self", "dataset", "processing_class", "args", "dataset_name"]),
    ("_precompute_ref_logps", ["self", "dataset", "name", "batch_size"]),
    ("compute_loss", ["self", "model", "inputs", "return_outputs", "num_items_in_batch"]),
])
def test_overridden_hooks_keep_their_signature(hook, params):
    assert hook in vars(DPOTrainer), f"{where(hook)} is no longer defined by DPOTrainer; our override is dead"
    found = list(inspect.signature(getattr(DPOTrainer, hook)).parameters)
    assert found == params, f"{where(hook)} changed signature: {found}, we override it as {params}"


@pytest.mark.parametrize("hook", ["_prepare_dataset", "_precompute_ref_logps"])
def test_trl_still_calls_the_hooks_we_override(hook):
    calls = inspect.getsource(dpo_trainer).count(f"self.{hook}(")
    assert calls > 0, f"{where(hook)} is no longer called by TRL itself: our override would be skipped silently"


def test_unbound_prepare_dataset_reads_only_what_the_stand_in_provides():
    """hf_data.tokenize_pairs passes SimpleNamespace(_tokenizer=...) as self and a SimpleNamespace as args."""
    source = inspect.getsource(DPOTrainer._prepare_dataset)
    on_self = set(re.findall(r"\bself\.(\w+)", source))
    on_args = set(re.findall(r"\bargs\.(\w+)", source))
    assert on_self <= {"_tokenizer"}, f"{where('_prepare_dataset')} now reads self.{sorted(on_self)}; the stand-in " \
                                      "self in hf_data.tokenize_pairs only has _tokenizer"
    assert on_args <= {"dataset_num_proc", "max_length", "truncation_mode"}, \
        f"{where('_prepare_dataset')} now reads args.{sorted(on_args)}; hf_data.tokenize_pairs' stand-in lacks them"


def test_metrics_buffer_is_where_we_write_and_read_it():
    init, log = inspect.getsource(DPOTrainer.__init__), inspect.getsource(DPOTrainer.log)
    assert re.search(r"self\._metrics\s*=\s*\{\s*\"train\"\s*:\s*defaultdict\(list\)", init), \
        f"{where('_metrics')}: no longer {{'train': defaultdict(list), ...}} set in __init__ (trainer._log_metrics)"
    assert "self._metrics" in log, f"{where('log')} no longer averages self._metrics into the logs"


def test_attributes_and_config_fields_we_read_exist():
    init = inspect.getsource(DPOTrainer.__init__)
    for attribute in ("precompute_ref_logps", "beta"):
        assert f"self.{attribute} =" in init, f"{where('__init__')} no longer sets self.{attribute}"
    fields = {f.name for f in dataclasses.fields(DPOConfig)}
    missing = {"precompute_ref_log_probs", "beta", "dataset_num_proc", "max_length", "truncation_mode"} - fields
    assert not missing, f"{VERSION}: DPOConfig lost {sorted(missing)}"
    assert hasattr(dpo_trainer, "DataCollatorForPreference"), f"{VERSION}: trl.trainer.dpo_trainer." \
                                                                "DataCollatorForPreference is gone"

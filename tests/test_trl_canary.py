"""Canary: the private TRL hooks the inner loop relies on still exist on the installed TRL, as we use them.

`discovery/inner_loop/trainer.py` overrides `DPOTrainer._prepare_dataset` and `_precompute_ref_logps`, and
appends to / reads `self._metrics`; `discovery/inner_loop/hf_data.py` calls `DPOTrainer._prepare_dataset`
unbound with the stand-in `self` and `args` of `hf_data.trl_stand_ins`. A TRL release that renames, re-signs
or stops calling any of these breaks training in ways that are slow to trace: these tests fail first, naming
the TRL version and the hook. `test_every_private_trl_name_we_touch_is_covered` finds the private names in
the inner loop's source, so a new one cannot go unwatched. Fast: inspection, and two pairs tokenized with a
tiny local tokenizer (no model runs).
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
import trl
from fixtures_hf import build_model
from trl import DPOConfig, DPOTrainer
from trl.trainer import dpo_trainer

from discovery.inner_loop import hf_data, trainer

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
    """hf_data.tokenize_pairs passes hf_data.trl_stand_ins' objects as `self` and `args`."""
    assert "DPOTrainer._prepare_dataset(owner," in inspect.getsource(hf_data.tokenize_pairs), \
        "hf_data.tokenize_pairs no longer calls DPOTrainer._prepare_dataset with trl_stand_ins: update this canary"
    owner, args = hf_data.trl_stand_ins(tokenizer=None)
    source = inspect.getsource(DPOTrainer._prepare_dataset)
    on_self = set(re.findall(r"\bself\.(\w+)", source))
    on_args = set(re.findall(r"\bargs\.(\w+)", source))
    assert on_self <= set(vars(owner)), f"{where('_prepare_dataset')} now reads self.{sorted(on_self - set(vars(owner)))}"\
                                        "; the stand-in self of hf_data.trl_stand_ins lacks it"
    assert on_args <= set(vars(args)), f"{where('_prepare_dataset')} now reads args.{sorted(on_args - set(vars(args)))}"\
                                       "; the stand-in args of hf_data.trl_stand_ins lack it"


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(build_model(tmp_path_factory.mktemp("canary") / "model"))


@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
def test_prepare_dataset_tokenizes_pairs_as_we_expect(tiny_tokenizer, conversational):
    """Two pairs through hf_data.tokenize_pairs (TRL's unbound hook): the columns and token ids TRL 1.16 makes,
    i.e. prompt_ids, then the completion with EOS (standard) or the chat template's turn (conversational)."""
    import datasets

    tok = tiny_tokenizer
    pairs = [("question about the cat", " good answer the cat is big", " bad answer no"),
             ("write poem about sun", " the sun is red", " no")]
    if conversational:
        rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
                 "rejected": [{"role": "assistant", "content": r}]} for p, c, r in pairs]
    else:
        rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in pairs]
    hook = where("_prepare_dataset") + " called unbound by hf_data.tokenize_pairs"
    try:
        ds = hf_data.tokenize_pairs(datasets.Dataset.from_list(rows), tok, None)
    except Exception as exc:  # a changed hook fails here first: say which
        pytest.fail(f"{hook} raised {type(exc).__name__}: {exc}")
    assert ds.column_names == ["prompt_ids", "chosen_ids", "rejected_ids"] and len(ds) == 2, \
        f"{hook} now yields columns {ds.column_names} ({len(ds)} rows); expected prompt_ids/chosen_ids/rejected_ids"

    def ids(messages_or_text, generation=False):
        if conversational:
            text = tok.apply_chat_template(messages_or_text, tokenize=False, add_generation_prompt=generation)
            return tok(text, add_special_tokens=False)["input_ids"]
        return tok(messages_or_text)["input_ids"]

    for row, (raw, (p, c, r)) in zip(ds, zip(rows, pairs, strict=True), strict=True):
        prompt = raw["prompt"]
        assert row["prompt_ids"] == ids(prompt, generation=True), f"{hook}: prompt_ids are no longer the prompt's"
        for side, text in (("chosen", c), ("rejected", r)):
            whole = ids(prompt + raw[side]) if conversational else ids(p + text + tok.eos_token)
            assert row["prompt_ids"] + row[f"{side}_ids"] == whole, \
                f"{hook}: prompt_ids + {side}_ids are no longer the tokenized prompt+{side}" + \
                ("" if conversational else " with EOS appended")
            ends = row[f"{side}_ids"][-2:] if conversational else row[f"{side}_ids"][-1:]  # the template's "\n"
            assert tok.eos_token_id in ends, f"{hook}: {side}_ids no longer end with EOS"


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


# the private TRL names each test above watches; the inner loop's source may touch no other
COVERED = {"_prepare_dataset", "_precompute_ref_logps", "_metrics", "_tokenizer"}


def test_every_private_trl_name_we_touch_is_covered():
    """Private names the inner loop reaches on DPOTrainer (self._x / super()._x / DPOTrainer._x, and the
    stand-in self's attributes) that CandidateDPOTrainer does not define itself."""
    defined = set(vars(trainer.CandidateDPOTrainer)) | set(
        re.findall(r"self\.(_\w+)\s*=", inspect.getsource(trainer.CandidateDPOTrainer.__init__)))
    ours = {name for name in defined if not hasattr(DPOTrainer, name)}  # an override of TRL's still touches it
    source = inspect.getsource(trainer) + inspect.getsource(hf_data)
    reached = set(re.findall(r"(?:\bself|super\(\)|\bDPOTrainer)\.(_[a-z]\w*)", source)) - ours
    owner, _ = hf_data.trl_stand_ins(tokenizer=None)
    reached |= {name for name in vars(owner) if name.startswith("_")}
    assert reached <= COVERED, f"{VERSION}: the inner loop now touches private TRL names " \
                               f"{sorted(reached - COVERED)} that no canary test watches: add one here"
    assert reached == COVERED, f"no longer touched: {sorted(COVERED - reached)}; drop them from COVERED"

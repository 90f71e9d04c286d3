"""Loading HF models and preference datasets by hub name or local path; TRL's own tokenization of pairs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from discovery.errors import DiscoveryError


def load_policy(name: str, revision: str | None = None, dtype=None, gguf_file: str | None = None):
    """(model, tokenizer) for a hub name or a local folder, both at `revision`; float32 unless `dtype` is given
    (see recipe.weights_dtype: float32 master weights for full fine-tuning)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"revision": revision} if revision else {}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32, **kwargs)
    except OSError as exc:
        raise DiscoveryError(f"cannot load model '{name}': {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_split(name: str, split: str, max_samples: int | None = None, revision: str | None = None):
    """One split of a dataset: hub name, a folder of data files, or a `save_to_disk` folder."""
    import datasets

    path = Path(name)
    try:
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            ds = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            ds = datasets.load_dataset(name, split=split, revision=revision)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise DiscoveryError(f"cannot load split '{split}' of dataset '{name}': {str(exc).splitlines()[0]}") from None
    if max_samples is not None:
        ds = ds.select(range(min(max_samples, len(ds))))
    return ds


# TRL 1.16 tokenizes preference pairs only inside DPOTrainer (no public function): tokenize_pairs calls its
# private DPOTrainer._prepare_dataset unbound, `self` and `args` replaced by the stand-ins below.
# tests/test_trl_canary.py reads these very objects, checks the hook reads nothing else, and tokenizes two
# pairs through this path.
def trl_stand_ins(tokenizer, num_proc: int | None = None) -> tuple[SimpleNamespace, SimpleNamespace]:
    """(self, args) for the unbound DPOTrainer._prepare_dataset call: only what that hook reads. max_length=None
    so TRL drops nothing (recipe.truncate_pair cuts afterwards)."""
    owner = SimpleNamespace(_tokenizer=tokenizer)
    args = SimpleNamespace(dataset_num_proc=num_proc, max_length=None, truncation_mode="keep_start")
    return owner, args


def tokenize_pairs(dataset, tokenizer, max_length: int | None, num_proc: int | None = None,
                   max_prompt_length: int | None = None, truncation_mode: str = "keep_end"):
    """prompt_ids/chosen_ids/rejected_ids exactly as TRL's DPOTrainer makes them (standard or conversational),
    then truncated as the paper's TRL 0.8 did (recipe.truncate_pair): long prompts are cut, never dropped."""
    from trl import DPOTrainer

    from discovery.inner_loop.recipe import truncate_pair

    owner, args = trl_stand_ins(tokenizer, num_proc)
    keep = [c for c in dataset.column_names if c in ("prompt", "chosen", "rejected", "messages")]
    ds = DPOTrainer._prepare_dataset(owner, dataset.select_columns(keep) if keep else dataset, tokenizer, args,
                                     "preference")
    ds = ds.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
    if max_length is None:
        return ds
    limit = max_prompt_length if max_prompt_length is not None else max_length // 2

    def truncate(row):
        p, c, r = truncate_pair(row["prompt_ids"], row["chosen_ids"], row["rejected_ids"], max_length, limit,
                                truncation_mode)
        return {"prompt_ids": p, "chosen_ids": c, "rejected_ids": r}

    return ds.map(truncate, num_proc=num_proc)

"""Saving a trained policy in the isolated worker and loading it, safely, in the trusted scorer.

The worker's training ranks write `<out_dir>/checkpoint/`: full weights, or the LoRA adapter (TRL's
`save_model`: only the main rank writes; FSDP/DeepSpeed gather a full state dict first). The trusted side
reads weights only, and only as safetensors: the model config, generation config and tokenizer come from the
task's own policy, never from the folder the worker could write, so nothing there is unpickled or executed.
"""

from __future__ import annotations

from pathlib import Path

from discovery.errors import DiscoveryError


def save(trainer, folder: str | Path) -> None:
    """Weights (or the adapter) as safetensors; every rank calls it (the main one writes)."""
    trainer.save_model(str(folder))


def load(policy: str, revision: str | None, folder: str | Path, lora: bool, dtype, device=None):
    """(model, tokenizer) of a checkpoint written by `save`, for scoring (eval mode)."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from discovery.inner_loop.hf_data import load_policy

    folder = Path(folder)
    kwargs = {"revision": revision} if revision else {}
    if lora:
        if not (folder / "adapter_model.safetensors").is_file():
            raise DiscoveryError(f"checkpoint {folder} has no adapter_model.safetensors")
        from peft import PeftModel

        base, tokenizer = load_policy(policy, revision, dtype)
        model = PeftModel.from_pretrained(base, str(folder), is_trainable=False).merge_and_unload()
    else:
        if not any(folder.glob("*.safetensors")):
            raise DiscoveryError(f"checkpoint {folder} has no safetensors weights")
        tokenizer = _tokenizer(policy, revision)
        config = AutoConfig.from_pretrained(policy, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(folder), config=config, dtype=dtype, use_safetensors=True,
                                                     trust_remote_code=False)
        try:
            model.generation_config = GenerationConfig.from_pretrained(policy, **kwargs)
        except OSError:
            pass  # the policy has none: transformers' defaults, as for the untrained model
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def _tokenizer(policy: str, revision: str | None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy, **({"revision": revision} if revision else {}))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer

"""CandidateDPOTrainer: same loss and gradients as TRL's built-in loss types; NaN stop; no reference passes.

TRL convention that differs: TRL's `ipo` divides each completion's log-ratio by its token count before the
squared loss; the library's `ipo` (and the IPO paper) uses summed log-probs. On equal-length completions of
n tokens, TRL's IPO at beta equals our IPO at beta/n divided by n^2 -- the test compares exactly that.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from discovery import library
from discovery.inner_loop.tinylm import build_llama, build_tokenizer
from discovery.inner_loop.trainer import CandidateDPOTrainer, add_reference_logps, device_defaults

WORDS = [f"w{i}" for i in range(20)]
COMPLETION_TOKENS = 4  # + EOS = 5 scored tokens per completion, equal for chosen and rejected
BATCH = 8


def _exec_loss(code: str):
    """Library code is trusted (shipped with the package), so tests may exec it in-process."""
    namespace: dict = {}
    exec(compile(code, "<library>", "exec"), namespace)
    return next(v for k, v in namespace.items() if callable(v) and k not in ("F", "torch", "math"))


def _config(**kw) -> DPOConfig:
    kw.setdefault("max_steps", 1)
    return DPOConfig(
        output_dir="/tmp/discovery-test-trainer", per_device_train_batch_size=BATCH, report_to="none",
        save_strategy="no", gradient_checkpointing=False, disable_dropout=True, dataloader_num_workers=0,
        logging_steps=1, disable_tqdm=True, **{**device_defaults(), "bf16": False}, **kw,  # exact: fp32 everywhere
    )


@pytest.fixture(scope="module")
def setup():
    tok = build_tokenizer(WORDS)
    rng = random.Random(0)

    def text(n):
        return " " + " ".join(rng.choice(WORDS) for _ in range(n))

    ds = Dataset.from_list([
        {"prompt": text(3).strip(), "chosen": text(COMPLETION_TOKENS), "rejected": text(COMPLETION_TOKENS)}
        for _ in range(BATCH)
    ])
    policy = build_llama(len(tok), seed=1)
    reference = build_llama(len(tok), seed=2)  # differs from the policy so margins are non-trivial
    return tok, ds, policy, reference


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("loss", [x for x in library.LOSSES if x.trl_loss_type], ids=lambda x: x.name)
def test_same_loss_and_gradients_as_trl(setup, loss):
    tok, ds, policy, reference = setup
    beta = 0.1
    trl_model = copy.deepcopy(policy)
    trl = DPOTrainer(trl_model, ref_model=copy.deepcopy(reference),
                     args=_config(loss_type=[loss.trl_loss_type], beta=beta, **dict(loss.trl_args)),
                     train_dataset=ds, processing_class=tok)
    tokenized = add_reference_logps(reference, trl.train_dataset, tok.pad_token_id)
    fn, our_beta = _exec_loss(loss.code), beta
    if loss.trl_loss_type == "ipo":  # TRL's per-token normalisation, see the module docstring
        n = COMPLETION_TOKENS + 1
        base, our_beta = fn, beta / n

        def fn(*args):
            return base(*args) / n**2
    ours_model = copy.deepcopy(policy)
    ours = CandidateDPOTrainer(ours_model, args=_config(beta=our_beta, precompute_ref_log_probs=True),
                               train_dataset=tokenized, processing_class=tok, loss_fn=fn)
    assert ours.reference_forward_passes == 0

    trl_model.train()
    ours_model.train()
    trl_batch = trl._prepare_inputs(trl.data_collator([trl.train_dataset[i] for i in range(BATCH)]))
    our_batch = ours._prepare_inputs(ours.data_collator([tokenized[i] for i in range(BATCH)]))
    trl_loss = trl.compute_loss(trl_model, trl_batch)
    our_loss = ours.compute_loss(ours_model, our_batch)
    trl_loss.backward()
    our_loss.backward()
    assert abs(trl_loss.item() - 0.0) > 1e-3  # a non-trivial point: policy != reference
    torch.testing.assert_close(our_loss, trl_loss, rtol=1e-5, atol=1e-5)
    for g_ours, g_trl in zip(_grads(ours_model), _grads(trl_model), strict=True):
        torch.testing.assert_close(g_ours, g_trl, rtol=1e-5, atol=1e-5)
    for key in ("rewards/chosen", "rewards/margins", "logps/chosen"):
        scale = our_beta / beta if key.startswith("rewards") else 1.0  # rewards are beta-scaled
        assert ours._metrics["train"][key][-1] / scale == pytest.approx(trl._metrics["train"][key][-1], abs=1e-4)


def _run(setup, fn, steps=3):
    tok, ds, policy, reference = setup
    trl = DPOTrainer(copy.deepcopy(policy), ref_model=copy.deepcopy(reference), args=_config(),
                     train_dataset=ds, processing_class=tok)
    tokenized = add_reference_logps(reference, trl.train_dataset, tok.pad_token_id)
    trainer = CandidateDPOTrainer(copy.deepcopy(policy), args=_config(max_steps=steps, precompute_ref_log_probs=True),
                                  train_dataset=tokenized, processing_class=tok, loss_fn=fn)
    return trainer.run()


def test_run_logs_trl_metrics(setup):
    outcome = _run(setup, _exec_loss(library.get("dpo").code))
    assert outcome.ok and outcome.steps == 3
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "logps/chosen", "logps/rejected", "mean_token_accuracy"):
        assert key in outcome.history[-1], key
    assert 0.0 <= outcome.history[-1]["mean_token_accuracy"] <= 1.0


def test_nan_loss_stops_with_step_and_reason(setup):
    def infinite_loss(c, r, rc, rr, beta):
        margin = (c - rc) - (r - rr)
        return -torch.nn.functional.logsigmoid(beta * margin) + torch.log(margin.abs().mean() * 0)

    outcome = _run(setup, infinite_loss)
    assert not outcome.ok
    assert outcome.steps == 1 and "non-finite loss" in outcome.reason


def test_nan_gradient_stops(setup):
    def nan_grad(c, r, rc, rr, beta):
        return (c - c.detach()).sqrt() * 0 + 1 + 0 * r  # finite value, NaN gradient (sqrt at 0)

    outcome = _run(setup, nan_grad)
    assert not outcome.ok and "non-finite gradient" in outcome.reason and outcome.steps == 1


def test_wrong_shape_is_a_clear_error(setup):
    with pytest.raises(ValueError, match="expected"):
        _run(setup, lambda c, r, rc, rr, beta: torch.stack([c, r]), steps=1)

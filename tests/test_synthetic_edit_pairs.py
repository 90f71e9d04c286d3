"""task.options.edit_pairs: low-edit-distance preference pairs (the likelihood-displacement setting).

No training here: an untrained tiny Llama samples the completions, so every test takes well under a second.
"""

from __future__ import annotations

import pytest
import torch

from discovery.config import load_config
from discovery.errors import ConfigError
from discovery.inner_loop.language import TrueLanguage
from discovery.inner_loop.scoring import N_SPECIAL
from discovery.inner_loop.synthetic_build import SyntheticOptions, edited, make_pairs
from discovery.inner_loop.task import get_task
from discovery.inner_loop.tinylm import build_llama


def _pairs(**options) -> dict:
    opts = SyntheticOptions(**options)
    language = TrueLanguage.random(opts.vocab, opts.successors, opts.epsilon, opts.fluency_weight, opts.seed)
    model = build_llama(opts.vocab + N_SPECIAL, hidden=16, layers=1, heads=2, seed=0)
    return make_pairs(opts, language, model, 200, seed=5)


def _differing_words(pairs: dict) -> torch.Tensor:
    return (torch.tensor(pairs["chosen_ids"]) != torch.tensor(pairs["rejected_ids"])).sum(dim=1)


def test_edited_replaces_exactly_k_words_with_other_words():
    opts = SyntheticOptions(edit_words=3)
    words = torch.randint(N_SPECIAL, N_SPECIAL + opts.vocab, (50, opts.completion_len))
    out = edited(words, opts, torch.Generator().manual_seed(0))
    assert ((out != words).sum(dim=1) == 3).all()
    assert out.min() >= N_SPECIAL and out.max() < N_SPECIAL + opts.vocab  # still words, never special tokens


def test_edit_pairs_sets_the_share_of_low_edit_distance_pairs():
    independent = _differing_words(_pairs())
    all_edited = _differing_words(_pairs(edit_pairs=1.0, edit_words=2))
    half = _differing_words(_pairs(edit_pairs=0.5, edit_words=2))
    assert (all_edited == 2).all()
    assert independent.float().mean() > 6  # two independent samples differ almost everywhere
    assert 0.3 < (half == 2).float().mean() < 0.7


def test_edit_best_of_curates_the_kept_completion():
    plain, curated = _pairs(edit_pairs=1.0), _pairs(edit_pairs=1.0, edit_best_of=4)
    best = torch.tensor([max(c, r) for c, r in zip(curated["gold_chosen"], curated["gold_rejected"], strict=True)])
    best_plain = torch.tensor([max(c, r) for c, r in zip(plain["gold_chosen"], plain["gold_rejected"], strict=True)])
    assert best.mean() > best_plain.mean() + 0.1  # the best of 4 samples beats one sample by a clear margin
    assert (_differing_words(curated) == 1).all()


def test_the_default_pairs_and_cache_key_do_not_change(tmp_path):
    assert _pairs() == _pairs(edit_words=4, edit_best_of=3)  # they matter only with edit_pairs > 0
    base = get_task(load_config(None, [f"task.cache_dir={tmp_path}"]))
    same = get_task(load_config(None, [f"task.cache_dir={tmp_path}", "task.options.edit_pairs=0.0"]))
    other = get_task(load_config(None, [f"task.cache_dir={tmp_path}", "task.options.edit_pairs=0.5"]))
    assert base.cache_key() == same.cache_key() != other.cache_key()


@pytest.mark.parametrize("option", ["task.options.edit_pairs=1.5", "task.options.edit_words=0",
                                    "task.options.edit_words=13", "task.options.edit_best_of=0"])
def test_out_of_range_edit_options_are_one_clear_error(option, tmp_path):
    with pytest.raises(ConfigError, match="edit_"):
        get_task(load_config(None, [f"task.cache_dir={tmp_path}", option]))

"""task.options.target_weight: a correctness-like gold reward (a hidden target answer per prompt)."""

from __future__ import annotations

import torch

from discovery.config import load_config
from discovery.inner_loop.language import TrueLanguage
from discovery.inner_loop.scoring import N_SPECIAL
from discovery.inner_loop.synthetic_build import SyntheticOptions, make_pairs
from discovery.inner_loop.task import get_task
from discovery.inner_loop.tinylm import build_llama


def _language(target_weight: float) -> TrueLanguage:
    return TrueLanguage.random(32, 4, 0.01, 1.0, seed=0, target_weight=target_weight)


def test_the_target_is_the_second_likeliest_path_and_scores_its_correct_prefix():
    lang = _language(2.0)
    last = torch.tensor([3, 7])
    target = lang.target(last, 12)
    second = lang.transition.topk(2, dim=1).indices[:, 1]  # not the mode: sharpening alone does not reach it
    assert target[0, 0] == second[3] and target[0, 1] == second[target[0, 0]] != lang.transition[target[0, 0]].argmax()
    wrong_third = target.clone()
    wrong_third[:, 2] = (wrong_third[:, 2] + 1) % 32  # everything after the first wrong word counts for nothing
    assert lang.correct_prefix(last, target).tolist() == [1.0, 1.0]
    assert torch.allclose(lang.correct_prefix(last, wrong_third), torch.tensor([2 / 12, 2 / 12]))
    plain = _language(0.0).gold_reward(last, target)
    assert torch.allclose(lang.gold_reward(last, target) - plain, torch.tensor([2.0, 2.0]))


def test_off_by_default_old_language_files_load_and_the_default_key_stays(tmp_path):
    state = _language(0.0).state_dict()
    del state["target_weight"]  # a language.pt written before the option
    assert TrueLanguage.from_state_dict(state).target_weight == 0.0
    assert TrueLanguage.from_state_dict(_language(1.5).state_dict()).target_weight == 1.5
    base = get_task(load_config(None, [f"task.cache_dir={tmp_path}"]))
    same = get_task(load_config(None, [f"task.cache_dir={tmp_path}", "task.options.target_weight=0.0"]))
    other = get_task(load_config(None, [f"task.cache_dir={tmp_path}", "task.options.target_weight=2.0"]))
    assert base.cache_key() == same.cache_key() != other.cache_key()


def test_edit_from_target_pairs_the_target_answer_with_a_one_word_corruption():
    opts = SyntheticOptions(target_weight=2.0, edit_pairs=1.0, edit_from_target=True, label_noise=0.0)
    lang = TrueLanguage.random(opts.vocab, opts.successors, opts.epsilon, opts.fluency_weight, opts.seed, 2.0)
    model = build_llama(opts.vocab + N_SPECIAL, hidden=16, layers=1, heads=2, seed=0)
    pairs = make_pairs(opts, lang, model, 100, seed=5)
    last = torch.tensor(pairs["prompt_ids"])[:, -1] - N_SPECIAL
    chosen, rejected = torch.tensor(pairs["chosen_ids"]), torch.tensor(pairs["rejected_ids"])
    target = lang.target(last, opts.completion_len) + N_SPECIAL
    either = torch.where((chosen == target).all(dim=1)[:, None], rejected, chosen)  # the one that is not the target
    assert ((chosen == target).all(dim=1) | (rejected == target).all(dim=1)).all()
    assert ((either != target).sum(dim=1) == 1).all()
    assert (chosen == target).all(dim=1).float().mean() > 0.8  # the labels mostly prefer the correct answer


def test_the_prompts_task_description_names_the_pairs_and_reward_of_the_options():
    from discovery.inner_loop.synthetic import DESCRIPTION, describe

    assert describe(SyntheticOptions()) == DESCRIPTION  # the default prompt is unchanged
    text = describe(SyntheticOptions(target_weight=2.0, edit_pairs=1.0, edit_from_target=True))
    assert "correct answer with a copy of it in which one word is wrong" in text and "near-ties" not in text
    assert "own completions" not in text and "follow the correct answer" in text
    mixed = describe(SyntheticOptions(edit_pairs=0.5))
    assert "a mix of pairs of its own completions and pairs that compare one completion" in mixed
    assert "correct answer" not in mixed

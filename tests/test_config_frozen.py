"""The run config is frozen: nothing changes it after construction; a changed config is a new, checked one.

The sites that used to assign to a config (imdb's task defaults, the run directory of `discovery run` and
`discovery.run`, `discovery tasks`' task name, a worker's absolute paths, `--resume` with overrides) now
derive a new config; these tests check that they resolve to the same values as before and leave the
original untouched. Fast: no training, no model.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import yaml

from discovery import config as config_module
from discovery.commands.common import config_from_args
from discovery.commands.run import SHORTCUTS
from discovery.config import FrozenDict, RunConfig, from_dict, load_config, with_values
from discovery.errors import ConfigError

SECTIONS = ("task", "proposer", "sandbox", "train", "eval", "executor", "budget")


def rich_config() -> RunConfig:
    return load_config(None, ["task.options={scorer: heldout, nested: {k: [1, 2]}}", "eval.betas=[0.05, 0.1]",
                              "proposer.prices={m: [1.0, 2.0]}", "report_to=[tensorboard]"])


def test_every_section_and_the_run_config_refuse_assignment():
    config = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.run_dir = "elsewhere"
    for name in SECTIONS:
        section = getattr(config, name)
        field = dataclasses.fields(section)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, field, getattr(section, field))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.eval.judge.base_url = "http://x"
    classes = [obj for obj in vars(config_module).values() if isinstance(obj, type)
               and dataclasses.is_dataclass(obj) and obj.__module__ == config_module.__name__]
    assert len(classes) >= 10 and all(c.__dataclass_params__.frozen for c in classes)


def test_lists_are_tuples_and_mappings_are_read_only():
    config = rich_config()
    assert config.eval.betas == (0.05, 0.1) and config.report_to == ("tensorboard",)
    assert config.eval.baselines == ("dpo", "slic", "ipo", "lrml")
    options = config.task.options
    assert isinstance(options, FrozenDict) and options["nested"]["k"] == (1, 2)
    for mutate in (lambda: options.__setitem__("scorer", "mtbench"), lambda: options.update(a=1),
                   lambda: options.pop("scorer"), lambda: options["nested"].setdefault("x", 1),
                   lambda: config.proposer.prices.clear(), lambda: options.__delitem__("scorer")):
        with pytest.raises(TypeError, match="read-only"):
            mutate()
    with pytest.raises(AttributeError):
        config.eval.betas.append(0.5)
    assert config.task.options["scorer"] == "heldout" and len(config.proposer.prices) == 1
    # built directly (not from a dict), the containers are frozen too
    direct = RunConfig(task=config_module.TaskConfig(options={"a": [1]}))
    assert direct.task.options == {"a": (1,)} and isinstance(direct.task.options, FrozenDict)


def test_frozen_configs_serialise_as_plain_data_and_round_trip():
    config = rich_config()
    data = config.to_dict()
    assert type(data["task"]["options"]) is dict and type(data["task"]["options"]["nested"]["k"]) is list
    assert type(data["eval"]["betas"]) is list
    assert yaml.safe_load(config_module.to_yaml(config)) == data  # safe YAML: plain types only
    assert from_dict(json.loads(json.dumps(data))) == config  # the archive's stored config reads back equal
    assert pickle.loads(pickle.dumps(config)) == config and copy.deepcopy(config) == config  # executors, Ray
    assert hash(config) == hash(from_dict(data))
    # the JSON of a frozen mapping is the JSON of the dict: task cache keys do not move
    assert json.dumps(config.task.options, sort_keys=True) == json.dumps(data["task"]["options"], sort_keys=True)


def test_with_values_derives_a_new_checked_config():
    base = RunConfig()
    derived = with_values(base, {"task.name": "imdb", "eval.betas": [0.1, 0.5], "eval.judge.model": "j"})
    assert (derived.task.name, derived.eval.betas, derived.eval.judge.model) == ("imdb", (0.1, 0.5), "j")
    assert base == RunConfig() and base.task.name == "synthetic"
    with pytest.raises(ConfigError, match=r"unknown config key 'task.nmae'; did you mean 'task.name'\?"):
        with_values(base, {"task.nmae": "imdb"})
    with pytest.raises(ConfigError, match="executor.name must be one of local, ray"):
        with_values(base, {"executor.name": "slurm"})


def _args(tmp_path: Path, **flags) -> argparse.Namespace:
    defaults = {dest: None for dest in SHORTCUTS} | {"config": None, "overrides": []}
    return argparse.Namespace(**(defaults | flags))


def test_resume_overrides_go_through_the_one_override_path(tmp_path):
    stored = load_config(None, ["train.beta=0.3", "train.learning_rate=1e-4", "budget.proposals=5", "seed=7"])
    path = tmp_path / "more.yaml"
    path.write_text("train:\n  max_steps: 9\nbudget:\n  proposals: 6\n")
    args = _args(tmp_path, config=str(path), proposals=8, overrides=["train.beta=0.2"])
    config = config_from_args(args, SHORTCUTS, base=stored)
    # stored values survive unless overridden; the file merges into sections; flags then --set win
    assert (config.train.beta, config.train.learning_rate, config.train.max_steps) == (0.2, 1e-4, 9)
    assert config.budget.proposals == 8 and config.seed == 7
    assert stored.train.beta == 0.3 and stored.budget.proposals == 5  # the stored config is unchanged
    with pytest.raises(ConfigError, match="did you mean 'train.beta'"):
        config_from_args(_args(tmp_path, overrides=["train.betaa=1"]), SHORTCUTS, base=stored)
    # without a base it is load_config: the defaults, the file, the flags, --set
    fresh = config_from_args(args, SHORTCUTS)
    assert (fresh.train.beta, fresh.train.max_steps, fresh.budget.proposals) == (0.2, 9, 8)
    assert fresh.train.learning_rate == RunConfig().train.learning_rate


def test_a_new_run_gets_its_directory_in_a_new_config(tmp_path):
    from discovery.commands.run import resolve

    args = _args(tmp_path, run_dir=str(tmp_path / "r"), resume=None)
    config, run_dir, resuming = resolve(args)
    assert config.run_dir == str(tmp_path / "r") and run_dir == tmp_path / "r" and not resuming


def test_imdb_task_defaults_are_applied_without_changing_the_callers_config():
    from discovery.inner_loop.imdb import ImdbTask

    config = load_config(None, ["task.name=imdb", "task.dataset=/data/pairs", "task.options={kl_budget: 1.5}"])
    task = ImdbTask(config)
    assert task.config.task.model == "lvwerra/gpt2-imdb"  # the default policy, as before
    assert dict(task.config.task.options) == {"kl_budget": 1.5, "scorer": "heldout"}  # the held-out scorer
    assert task.scorer == "heldout" and task.opts["kl_budget"] == 1.5
    assert config.task.model is None and dict(config.task.options) == {"kl_budget": 1.5}  # untouched
    chosen = ImdbTask(with_values(config, {"task.model": "my/policy", "task.options.scorer": "mtbench"}))
    assert chosen.config.task.model == "my/policy" and chosen.config.task.options["scorer"] == "heldout"
    # what `discovery run` stores and sends to its workers is the task's config: it resolves to itself
    assert ImdbTask.resolved(task.config) == task.config


def test_worker_paths_are_made_absolute_in_a_new_config(tmp_path, monkeypatch):
    from discovery.executors.paths import for_worker

    monkeypatch.chdir(tmp_path)
    config = load_config(None, ["task.cache_dir=rel/cache", "task.options={mtbench_dir: mt, other: x}"])
    worker = for_worker(config)
    assert worker.task.cache_dir == str(tmp_path / "rel" / "cache")
    assert worker.task.options == {"mtbench_dir": str(tmp_path / "mt"), "other": "x"}
    assert config.task.cache_dir == "rel/cache" and config.task.options["mtbench_dir"] == "mt"

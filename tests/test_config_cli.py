"""The typed config and the CLI's handling of bad input: one line, exit code 2, no traceback."""

import json

import pytest
from conftest import run_cli

from discovery.config import RunConfig, load_config
from discovery.errors import ConfigError


def test_defaults_need_no_file():
    config = load_config()
    assert isinstance(config, RunConfig)
    assert config.task.name == "synthetic" and config.proposer.backend == "llamacpp"
    # the defaults the README promises: ~15 min synthetic run, up to 9 seeds raced (rungs of 3) at each of 3 betas
    # (scored at the best), re-evaluated on 5 fresh ones (bench/fitness_defaults.py)
    assert config.budget.wall_time == 900.0 and config.budget.proposals == 20
    assert (config.eval.seeds, config.eval.reeval_seeds, config.eval.screen) == (9, 5, True)
    assert config.eval.betas == (0.05, 0.1, 0.2) and config.eval.fitness == "best_beta"
    assert (config.eval.racing, config.eval.racing_first_seeds) == ("paired_t", 3)
    assert config.eval.baselines == ("dpo", "slic", "ipo", "lrml") and config.executor.name == "local"
    assert config.train.beta == 0.1 and config.run_dir is None
    assert load_config(None, []).to_dict() == RunConfig().to_dict()  # no file and no override: the defaults


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  beta: 0.05\n  learning_rate: 5.0e-7\neval:\n  betas: [0.01, 0.1]\n")
    config = load_config(path, ["train.beta=0.2", "proposer.model=my-model", "eval.judge.model=gpt-4o"])
    assert config.train.beta == 0.2
    assert config.train.learning_rate == 5e-7
    assert config.eval.betas == (0.01, 0.1)
    assert config.proposer.model == "my-model"
    assert config.eval.judge.model == "gpt-4o"
    assert config.train.max_length == RunConfig().train.max_length  # untouched defaults survive


def test_exponent_without_dot_is_a_number(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  learning_rate: 5e-7\n")
    assert load_config(path, ["train.beta=5e-2"]).train.learning_rate == 5e-7
    assert load_config(None, ["train.beta=5e-2"]).train.beta == 0.05


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.betaa=1", "unknown config key 'train.betaa'; did you mean 'train.beta'?"),
        ("trian.beta=1", "did you mean 'train'?"),
        ("train.beta=abc", "train.beta: expected a number"),
        ("train.max_steps=1.5", "train.max_steps: expected an integer"),
        ("eval.screen=maybe", "eval.screen: expected true or false"),
        ("train=3", "train: expected a mapping"),
        ("nokeyvalue", "--set expects KEY=VALUE"),
    ],
)
def test_bad_overrides_raise_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("(", r"\(")):
        load_config(None, [override])


def test_cli_config_show_resolves_everything(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("budget:\n  proposals: 7\n")
    out = run_cli("config", "show", "--config", str(path), "--set", "train.beta=0.3", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["budget"]["proposals"] == 7 and data["train"]["beta"] == 0.3
    assert data["proposer"]["backend"] == "llamacpp"


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        (None, ["--set", "train.betaa=1"], "did you mean 'train.beta'?"),
        (None, ["--set", "train.beta=abc"], "expected a number"),
        (None, ["--config", "/nonexistent/run.yaml"], "config file not found"),
        ("train:\n  beta: [1\n", [], "invalid YAML"),
        ("train:\n  beta: 0.1\n   bad: indent\n", [], "line 3"),
        ("- just\n- a list\n", [], "top level must be a mapping"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, content, args, needle):
    if content is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(content)
        args = ["--config", str(path), *args]
    out = run_cli("config", "show", *args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("discovery: error:"), out.stderr
    assert needle in lines[0]


def test_version_and_help():
    from discovery import __version__

    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    out = run_cli("--help")
    assert out.returncode == 0 and "losses" in out.stdout and "config" in out.stdout


def test_losses_command_lists_every_entry():
    from discovery import library

    table = run_cli("losses")
    assert table.returncode == 0
    for name in library.names():
        assert name in table.stdout
    data = json.loads(run_cli("losses", "--json").stdout)
    assert [row["name"] for row in data] == library.names()
    assert all({"name", "formula", "code", "citation"} <= set(row) for row in data)


@pytest.mark.parametrize("override, message", [
    ("executor.name=rayy", "executor.name must be one of local, ray, got 'rayy'; did you mean 'ray'?"),
    ("proposer.backend=openia", "proposer.backend must be one of llamacpp, openai, replay, symbolic, got 'openia'; "
                                "did you mean 'openai'?"),
    ("train.truncation_mode=keep_middle", "train.truncation_mode must be one of keep_end, keep_start"),
    ("eval.paired_test=wilcoxon", "eval.paired_test must be one of t, permutation"),
    ("budget.proposals=0", "budget.proposals must be at least 1, got 0"),
    ("eval.reeval_seeds=-1", "eval.reeval_seeds must be at least 0, got -1"),
    ("eval.promote_fraction=1.5", "eval.promote_fraction must be in (0, 1], got 1.5"),
])
def test_choices_and_ranges_are_checked_once_at_construction(override, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value).startswith(message)
    path = tmp_path / "bad.yaml"  # the same check from a file and from a stored run's dict
    section, key = override.split("=")[0].split(".")
    path.write_text(f"{section}:\n  {key}: {override.split('=')[1]}\n")
    with pytest.raises(ConfigError, match=message.split(",")[0].replace("(", r"\(")):
        load_config(path)
    out = run_cli("config", "show", "--set", override)
    assert out.returncode == 2 and out.stderr.strip().startswith("discovery: error: " + message[:30])

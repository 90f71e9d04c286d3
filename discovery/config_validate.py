"""Checking a config: keys and types while it is built from plain data, then the one pass over ranges.

`build_dataclass` builds a config section from plain data (YAML, overrides, a stored run): an unknown key
raises `ConfigError` with the nearest valid key ("did you mean 'train.beta'?"), a wrong type names the key,
a `Literal` choice the nearest choice. `validate` is the one pass over what types cannot say (ranges and
combinations), run once by `discovery.config.from_dict`. Both are re-exported by `discovery.config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from discovery.errors import ConfigError

if TYPE_CHECKING:
    from discovery.config import ProposerConfig, RunConfig


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _nearest(key: str, options, where: str) -> str:
    prefix = f"{where}." if where else ""
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    if match:
        return f"; did you mean '{prefix}{match[0]}'?"
    return f"; valid keys{' of ' + where if where else ''}: {', '.join(sorted(options))}"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert) `value` to the annotated type `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(value).__name__} {value!r}")
        return build_dataclass(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        item = (typing.get_args(tp) or (Any,))[0]
        return origin(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        match = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
        hint = f"; did you mean '{match[0]}'?" if match else ""
        raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}{hint}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-7" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
    return value


def build_dataclass(cls, data: dict[str, Any], where: str = ""):
    """Build config dataclass `cls` from plain data: unknown keys (with the nearest valid one) and wrong types
    raise ConfigError naming `where`."""
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in types_:
            raise ConfigError(f"unknown config key '{path}'{_nearest(str(key), types_, where)}")
        kwargs[key] = _coerce(value, types_[key], path)
    return cls(**kwargs)


def _check_search(p: ProposerConfig) -> None:
    """proposer.selection / tune_constants / models (docs/proposers.md#the-search)."""
    for key, value, low in (("islands", p.islands, 1), ("migrate_every", p.migrate_every, 0),
                            ("tune_constants", p.tune_constants, 0)):
        if value < low:
            raise ConfigError(f"proposer.{key} must be at least {low}, got {value}")
    llm = p.backend in ("llamacpp", "openai")
    if (p.models or p.tune_constants) and not llm:
        what = "proposer.models" if p.models else "proposer.tune_constants"
        raise ConfigError(f"{what} needs an LLM backend (llamacpp or openai), got proposer.backend={p.backend}")
    names = [m.model for m in p.models]
    for i, m in enumerate(p.models):
        if not m.model.strip() or names.index(m.model) != i:
            raise ConfigError(f"proposer.models[{i}].model must be a name no other model of the list has, "
                              f"got {m.model!r}")
        if m.prices and (len(m.prices) != 2 or min(m.prices) < 0):
            raise ConfigError(f"proposer.models[{i}].prices must be [prompt, completion] usd per 1M tokens, "
                              f"got {list(m.prices)}")
        if m.temperature is not None and m.temperature < 0:
            raise ConfigError(f"proposer.models[{i}].temperature must be at least 0, got {m.temperature}")


def validate(config: RunConfig) -> RunConfig:
    """The one pass over what types cannot say (ranges), run once at construction; one clear line on error.

    Choices are `Literal` fields, checked (with the nearest choice) while building; checks that need other
    modules (library names, GPUs, trackers) stay where those live.
    """
    for key, value in (("budget.proposals", config.budget.proposals), ("eval.seeds", config.eval.seeds),
                       ("eval.screen_seeds", config.eval.screen_seeds)):
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    for key, value in (("eval.reeval_seeds", config.eval.reeval_seeds),
                       ("proposer.max_fix_attempts", config.proposer.max_fix_attempts)):
        if value < 0:
            raise ConfigError(f"{key} must be at least 0, got {value}")
    if not 0 < config.eval.promote_fraction <= 1:
        raise ConfigError(f"eval.promote_fraction must be in (0, 1], got {config.eval.promote_fraction}")
    _check_search(config.proposer)
    if config.eval.racing_first_seeds < 2:
        raise ConfigError(f"eval.racing_first_seeds must be at least 2 (a paired test), got "
                          f"{config.eval.racing_first_seeds}")
    own = config.task.options.get("seed", 0)
    if own in config.eval.heldout_instances:
        raise ConfigError(f"eval.heldout_instances {list(config.eval.heldout_instances)} must not hold the run's "
                          f"own task instance (task.options.seed = {own})")
    return config

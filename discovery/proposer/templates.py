"""Jinja2 prompt templates, shipped inside the wheel as `discovery/prompts/` (from the top-level `prompts/`)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2


def template_dir() -> Path:
    """The installed `discovery/prompts` folder, or the checkout's top-level `prompts/` in development."""
    installed = resources.files("discovery") / "prompts"
    if installed.is_dir():
        return Path(str(installed))
    checkout = Path(__file__).resolve().parents[2] / "prompts"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("prompt templates not found: reinstall objective-discovery")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **context) -> str:
    """Render `prompts/<name>.j2` with the given context."""
    return environment().get_template(f"{name}.j2").render(**context)


def names() -> list[str]:
    return sorted(p.name[:-3] for p in template_dir().iterdir() if p.name.endswith(".j2"))

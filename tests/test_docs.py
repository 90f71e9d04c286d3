"""The README front page and docs/: links resolve, the front page stays short, commands it names exist."""

from __future__ import annotations

import argparse
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from discovery.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_BYTES = 10_240

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
COMMAND = re.compile(r"(?:^|[\s`(])discovery ((?:[a-z][\w-]*)(?: [a-z][\w-]*)*)", re.M)


def prose(text: str) -> str:
    """The text outside fenced and inline code (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def code(text: str) -> str:
    """Fenced blocks and inline code spans: where commands are written."""
    return "\n".join(FENCE.findall(text) + INLINE_CODE.findall(FENCE.sub("", text)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{2,}|`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"[a-z][a-z+.-]*:", t)]


def test_pages_found():
    assert README.is_file()
    assert len(PAGES) > 5, "docs/*.md missing"


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return broken


def test_link_checker_catches_broken_links(tmp_path: Path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Task `imdb`\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#task-imdb) [gone](missing.md) [bad anchor](other.md#nope)\n"
                    "![img](pic.png) [web](https://example.org/x) `[not a link](nowhere.md)`\n")
    assert broken_links(page) == ["missing.md: no such file", "other.md#nope: no heading with anchor #nope in other.md",
                                  "pic.png: no such file"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    assert not (broken := broken_links(page)), f"{page.name}: broken links:\n" + "\n".join(broken)


def test_readme_links_every_docs_page():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md does not link these docs pages: {missing}"


def test_readme_is_a_front_page():
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move detail into docs/ (limit {MAX_README_BYTES})"
    assert 'python -m pytest -q -m "not slow"' in README.read_text(), "the README's test command is gone"


@functools.cache
def top_level_commands() -> frozenset[str]:
    out = subprocess.run([sys.executable, "-m", "discovery.cli", "--help"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return frozenset(re.findall(r"^ {4}([a-z][\w-]*)\b", out, re.M))


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def unknown_commands(text: str, top: frozenset[str]) -> list[str]:
    bad = []
    for words in COMMAND.findall(code(text)):
        first, *rest = words.split()
        if first not in top:
            bad.append(f"discovery {first}")
            continue
        parser = subparsers(build_parser())[first]
        for word in rest:  # nested actions, e.g. `discovery archive list`
            choices = subparsers(parser)
            if not choices:
                break
            if word not in choices:
                bad.append(f"discovery {first} {word}")
                break
            parser = choices[word]
    return bad


def test_command_finder_catches_a_wrong_command():
    top = top_level_commands()
    assert {"run", "archive", "export"} <= top
    assert sorted(unknown_commands("`discovery frobnicate X`\n```\ndiscovery archive lst RUN\n```", top)) == [
        "discovery archive lst", "discovery frobnicate"]
    assert unknown_commands("the discovery loop, `discovery run --quiet`", top) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_named_exist(page: Path):
    assert not (bad := unknown_commands(page.read_text(), top_level_commands())), (
        f"{page.name} names commands that `discovery --help` does not list: {bad}")

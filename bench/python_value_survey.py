"""Which known losses does the static policy refuse for a tensor steering Python (rules python-value, repeat)?

    python bench/python_value_survey.py [--archive RUN_DIR ...] [--json FILE ...]

Runs the reference library, bench/losses/*.py, the winners recorded in bench/results/*/experiment.json,
every candidate of the archives under bench/results/*/runs/*/ (and of each --archive run dir, read through
`discovery.archive`), and every record with a `code` field in each --json file through
`discovery.sandbox.static.check_source`, and prints one line per python-value / repeat refusal (source,
name, line, the line's text) and the counts. Nothing runs: the static policy only parses.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from discovery import library  # noqa: E402
from discovery.archive import Archive, db_path  # noqa: E402
from discovery.sandbox.static import check_source  # noqa: E402

RULES = ("python-value", "repeat")


def _records_with_code(data):
    if isinstance(data, dict):
        if isinstance(data.get("code"), str):
            yield data
        for value in data.values():
            yield from _records_with_code(value)
    elif isinstance(data, list):
        for value in data:
            yield from _records_with_code(value)


def sources(archives: list[Path], jsons: list[Path]):
    """(source, name, code) for every known loss."""
    for name in library.names():
        yield "library", name, library.get(name).code
    for path in sorted((REPO / "bench" / "losses").glob("*.py")):
        yield "bench/losses", path.stem, path.read_text()
    for path in sorted((REPO / "bench" / "results").glob("*/experiment.json")) + jsons:
        for record in _records_with_code(json.loads(path.read_text())):
            yield str(path), record.get("name", "?"), record["code"]
    for run in sorted(p.parent for p in (REPO / "bench" / "results").glob("*/runs/*/archive.sqlite")) + archives:
        if not db_path(run).exists():
            continue
        with Archive.open(run, readonly=True) as archive:
            for candidate in archive.candidates():
                yield str(run), candidate.name, candidate.code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, nargs="*", default=[], help="more run dirs")
    parser.add_argument("--json", type=Path, nargs="*", default=[], help="JSON files with `code` records")
    args = parser.parse_args()
    seen, counts = set(), Counter()
    for source, name, code in sources(args.archive, args.json):
        if code in seen:
            continue
        seen.add(code)
        counts["distinct losses"] += 1
        found = [v for v in check_source(code) if v.rule in RULES]
        counts["refused python-value/repeat"] += bool(found)
        lines = code.splitlines()
        for violation in found:
            text = lines[violation.line - 1].strip() if violation.line and violation.line <= len(lines) else ""
            print(f"{source} {name} line {violation.line} [{violation.rule}] {text!r}")
    print(dict(counts))


if __name__ == "__main__":
    main()

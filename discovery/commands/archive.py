"""`discovery archive list|show|diff|export-jsonl RUN_DIR`: read-only views of a run's archive."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from discovery.archive import Archive
from discovery.candidate import Status
from discovery.errors import DiscoveryError
from discovery.inspect.diff import diff_document, render_diff
from discovery.inspect.show import detail_document, dumps, list_table, render_detail
from discovery.inspect.views import candidate_rows, sort_rows


def register(subparsers) -> None:
    p = subparsers.add_parser("archive", help="inspect a run's archive (works on live and older runs)")
    sub = p.add_subparsers(dest="archive_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="one line per candidate: fitness ± CI, KL, held-out accuracy, cost")
    ls.add_argument("run_dir", metavar="RUN_DIR")
    ls.add_argument("--sort", choices=["fitness", "time"], default="fitness",
                    help="fitness: best lower confidence bound first (default); time: proposal order")
    ls.add_argument("--status", choices=[str(s) for s in Status], help="only candidates with this status")
    ls.add_argument("--limit", type=int, metavar="N", help="at most N rows")
    ls.add_argument("--json", action="store_true", help="the rows as a JSON list")
    ls.set_defaults(func=list_command)

    show = sub.add_parser("show", help="everything about one candidate")
    show.add_argument("run_dir", metavar="RUN_DIR")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true", help="as one JSON document")
    show.set_defaults(func=show_command)

    diff = sub.add_parser("diff", help="code diff and metric deltas of two candidates")
    diff.add_argument("run_dir", metavar="RUN_DIR")
    diff.add_argument("a", type=int, metavar="A")
    diff.add_argument("b", type=int, metavar="B")
    diff.add_argument("--json", action="store_true", help="as one JSON document")
    diff.set_defaults(func=diff_command)

    jsonl = sub.add_parser("export-jsonl", help="one JSON line per candidate (for pandas.read_json(lines=True))")
    jsonl.add_argument("run_dir", metavar="RUN_DIR")
    jsonl.add_argument("-o", "--output", required=True, metavar="FILE", help="output file ('-' = stdout)")
    jsonl.set_defaults(func=jsonl_command)


def open_archive(run_dir: str) -> Archive:
    """Read-only: never takes the run lock, never writes (an older schema is upgraded in memory)."""
    return Archive.open(run_dir, readonly=True)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def list_command(args) -> int:
    if args.limit is not None and args.limit < 0:
        raise DiscoveryError("--limit must be >= 0")
    with open_archive(args.run_dir) as archive:
        rows = [r for r in candidate_rows(archive) if args.status is None or r.status == args.status]
        usage, per_model = archive.usage(), archive.usage_by_model()
        needs_reeval = archive.needs_reeval()
    rows = sort_rows(rows, args.sort, needs_reeval)[: args.limit]
    if args.json:
        print(dumps([r.to_dict() for r in rows]))
        return 0
    title = (f"{args.run_dir}: {len(rows)} candidates, sorted by "
             f"{'rank (confirmed first, then lower confidence bound)' if args.sort == 'fitness' else 'proposal order'}; "
             f"LLM {usage.calls} calls, {usage.tokens} tokens, ${usage.cost_usd:.4f}")
    if len(per_model) > 1:
        title += "; per model: " + ", ".join(f"{m} {u.calls} calls, {u.tokens} tokens, ${u.cost_usd:.4f}"
                                             for m, u in per_model.items())
    _console().print(list_table(rows, title))
    return 0


def show_command(args) -> int:
    with open_archive(args.run_dir) as archive:
        doc = detail_document(archive, archive.detail(args.id))
    if args.json:
        print(dumps(doc))
    else:
        render_detail(doc, _console())
    return 0


def diff_command(args) -> int:
    with open_archive(args.run_dir) as archive:
        doc = diff_document(archive, args.a, args.b)
    if args.json:
        print(dumps(doc))
    else:
        render_diff(doc, _console())
    return 0


def jsonl_command(args) -> int:
    with open_archive(args.run_dir) as archive:
        lines = [dumps(r.to_dict(), indent=None) for r in candidate_rows(archive)]
    text = "".join(line + "\n" for line in lines)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as exc:
        raise DiscoveryError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {len(lines)} candidates to {out}", file=sys.stderr)
    return 0

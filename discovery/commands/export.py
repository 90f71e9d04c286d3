"""`discovery export RUN_DIR [ID | --best] -o my_loss.py [--format module|json]`: the winner, ready for TRL."""

from __future__ import annotations

import sys
from pathlib import Path

from discovery.errors import DiscoveryError


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a discovered loss as a standalone module for TRL (or JSON)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?", metavar="ID", help="the candidate to export")
    which.add_argument("--best", action="store_true",
                       help="the best proposal by lower 95%% confidence bound after re-evaluation")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write (default: ./<loss name>_loss.py, or .json with --format json)")
    p.add_argument("--format", choices=["module", "json"], default="module",
                   help="module: standalone Python file with a TRL adapter and a self-test; json: metadata")
    p.set_defaults(func=run)


def run(args) -> int:
    from discovery.export.build import export_candidate

    out = Path(args.output) if args.output else None
    name = out.stem if out is not None and out.stem.isidentifier() else None
    result = export_candidate(args.run_dir, candidate_id=args.id, best=args.best, fmt=args.format, module_name=name)
    if out is None:
        out = Path(result.metadata["function"] + (".json" if args.format == "json" else ".py"))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.text, encoding="utf-8")
    except OSError as exc:
        raise DiscoveryError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(result.message, file=sys.stderr)
    print(f"wrote {out}" + (f"; check it with: python {out}" if args.format == "module" else ""), file=sys.stderr)
    return 0

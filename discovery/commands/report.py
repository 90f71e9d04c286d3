"""`discovery report RUN_DIR [-o report.html]`: one self-contained HTML file with plots and tables."""

from __future__ import annotations

import sys
from pathlib import Path

from discovery.errors import DiscoveryError


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write a self-contained HTML report of a run (plots inline)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: RUN_DIR/report.html)")
    p.add_argument("--curves", type=int, default=3, metavar="K",
                   help="loss curves of the best K proposals next to DPO (computed in the sandbox; 0 = none)")
    p.set_defaults(func=run)


def run(args) -> int:
    from discovery.inspect.report import build_report

    if args.curves < 0:
        raise DiscoveryError("--curves must be >= 0")
    out = Path(args.output) if args.output else Path(args.run_dir) / "report.html"
    html = build_report(args.run_dir, curves=args.curves)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise DiscoveryError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out} ({len(html) // 1024} KiB)", file=sys.stderr)
    return 0

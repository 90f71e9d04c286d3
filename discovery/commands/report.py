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
    p.add_argument("--watch", action="store_true",
                   help="serve a live view on 127.0.0.1 that refreshes while the run goes (Ctrl-C to stop)")
    p.add_argument("--port", type=int, default=0, metavar="N", help="--watch: the port (default: any free one)")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="--watch: seconds between refreshes")
    p.set_defaults(func=run)


def run(args) -> int:
    from discovery.inspect.report import build_report

    if args.curves < 0:
        raise DiscoveryError("--curves must be >= 0")
    if args.watch:
        return watch(args)
    out = Path(args.output) if args.output else Path(args.run_dir) / "report.html"
    html = build_report(args.run_dir, curves=args.curves)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise DiscoveryError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out} ({len(html) // 1024} KiB)", file=sys.stderr)
    return 0


def watch(args) -> int:
    from discovery.inspect.live import make_server, read_state

    if args.interval <= 0 or not 0 <= args.port <= 65535:
        raise DiscoveryError("--interval must be > 0 and --port in 0..65535")
    read_state(args.run_dir)  # a missing, corrupt or newer-schema archive: one line, before serving
    try:
        server = make_server(args.run_dir, args.port, args.interval)
    except OSError as exc:
        raise DiscoveryError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    print(f"live view of {args.run_dir}: http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

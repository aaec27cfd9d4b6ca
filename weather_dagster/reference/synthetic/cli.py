"""``weather-dagster synthetic serve``: build the offline reference tree and serve it on loopback."""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from weather_dagster.core.interrupts import interrupted_by_signals


def _serve(args: argparse.Namespace) -> int:
    from weather_dagster.reference.grid import Grid
    from weather_dagster.reference.synthetic.server import SyntheticHttpServer
    from weather_dagster.reference.synthetic.tree import build_tree

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="weather-synthetic-"))
    start = datetime.strptime(args.start, "%Y-%m-%d").replace(tzinfo=UTC)
    tree = build_tree(root, Grid(args.grid), start, args.days, analysis_days=args.analysis_days)
    server = SyntheticHttpServer(root, args.host, args.port).start()
    try:
        with interrupted_by_signals():
            print(f"serving {root} at {server.base_url}", flush=True)
            for name, value in tree.urls(server.base_url).items():
                print(f"WEATHER_REFERENCE__{name.upper()}={value}", flush=True)
            if args.seconds:
                time.sleep(args.seconds)
            else:
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def add_synthetic_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("synthetic", help="offline reference data (synthetic GFS, ERA5, climatology)")
    actions = parser.add_subparsers(dest="action", required=True)
    serve = actions.add_parser("serve", help="write the synthetic files and serve them over HTTP on loopback")
    serve.add_argument("--dir", help="where to write the files (default: a new temp dir)")
    serve.add_argument("--grid", type=float, default=1.5, help="grid resolution in degrees (0.25 = production)")
    serve.add_argument("--start", default="2025-06-01", help="first date (00Z) of the data, YYYY-MM-DD")
    serve.add_argument("--days", type=int, default=10, help="days of ERA5 truth after the start")
    serve.add_argument("--analysis-days", type=int, default=2, help="days of GFS analyses and forecasts")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)")
    serve.set_defaults(handler=_serve)

"""``weather-dagster ui`` / ``make ui``: the Dagster UI on the demo's instance and database, on loopback.

The environment comes from what the demo recorded (``<out>/weather.env`` and ``<out>/dagster_home``),
so nothing is copied by hand. A finished demo gets ``dagster dev`` (webserver and daemon, so jobs
launched from the UI, e.g. the operator jobs, are dequeued and run) with the sensors and the round
schedule in dry-run mode: they only say what they would do, and never open a new round against the
demo's stopped servers. A running demo already has its daemon, so only the webserver is added.
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

import httpx

from weather_dagster.demo import REPO, Processes, _bin
from weather_dagster.operator.demo_env import OperatorInputError, demo_paths, demo_process_env, demo_running

HOST = "127.0.0.1"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def ui_command(demo_dir: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment that serve the demo's instance (also used by the screenshot script)."""
    demo_paths(demo_dir)  # a message naming `make demo` when there is no demo yet
    env = demo_process_env(demo_dir)
    workspace = str(REPO / "workspace.yaml")
    if demo_running(Path(demo_dir)) is not None:
        return [_bin("dagster-webserver"), "-h", HOST, "-p", str(port), "-w", workspace], env
    env["WEATHER_ROUND__SENSOR_DRY_RUN"] = "true"
    return [_bin("dagster"), "dev", "-h", HOST, "-p", str(port), "-w", workspace], env


def run_ui(args: argparse.Namespace) -> int:
    demo_dir = Path(args.demo).resolve()
    if not _port_free(args.port):
        raise OperatorInputError(
            f"port {args.port} on {HOST} is in use (another UI?): stop it, or use `make ui UI_PORT=3001` "
            "/ `weather-dagster ui --port 3001`"
        )
    cmd, env = ui_command(demo_dir, args.port)
    log = demo_dir / "ui.log"
    procs = Processes()
    try:
        proc = procs.start("ui", cmd, env, log)
        url = f"http://{HOST}:{args.port}"
        deadline = time.monotonic() + args.start_timeout
        while not _answers(f"{url}/server_info"):
            if proc.poll() is not None:
                tail = log.read_text()[-2000:]
                raise OperatorInputError(f"the Dagster UI exited ({proc.returncode}); its log {log} ends:\n{tail}")
            if time.monotonic() > deadline:
                raise OperatorInputError(f"the Dagster UI did not answer within {args.start_timeout:.0f} s; see {log}")
            time.sleep(0.5)
        print(f"Dagster UI on the demo's instance: {url}  (log: {log}; Ctrl-C stops it)", flush=True)
        print(f"  round's miners:  {url}/assets/miner_forecast  |  scores: {url}/assets/subnet_snapshot", flush=True)
        if args.once:
            return 0
        proc.wait()
        return 0 if proc.returncode in (0, None) else 1
    except KeyboardInterrupt:
        print("\nstopping the Dagster UI ...", flush=True)
        return 0
    finally:
        procs.stop_all()


def add_ui_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ui", help="the Dagster UI on the demo's instance and database (127.0.0.1)")
    parser.add_argument("--demo", default="out/demo", help="the demo's out dir (make demo: out/demo)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--start-timeout", type=float, default=180, help="seconds to wait for it to answer")
    parser.add_argument("--once", action="store_true", help="stop as soon as it answers (a start-up check)")
    parser.set_defaults(handler=run_ui)

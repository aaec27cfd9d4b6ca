"""``weather-dagster miners serve --count N``: the demo fleet in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet, FleetConfig
from weather_dagster.miners.keys import derived_seed, keypair_from_seed, write_wallet_file
from weather_dagster.settings import load_settings


def _behaviours(pairs: list[str]) -> dict[int, Behaviour]:
    result = {}
    for pair in pairs:
        uid, _, name = pair.partition("=")
        result[int(uid)] = Behaviour(name)
    return result


async def _serve(fleet: DemoFleet, on_ready) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(fleet.serve())
    while not fleet._ready.is_set():
        await asyncio.sleep(0.05)
    on_ready()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, fleet._stop.set)
    await task


def serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    demo_dir = settings.data_dir / "demo"
    config = FleetConfig(
        count=args.count,
        grid_deg=args.grid_deg or settings.miners.demo_grid_deg,
        steps=settings.miners.forecast_steps,
        step_hours=settings.miners.forecast_step_hours,
        behaviours=_behaviours(args.behaviour),
        default_skill=args.skill,
        skills={uid: args.skill - args.skill_spread * uid / max(args.count - 1, 1) for uid in range(args.count)},
        base_port=args.base_port if args.base_port is not None else settings.miners.demo_base_port,
    )
    fleet = DemoFleet(config)
    metagraph = args.metagraph or demo_dir / "metagraph.json"
    seed = derived_seed("demo", "validator")
    wallet = demo_dir / "validator_hotkey.json"
    write_wallet_file(wallet, keypair_from_seed(seed), seed)

    def ready() -> None:
        fleet.write_metagraph(metagraph)
        print(f"serving {args.count} demo miners on 127.0.0.1 (ports {fleet.miners[0].port}..)", flush=True)
        print(f"metagraph: {metagraph}")
        print("point the validator at them with:")
        print(f"  export WEATHER_MINERS__METAGRAPH_FILE={metagraph.resolve()}")
        print(f"  export WEATHER_MINERS__HOTKEY_FILE={wallet.resolve()}")
        print("  export WEATHER_MINERS__ALLOW_PRIVATE_HOSTS='[\"127.0.0.1\"]'", flush=True)

    asyncio.run(_serve(fleet, ready))
    print(f"fleet_requests: {fleet.requests}")
    print(f"fleet_max_in_flight: {fleet.max_in_flight}", flush=True)
    return 0


def add_miners_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("miners", help="demo miner fleet")
    actions = parser.add_subparsers(dest="miners_action", required=True)
    serve_parser = actions.add_parser("serve", help="serve N demo miners on loopback ports until Ctrl-C")
    serve_parser.add_argument("--count", type=int, default=8)
    serve_parser.add_argument("--grid-deg", type=float, default=None, help="forecast grid (default: setting)")
    serve_parser.add_argument("--base-port", type=int, default=None, help="first port (default: ephemeral)")
    serve_parser.add_argument("--skill", type=float, default=0.8, help="0..1, higher = smaller error")
    serve_parser.add_argument(
        "--skill-spread", type=float, default=0.0, help="skills fall linearly from --skill by this much over the uids"
    )
    serve_parser.add_argument(
        "--behaviour",
        action="append",
        default=[],
        metavar="UID=NAME",
        help="misbehaviour per uid: " + ", ".join(b.value for b in Behaviour),
    )
    serve_parser.add_argument("--metagraph", type=Path, default=None, help="where to write the metagraph JSON")
    serve_parser.set_defaults(handler=serve)

"""The ``weather-dagster`` command line. Subcommands register themselves in ``COMMANDS``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from weather_dagster.settings import SettingsError, load_settings


def _db(args: argparse.Namespace) -> int:
    from weather_dagster.db.engine import current_revision, downgrade, head_revision, make_engine, upgrade

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        if args.action == "upgrade":
            upgrade(engine, args.revision or "head")
        elif args.action == "downgrade":
            downgrade(engine, args.revision or "-1")
        print(f"database: {engine.url.render_as_string(hide_password=True)}")
        print(f"revision: {current_revision(engine) or '(empty)'} (head: {head_revision()})")
    finally:
        engine.dispose()
    return 0


def _add_db(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("db", help="migrate the product's tables (URL from WEATHER_DATABASE_URL)")
    parser.add_argument("action", choices=["upgrade", "downgrade", "current"])
    parser.add_argument("revision", nargs="?", help="target revision (upgrade: head, downgrade: -1)")
    parser.set_defaults(handler=_db)


# Each entry adds one subcommand; later stages append theirs (synthetic data, demo miners, ...).
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_db]


def _add_miners(sub: argparse._SubParsersAction) -> None:
    from weather_dagster.miners.demo.cli import add_miners_command

    add_miners_command(sub)


COMMANDS.append(_add_miners)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="weather-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except SettingsError as exc:
        print(f"weather-dagster: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

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


def _pools(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from weather_dagster.dagster_defs.pools import apply_pool_limits, current_pool_limits

    settings = load_settings()
    with DagsterInstance.get() as instance:
        if args.action == "apply":
            apply_pool_limits(instance, settings)
        for pool, limit in sorted(current_pool_limits(instance).items()):
            print(f"{pool}: {limit}")
    return 0


def _add_pools(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pools", help="Dagster pool limits from WEATHER_ROUND__*_POOL_LIMIT ($DAGSTER_HOME)")
    parser.add_argument("action", choices=["apply", "show"])
    parser.set_defaults(handler=_pools)


def _celery_config(args: argparse.Namespace) -> int:
    import yaml

    from weather_dagster.dagster_defs.executors import WORKER_ARGS, celery_executor_config, min_worker_concurrency

    settings = load_settings()
    if not settings.round.celery_broker_url:
        print("weather-dagster: set WEATHER_ROUND__CELERY_BROKER_URL (e.g. redis://host:6379/0)", file=sys.stderr)
        return 2
    start = "dagster-celery worker start -A dagster_celery.app -y THIS_FILE -- --concurrency=N"
    print(f"# {start} {' '.join(WORKER_ARGS)}")
    print(f"# N >= {min_worker_concurrency(settings)} (the sum of the pool limits)")
    print(yaml.safe_dump({"execution": {"config": celery_executor_config(settings)}}, sort_keys=True), end="")
    return 0


def _add_celery_config(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("celery-config", help="print the Celery worker YAML for WEATHER_ROUND__CELERY_BROKER_URL")
    parser.set_defaults(handler=_celery_config)


def _import_reference(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from weather_dagster.db.engine import Database
    from weather_dagster.db.gaia_source import ImportReferenceError
    from weather_dagster.db.import_reference import import_reference

    settings = load_settings()
    since = datetime.fromisoformat(args.since) if args.since else None
    if since is not None:  # a bare date/time is UTC, like every time in this project
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    database = Database(settings.resolved_database_url)  # migrated to head on first use
    try:
        report = import_reference(args.source, database.engine, settings, since=since)
    except ImportReferenceError as exc:
        print(f"weather-dagster: {exc}", file=sys.stderr)
        return 2
    finally:
        database.dispose()
    print(f"imported into {database!r}")
    print("\n".join(report.lines()))
    return 0


def _add_import_reference(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "import-reference",
        help="copy a Gaia v2.9.x validator database's weather history into this project's tables (idempotent)",
    )
    parser.add_argument("--from", dest="source", required=True, help="the Gaia database URL (postgresql://...)")
    parser.add_argument("--since", help="only rounds initialised at or after this UTC date/time (ISO 8601)")
    parser.set_defaults(handler=_import_reference)


def _add_miners(sub: argparse._SubParsersAction) -> None:
    from weather_dagster.miners.demo.cli import add_miners_command

    add_miners_command(sub)


def _add_synthetic(sub: argparse._SubParsersAction) -> None:
    from weather_dagster.reference.synthetic.cli import add_synthetic_command

    add_synthetic_command(sub)


def _add_api(sub: argparse._SubParsersAction) -> None:
    from weather_dagster.api.cli import add_api_command

    add_api_command(sub)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from weather_dagster.demo import add_demo_command

    add_demo_command(sub)


def _add_operator(sub: argparse._SubParsersAction) -> None:
    from weather_dagster.operator.commands import add_operator_commands

    add_operator_commands(sub)


def _add_replay(sub: argparse._SubParsersAction) -> None:
    from weather_dagster.scoring.replay import add_replay_command

    add_replay_command(sub)


# One entry per subcommand; each imports its module only when the CLI is built.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_db,
    _add_pools,
    _add_celery_config,
    _add_synthetic,
    _add_miners,
    _add_demo,
    _add_import_reference,
    _add_operator,
    _add_api,
    _add_replay,
]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="weather-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    from weather_dagster.operator.failures import operator_message

    try:
        return args.handler(args)
    except SettingsError as exc:
        print(f"weather-dagster: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Bad input an operator gave (unreachable database, DAGSTER_HOME unset, a second demo) ends with
        # what to do, not a traceback; anything else is a bug and keeps its traceback.
        message = operator_message(exc)
        if message is None:
            raise
        print(f"weather-dagster: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

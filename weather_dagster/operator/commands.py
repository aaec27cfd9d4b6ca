"""The operator's subcommands of ``weather-dagster``; ``cli.py`` only dispatches here.

Every command reads its settings from the environment, or with ``--demo DIR`` from what the demo
recorded there, so the demo's round can be explained and acted on with nothing copied by hand.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from weather_dagster.operator.rounds import parse_round_date
from weather_dagster.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "demo", None):
        from weather_dagster.operator.demo_env import demo_settings

        return demo_settings(args.demo)
    return load_settings()


@contextlib.contextmanager
def _engine(settings: Settings) -> Iterator[sa.Engine]:
    from weather_dagster.db.engine import make_engine

    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as conn:  # fail here, with the operator's message, if it cannot be reached
            conn.execute(sa.text("select 1"))
        yield engine
    finally:
        engine.dispose()


def _published(settings: Settings):
    """The ERA5 sources' reach right now, or None when they cannot be asked (e.g. the demo has ended)."""
    from weather_dagster.reference.sources import ReferenceData

    reference = ReferenceData(settings)
    try:
        stops = reference.era5_published_until()
    except Exception:  # explain must work with every source down; it then says they were not asked
        return None
    finally:
        reference.close()
    return stops  # a source that did not answer is named so ("ARCO did not answer")


def _explain(args: argparse.Namespace) -> int:
    from weather_dagster.operator.explain import explain_miner, explain_round

    settings = _settings(args)
    round_date = parse_round_date(args.round)
    with _engine(settings) as engine:
        if args.uid is None:
            lines = explain_round(engine, round_date).lines()
        else:
            published = None if args.no_probe else _published(settings)
            lines = explain_miner(engine, settings, round_date, args.uid, published=published).lines()
    print("\n".join(lines))
    return 0


def _retry(args: argparse.Namespace) -> int:
    from weather_dagster.operator.actions import retry_step_now

    settings = _settings(args)
    with _engine(settings) as engine:
        result = retry_step_now(engine, settings, parse_round_date(args.round), args.uid, args.step, args.lead)
    print(result.line())
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from weather_dagster.operator.actions import cancel_miner

    settings = _settings(args)
    with _engine(settings) as engine:
        result = cancel_miner(engine, settings, parse_round_date(args.round), args.uid, args.reason)
    print(result.line())
    return 0


def _score(args: argparse.Namespace) -> int:
    from weather_dagster.db.engine import Database
    from weather_dagster.operator.actions import score_round
    from weather_dagster.reference.sources import ReferenceData
    from weather_dagster.scoring.live_inputs import LiveScoringInputs

    settings = _settings(args)
    database = Database(settings.resolved_database_url)
    reference = ReferenceData(settings)
    inputs = LiveScoringInputs(settings, database, reference)
    try:
        result = score_round(database.engine, settings, inputs, parse_round_date(args.round))
    finally:
        inputs.release()
        reference.close()
        database.dispose()
    print(result.line())
    return 0


def _rollups(args: argparse.Namespace) -> int:
    from weather_dagster.db.engine import Database
    from weather_dagster.operator.actions import rerun_rollups
    from weather_dagster.stats.weights import DatabaseWeightPublisher

    settings = _settings(args)
    database = Database(settings.resolved_database_url)
    try:
        publisher = DatabaseWeightPublisher(database)
        result = rerun_rollups(database.engine, settings, publisher, parse_round_date(args.round))
    finally:
        database.dispose()
    print(result.line())
    return 0


def _common(parser: argparse.ArgumentParser, *, uid: bool) -> None:
    parser.add_argument("--round", required=True, help="the round's init date, YYYY-MM-DD (UTC)")
    if uid:
        parser.add_argument("--uid", type=int, required=True, help="the miner's uid")
    parser.add_argument("--demo", help="use the settings the demo recorded in this out dir (e.g. out/demo)")


def add_operator_commands(sub: argparse._SubParsersAction) -> None:
    from weather_dagster.core.states import StepName
    from weather_dagster.operator.ui import add_ui_command

    add_ui_command(sub)
    explain = sub.add_parser("explain", help="why a miner has (no) score: its steps, errors, next retry and rule")
    explain.add_argument("--round", required=True, help="the round's init date, YYYY-MM-DD (UTC)")
    explain.add_argument("--uid", type=int, help="one miner; without it, the round's counts and top reasons")
    explain.add_argument("--demo", help="use the settings the demo recorded in this out dir (e.g. out/demo)")
    explain.add_argument("--no-probe", action="store_true", help="do not ask the ERA5 sources how far they reach")
    explain.set_defaults(handler=_explain)

    retry = sub.add_parser("retry", help="make one miner's open step due now (recorded in the step log)")
    _common(retry, uid=True)
    retry.add_argument("--step", required=True, choices=[s.value for s in StepName if s.value != "round_setup"])
    retry.add_argument("--lead", type=int, default=0, help="the ERA5 lead in hours (era5 steps)")
    retry.set_defaults(handler=_retry)

    cancel = sub.add_parser("cancel", help="cancel a miner's thread in a round: no more work for it")
    _common(cancel, uid=True)
    cancel.add_argument("--reason", default="", help="recorded with the cancellation")
    cancel.set_defaults(handler=_cancel)

    score = sub.add_parser("score", help="score (backfill) a past round from its frozen manifests")
    _common(score, uid=False)
    score.set_defaults(handler=_score)

    rollups = sub.add_parser("rollups", help="re-run a round's rollups (scores, ranks, stats, plots) and weights")
    _common(rollups, uid=False)
    rollups.set_defaults(handler=_rollups)

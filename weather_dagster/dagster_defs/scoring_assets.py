"""Scoring in Dagster: ``day1_score`` and ``era5_score`` per (date x miner), and the round rollups.

The assets are thin: they resolve the partition to a round and a uid and call
``scoring.service`` (which owns state checks, the step log and the writes). Lineage to assets other
areas define (``miner_forecast``, ``gfs_forecast``, ``era5_truth``, ``era5_climatology``) is declared by
AssetKey; daily upstreams map through the ``date`` dimension. The GFS analysis is 6-hourly and has
no mapping from a (date x miner) partition, so its lineage is not drawn (the Day1 truth time is
init + 12 h, read through ``ScoringInputs``).
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    ResourceParam,
    asset,
)

from weather_dagster.dagster_defs.partitions import miner_rounds, parse_miner_round_key, round_dates
from weather_dagster.dagster_defs.resources import DatabaseResource, SettingsResource, step_log
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_stats
from weather_dagster.db.schema import miner_stats as miner_stats_table
from weather_dagster.db.types import utcnow
from weather_dagster.scoring.inputs import ScoringInputs, UnconfiguredScoringInputs
from weather_dagster.scoring.service import Outcome, run_day1, run_era5, run_id_for_date
from weather_dagster.scoring.store import write_round_scores
from weather_dagster.stats.miner_stats import update_miner_stats
from weather_dagster.stats.ranks import update_ranks
from weather_dagster.stats.report import png_markdown, write_plots
from weather_dagster.stats.snapshot import write_snapshot
from weather_dagster.stats.weights import DatabaseWeightPublisher, WeightPublisher, weights_for

ScoringInputsResource = ResourceParam[ScoringInputs]
WeightPublisherResource = ResourceParam[WeightPublisher]
_BY_DATE = MultiToSingleDimensionPartitionMapping(partition_dimension_name="date")
SCORE_CHECKS = [
    AssetCheckSpec("scores_finite", asset="day1_score", description="Day1 score is finite"),
    AssetCheckSpec("score_in_range", asset="day1_score", description="Day1 and overall scores lie in [0, 1]"),
]
ERA5_CHECKS = [
    AssetCheckSpec("scores_finite", asset="era5_score", description="lead and overall scores are finite"),
    AssetCheckSpec("score_in_range", asset="era5_score", description="overall score in [0, 1]"),
    AssetCheckSpec("leads_complete", asset="era5_score", description="every due lead has an outcome"),
]


def init_time_of(date: str) -> datetime:
    return datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)


def _table(rows: dict[str, dict[str, float | None]]) -> MetadataValue:
    if not rows:
        return MetadataValue.md("(nothing scored)")
    columns = sorted({c for row in rows.values() for c in row})
    lines = ["| variable | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        cells = ["" if row.get(c) is None else f"{row[c]:.4g}" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return MetadataValue.md("\n".join(lines))


def _in_unit(value: float | None) -> bool:
    return value is not None and 0.0 <= value <= 1.0


def _resolve(context: AssetExecutionContext, db, settings) -> tuple[int | None, int]:
    date, uid = parse_miner_round_key(context.partition_key)
    return run_id_for_date(db.engine, init_time_of(date)), uid


@asset(
    partitions_def=miner_rounds,
    deps=[AssetDep(AssetKey("miner_forecast")), AssetDep(AssetKey("gfs_forecast"), partition_mapping=_BY_DATE)],
    check_specs=SCORE_CHECKS,
    pool="scoring",
    group_name="scoring",
    description="Day1 score of one miner's forecast against the GFS analysis (SPEC section 8).",
)
def day1_score(
    context: AssetExecutionContext,
    settings: SettingsResource,
    db: DatabaseResource,
    scoring_inputs: ScoringInputsResource,
):
    run_id, uid = _resolve(context, db, settings)
    if run_id is None:
        outcome = Outcome(None, "skipped", "no round for this date")
    else:
        steps = step_log(settings, db)
        outcome = run_day1(db.engine, steps, settings, scoring_inputs, run_id, uid, dagster_run_id=context.run.run_id)
    rollup = outcome.rollup
    day1 = rollup.day1_score if rollup else None
    yield MaterializeResult(
        metadata={
            "status": outcome.status,
            "detail": outcome.detail,
            "scoring_profile": settings.scoring.profile,
            "day1_score": day1,
            "day1_passed": rollup.day1_passed if rollup else False,
            "per_variable": _table(outcome.per_variable),
        }
    )
    scored = rollup is not None and day1 is not None
    yield AssetCheckResult(
        check_name="scores_finite", passed=bool(not scored or day1 == day1), metadata={"day1_score": day1}
    )
    yield AssetCheckResult(
        check_name="score_in_range",
        passed=bool(not scored or (_in_unit(day1) and _in_unit(rollup.overall))),
        metadata={"day1_score": day1, "overall": rollup.overall if rollup else None},
    )


@asset(
    partitions_def=miner_rounds,
    deps=[
        AssetDep(AssetKey("day1_score")),
        AssetDep(AssetKey("miner_forecast")),
        AssetDep(AssetKey("era5_truth_gate"), partition_mapping=_BY_DATE),
    ],
    check_specs=ERA5_CHECKS,
    pool="scoring",
    group_name="scoring",
    description="ERA5 scores of one miner's forecast, one lead per step; re-materialized as leads arrive.",
)
def era5_score(
    context: AssetExecutionContext,
    settings: SettingsResource,
    db: DatabaseResource,
    scoring_inputs: ScoringInputsResource,
):
    run_id, uid = _resolve(context, db, settings)
    if run_id is None:
        outcome = Outcome(None, "skipped", "no round for this date")
    else:
        steps = step_log(settings, db)
        outcome = run_era5(db.engine, steps, settings, scoring_inputs, run_id, uid, dagster_run_id=context.run.run_id)
    rollup = outcome.rollup
    done = sorted(lead for lead, state in outcome.leads.items() if state == "done")
    yield MaterializeResult(
        metadata={
            "status": outcome.status,
            "detail": outcome.detail,
            "scoring_profile": settings.scoring.profile,
            "leads_done": MetadataValue.text(", ".join(f"{lead}h" for lead in done) or "none"),
            "leads": MetadataValue.json({str(k): v for k, v in sorted(outcome.leads.items())}),
            "era5_completeness": rollup.completeness if rollup else 0.0,
            "overall_score": rollup.overall if rollup else None,
            "lead_scores": MetadataValue.json(
                {f"{k}h": v for k, v in sorted((rollup.lead_scores if rollup else {}).items())}
            ),
            "per_variable_last_lead": _table(outcome.per_variable),
        }
    )
    lead_values = list(rollup.lead_scores.values()) if rollup else []
    yield AssetCheckResult(
        check_name="scores_finite",
        passed=all(v == v and abs(v) != float("inf") for v in lead_values),
        metadata={"leads": len(lead_values)},
    )
    yield AssetCheckResult(
        check_name="score_in_range",
        passed=rollup is None or (_in_unit(rollup.overall) and all(_in_unit(v) for v in lead_values)),
    )
    pending = [lead for lead, state in outcome.leads.items() if state in ("retry",)]
    yield AssetCheckResult(
        check_name="leads_complete",
        passed=not pending,
        metadata={"retrying": MetadataValue.text(", ".join(map(str, pending)) or "none")},
    )


@asset(
    partitions_def=round_dates,
    deps=[AssetDep(AssetKey("era5_score"), partition_mapping=_BY_DATE)],
    group_name="scoring",
    description="Round score vector, ranks and the subnet summary of one round.",
)
def subnet_snapshot(context: AssetExecutionContext, settings: SettingsResource, db: DatabaseResource):
    run_id = run_id_for_date(db.engine, init_time_of(context.partition_key))
    if run_id is None:
        return MaterializeResult(metadata={"status": "no round for this date"})
    now = utcnow()
    with db.engine.begin() as conn:
        vector = write_round_scores(conn, run_id, settings.scoring, now)
        moved = update_ranks(conn, run_id, now)
        summary = write_snapshot(conn, run_id, now)
    plots = write_plots(db.engine, run_id, settings.data_dir / "plots" / context.partition_key)
    board = "\n".join(
        f"| {e['rank']} | {e['uid']} | {e['overall'] if e['overall'] is not None else ''} |"
        for e in summary["leaderboard"]
    )
    return MaterializeResult(
        metadata={
            "miners": summary["miners"],
            "scored": summary["scored"],
            "scoring_profile": settings.scoring.profile,
            "ranks_changed": moved,
            "top_round_score": max(vector.values()) if vector else None,
            "leaderboard": MetadataValue.md("| rank | uid | overall |\n|---|---|---|\n" + board),
            **{f"plot_{path.stem}": MetadataValue.path(str(path.resolve())) for path in plots},
            # Inline copies, so the Dagster UI shows the pictures without access to the data directory.
            **{f"chart_{path.stem}": MetadataValue.md(png_markdown(path)) for path in plots},
        }
    )


@asset(deps=[AssetKey("subnet_snapshot")], group_name="scoring", description="Per-miner aggregates over rounds.")
def miner_stats(context: AssetExecutionContext, db: DatabaseResource):
    """Recomputed only for (uid, hotkey) pairs whose forecast stats changed since their last update."""
    s, m = forecast_stats.c, miner_stats_table.c
    with db.engine.begin() as conn:
        latest = (
            sa.select(s.miner_uid, s.miner_hotkey, sa.func.max(s.updated_at).label("changed"))
            .group_by(s.miner_uid, s.miner_hotkey)
            .subquery()
        )
        rows = conn.execute(
            sa.select(latest.c.miner_uid, latest.c.miner_hotkey)
            .select_from(
                latest.outerjoin(
                    miner_stats_table,
                    sa.and_(m.miner_uid == latest.c.miner_uid, m.miner_hotkey == latest.c.miner_hotkey),
                )
            )
            .where(sa.or_(m.updated_at.is_(None), latest.c.changed > m.updated_at))
        ).all()
        count = update_miner_stats(conn, [(r.miner_uid, r.miner_hotkey) for r in rows], utcnow())
    return MaterializeResult(metadata={"miners_updated": count})


@asset(
    partitions_def=round_dates,
    deps=[AssetKey("subnet_snapshot")],
    group_name="scoring",
    description="The weight vector from the last 15 days of round vectors, published by the configured publisher.",
)
def round_weights(
    context: AssetExecutionContext,
    settings: SettingsResource,
    db: DatabaseResource,
    weight_publisher: WeightPublisherResource,
):
    until = init_time_of(context.partition_key)
    with db.engine.connect() as conn:
        vector = weights_for(conn, until, settings.scoring)
    weight_publisher.publish(vector, until, utcnow())
    top = sorted(vector.weights.items(), key=lambda kv: -kv[1])[:10]
    return MaterializeResult(
        metadata={
            "publisher": weight_publisher.name,
            "scoring_profile": settings.scoring.profile,
            "rounds_in_window": vector.details.get("rounds", 0),
            "fallback": bool(vector.details.get("fallback")),
            "weight_sum": sum(vector.weights.values()),
            "top_weights": MetadataValue.md(
                "| uid | weight |\n|---|---|\n" + "\n".join(f"| {u} | {w:.6f} |" for u, w in top)
            ),
        }
    )


SCORING_ASSETS = [day1_score, era5_score, subnet_snapshot, miner_stats, round_weights]


def scoring_resources(
    database: Database, scoring_inputs: ScoringInputs | None = None, publisher: WeightPublisher | None = None
) -> dict:
    """The two resources the scoring assets add; nothing connects until an asset runs."""
    return {
        "scoring_inputs": scoring_inputs or UnconfiguredScoringInputs(),
        "weight_publisher": publisher or DatabaseWeightPublisher(database),
    }

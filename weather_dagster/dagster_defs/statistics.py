"""Statistics in Dagster: the round snapshot (score vector, ranks, summary, plots), per-miner
aggregates and the weight vector, and the two jobs the round sensor launches for a settled round.

The assets are thin over ``stats`` and ``scoring.store``, imported inside the runs (matplotlib and the
kernel are not needed to load the code location). Partition dates map to rounds through
``orchestration.calendar``, so a deployment on any GFS cycle finds its rounds.
"""

# No `from __future__ import annotations`: Dagster inspects the real annotations of `context`.
import sqlalchemy as sa
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    Definitions,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
    in_process_executor,
)

from weather_dagster.dagster_defs.partitions import BY_DATE, round_dates
from weather_dagster.dagster_defs.resources import DatabaseResource, SettingsResource, WeightPublisherResource
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_stats
from weather_dagster.db.schema import miner_stats as miner_stats_table
from weather_dagster.db.types import utcnow
from weather_dagster.orchestration.batching import RunJob
from weather_dagster.orchestration.calendar import init_time_of
from weather_dagster.orchestration.rounds import round_id_for

GROUP = "statistics"


@asset(
    partitions_def=round_dates,
    deps=[AssetDep(AssetKey("era5_score"), partition_mapping=BY_DATE)],
    group_name=GROUP,
    description="Round score vector, ranks and the subnet summary of one round.",
)
def subnet_snapshot(context: AssetExecutionContext, settings: SettingsResource, db: DatabaseResource):
    from weather_dagster.scoring.store import write_round_scores
    from weather_dagster.stats.ranks import update_ranks
    from weather_dagster.stats.report import png_markdown, write_plots
    from weather_dagster.stats.snapshot import write_snapshot

    run_id = round_id_for(db.engine, context.partition_key, settings)
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


@asset(deps=[AssetKey("subnet_snapshot")], group_name=GROUP, description="Per-miner aggregates over rounds.")
def miner_stats(context: AssetExecutionContext, db: DatabaseResource):
    """Recomputed only for (uid, hotkey) pairs whose forecast stats changed since their last update."""
    from weather_dagster.stats.miner_stats import update_miner_stats

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
    group_name=GROUP,
    description="The weight vector from the last 15 days of round vectors, published by the configured publisher.",
)
def round_weights(
    context: AssetExecutionContext,
    settings: SettingsResource,
    db: DatabaseResource,
    weight_publisher: WeightPublisherResource,
):
    from weather_dagster.stats.weights import weights_for

    until = init_time_of(context.partition_key, settings)
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


STATISTICS_ASSETS = [subnet_snapshot, miner_stats, round_weights]
# Sequential steps (the weights read the snapshot's vector), so nothing runs in parallel: in-process.
round_rollup_job = define_asset_job(
    RunJob.ROUND_ROLLUP.value, selection=["subnet_snapshot", "round_weights"], executor_def=in_process_executor
)
miner_stats_job = define_asset_job(
    RunJob.MINER_STATS.value, selection=["miner_stats"], executor_def=in_process_executor
)


def weight_publisher_resource(database: Database):
    """The default publisher: weights into the product's tables (the chain one replaces it when enabled)."""
    from weather_dagster.stats.weights import DatabaseWeightPublisher

    return DatabaseWeightPublisher(database)


def statistics_definitions() -> Definitions:
    """The statistics domain: snapshot, miner stats and weights, and their jobs."""
    return Definitions(assets=STATISTICS_ASSETS, jobs=[round_rollup_job, miner_stats_job])

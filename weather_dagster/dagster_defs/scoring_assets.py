"""Scoring in Dagster: ``day1_score`` and ``era5_score`` per (date x miner), the gate and the batch job.

The assets are thin: they resolve the partition to a round and a uid and call
``scoring.service`` (which owns state checks, the step log and the writes). Lineage to assets other
areas define (``miner_forecast``, ``gfs_forecast``, ``era5_truth``, ``era5_climatology``) is declared by
AssetKey; daily upstreams map through the ``date`` dimension. The GFS analysis is 6-hourly and has
no mapping from a (date x miner) partition, so its lineage is not drawn (the Day1 truth time is
init + 12 h, read through ``ScoringInputs``).
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    Definitions,
    MaterializeResult,
    MetadataValue,
    asset,
)

from weather_dagster.dagster_defs.gates import era5_truth_gate
from weather_dagster.dagster_defs.partitions import BY_DATE, miner_rounds, parse_miner_round_key
from weather_dagster.dagster_defs.pools import SCORING_POOL
from weather_dagster.dagster_defs.resources import (
    DatabaseResource,
    ScoringInputsResource,
    SettingsResource,
    step_log,
)
from weather_dagster.dagster_defs.scoring_batch import score_batch_job_for
from weather_dagster.orchestration.rounds import round_id_for
from weather_dagster.settings import Settings

SCORE_CHECKS = [
    AssetCheckSpec("scores_finite", asset="day1_score", description="Day1 score is finite"),
    AssetCheckSpec("score_in_range", asset="day1_score", description="Day1 and overall scores lie in [0, 1]"),
]
ERA5_CHECKS = [
    AssetCheckSpec("scores_finite", asset="era5_score", description="lead and overall scores are finite"),
    AssetCheckSpec("score_in_range", asset="era5_score", description="overall score in [0, 1]"),
    AssetCheckSpec("leads_complete", asset="era5_score", description="every due lead has an outcome"),
]


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
    return round_id_for(db.engine, date, settings), uid


@asset(
    partitions_def=miner_rounds,
    deps=[AssetDep(AssetKey("miner_forecast")), AssetDep(AssetKey("gfs_forecast"), partition_mapping=BY_DATE)],
    check_specs=SCORE_CHECKS,
    pool=SCORING_POOL,
    group_name="scoring",
    description="Day1 score of one miner's forecast against the GFS analysis (SPEC section 8).",
)
def day1_score(
    context: AssetExecutionContext,
    settings: SettingsResource,
    db: DatabaseResource,
    scoring_inputs: ScoringInputsResource,
):
    from weather_dagster.scoring.service import Outcome, run_day1

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
        AssetDep(AssetKey("era5_truth_gate"), partition_mapping=BY_DATE),
    ],
    check_specs=ERA5_CHECKS,
    pool=SCORING_POOL,
    group_name="scoring",
    description="ERA5 scores of one miner's forecast, one lead per step; re-materialized as leads arrive.",
)
def era5_score(
    context: AssetExecutionContext,
    settings: SettingsResource,
    db: DatabaseResource,
    scoring_inputs: ScoringInputsResource,
):
    from weather_dagster.scoring.service import Outcome, run_era5

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


SCORING_ASSETS = [day1_score, era5_score]


def scoring_definitions(settings: Settings) -> Definitions:
    """The scoring domain: per-miner scores, the ERA5 gate and the batched scoring job."""
    return Definitions(
        assets=[*SCORING_ASSETS, era5_truth_gate],
        jobs=[score_batch_job_for(settings)],
    )

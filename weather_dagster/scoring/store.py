"""Idempotent writes of scores and their rollups.

Every write is an upsert on the table's natural key that only touches a row when one of its value
columns changed (``IS DISTINCT FROM``), so scoring the same partition twice leaves byte-identical
rows, timestamps included. Non-finite floats are stored as NULL (JSON has no NaN; "undefined" is
what they mean). Callers pass a connection so each step's writes share one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from weather_dagster.db.schema import component_scores, forecast_stats, miner_scores
from weather_dagster.db.upsert import insert_for
from weather_dagster.scoring.day1 import Day1Result
from weather_dagster.scoring.era5 import LeadResult
from weather_dagster.scoring.round_score import era5_combined, overall_score
from weather_dagster.settings import ScoringSettings

DAY1 = "day1"
ERA5 = "era5"


@dataclass(frozen=True)
class ResponseKey:
    response_id: int
    run_id: int
    miner_uid: int
    miner_hotkey: str


def clean(value: Any) -> Any:
    """JSON- and column-safe: non-finite floats -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _upsert(conn: sa.Connection, table: sa.Table, rows: Iterable[dict], keys: list[str], compare: list[str]) -> int:
    """Insert or update; an existing row is rewritten only if a ``compare`` column differs.

    One statement per set of columns, executed for all of its rows at once: a lead's 69 component
    rows cost one statement to build and compile, not 69.
    """
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for columns, group in groups.items():
        stmt = insert_for(conn, table)
        update = {c: stmt.excluded[c] for c in columns if c not in keys}
        changed = sa.or_(*(table.c[c].is_distinct_from(stmt.excluded[c]) for c in compare))
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update, where=changed), group)
    return sum(len(group) for group in groups.values())


_SCORE_KEYS = ["response_id", "score_type", "lead_hours", "variable"]
_COMPONENT_KEYS = [*_SCORE_KEYS, "pressure_level"]
_COMPONENT_VALUES = [
    "rmse",
    "mse",
    "acc",
    "skill_score",
    "bias",
    "mae",
    "pattern_correlation",
    "clone_distance",
    "clone_penalty",
    "checks_passed",
    "variable_weight",
    "scoring_profile",
]


def _base(key: ResponseKey, profile: str) -> dict[str, Any]:
    return {
        "response_id": key.response_id,
        "run_id": key.run_id,
        "miner_uid": key.miner_uid,
        "miner_hotkey": key.miner_hotkey,
        "scoring_profile": profile,
    }


def _metric_columns(m) -> dict[str, Any]:
    return {
        "rmse": clean(m.rmse),
        "mse": clean(m.mse),
        "acc": clean(m.acc),
        "skill_score": clean(m.skill),
        "bias": clean(m.bias),
        "mae": clean(m.mae),
        "pattern_correlation": clean(m.pattern_correlation),
    }


def write_day1(conn: sa.Connection, key: ResponseKey, result: Day1Result, now: datetime, profile: str) -> None:
    scores = [
        {
            **_base(key, profile),
            "score_type": DAY1,
            "lead_hours": 0,
            "variable": "",
            "score": clean(result.score),
            "metrics": clean(
                {
                    "passed": result.passed,
                    "clamped": result.clamped,
                    "mean_skill": result.mean_skill,
                    "mean_acc": result.mean_acc,
                }
            ),
            "calculation_time": now,
        }
    ]
    components = []
    for c in result.components:
        scores.append(
            {
                **_base(key, profile),
                "score_type": DAY1,
                "lead_hours": c.lead_hours,
                "variable": c.variable,
                "score": clean(c.skill_after_penalty),
                "metrics": clean(
                    {
                        "acc": c.metrics.acc if c.metrics else None,
                        "skill": c.metrics.skill if c.metrics else None,
                        "clone_penalty": c.clone_penalty,
                        "passed": c.passed,
                    }
                ),
                "valid_time_utc": c.valid_time,
                "calculation_time": now,
            }
        )
        components.append(
            {
                **_base(key, profile),
                "score_type": DAY1,
                "lead_hours": c.lead_hours,
                "variable": c.base_variable,
                "pressure_level": c.level or 0,
                "valid_time_utc": c.valid_time,
                **(_metric_columns(c.metrics) if c.metrics else {}),
                "clone_distance": clean(c.clone_distance),
                "clone_penalty": clean(c.clone_penalty),
                "checks_passed": c.passed,
                "checks": clean(c.sanity),
                "variable_weight": 1.0,
                "calculation_duration_ms": c.duration_ms,
                "calculation_time": now,
            }
        )
    _upsert(conn, miner_scores, scores, _SCORE_KEYS, ["score", "scoring_profile"])
    _upsert(conn, component_scores, components, _COMPONENT_KEYS, _COMPONENT_VALUES)


def write_era5_lead(conn: sa.Connection, key: ResponseKey, result: LeadResult, now: datetime, profile: str) -> None:
    scores = [
        {
            **_base(key, profile),
            "score_type": ERA5,
            "lead_hours": result.lead_hours,
            "variable": "",
            "score": clean(result.score) if result.ok else None,
            "metrics": clean(
                {"status": result.status, "reason": result.reason[:500], "rmse_reference": result.rmse_reference}
            ),
            "valid_time_utc": result.valid_time,
            "calculation_time": now,
        }
    ]
    components = []
    for name, v in sorted(result.variables.items()):
        scores.append(
            {
                **_base(key, profile),
                "score_type": ERA5,
                "lead_hours": result.lead_hours,
                "variable": name,
                "score": clean(v.skill),
                "metrics": clean(
                    {"rmse": v.rmse, "acc": v.acc, "skill": v.skill, "climatology_rmse": v.climatology_rmse}
                ),
                "valid_time_utc": result.valid_time,
                "calculation_time": now,
            }
        )
        for comp in v.levels:
            components.append(
                {
                    **_base(key, profile),
                    "score_type": ERA5,
                    "lead_hours": result.lead_hours,
                    "variable": name,
                    "pressure_level": comp.level or 0,
                    "valid_time_utc": result.valid_time,
                    **_metric_columns(comp.metrics),
                    "checks_passed": True,
                    "checks": clean({"coverage": comp.coverage, "filled_points": comp.filled_points}),
                    "variable_weight": comp.weight,
                    "calculation_duration_ms": comp.duration_ms,
                    "calculation_time": now,
                }
            )
    _upsert(conn, miner_scores, scores, _SCORE_KEYS, ["score", "scoring_profile"])
    _upsert(conn, component_scores, components, _COMPONENT_KEYS, _COMPONENT_VALUES)


@dataclass(frozen=True)
class Rollup:
    day1_score: float | None
    day1_passed: bool
    lead_scores: dict[int, float]
    era5_combined: float | None
    completeness: float
    overall: float
    avg_rmse: float | None
    avg_acc: float | None
    avg_skill: float | None


def read_rollup(conn: sa.Connection, response_id: int, settings: ScoringSettings) -> Rollup:
    rows = conn.execute(
        sa.select(
            miner_scores.c.score_type,
            miner_scores.c.lead_hours,
            miner_scores.c.variable,
            miner_scores.c.score,
            miner_scores.c.metrics,
        ).where(miner_scores.c.response_id == response_id)
    ).all()
    day1_score, day1_passed = None, False
    leads: dict[int, float] = {}
    rmse, acc, skill = [], [], []
    for score_type, lead, variable, score, metrics in rows:
        metrics = metrics or {}
        if score_type == DAY1 and variable == "":
            day1_score, day1_passed = score, bool(metrics.get("passed"))
        elif score_type == ERA5 and variable == "" and score is not None:
            leads[lead] = score
        elif score_type == ERA5 and variable:
            for bucket, name in ((rmse, "rmse"), (acc, "acc"), (skill, "skill")):
                if metrics.get(name) is not None:
                    bucket.append(metrics[name])
    combined, completeness = era5_combined(leads, settings)

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return Rollup(
        day1_score,
        day1_passed,
        leads,
        combined if leads else None,
        completeness,
        overall_score(leads, day1_passed, settings),
        mean(rmse),
        mean(acc),
        mean(skill),
    )


def refresh_forecast_stats(conn: sa.Connection, key: ResponseKey, settings: ScoringSettings, now: datetime) -> Rollup:
    """Recompute the miner's score rollup from ``weather_miner_scores`` (the single source of truth)."""
    rollup = read_rollup(conn, key.response_id, settings)
    values = {
        "forecast_score_initial": clean(rollup.day1_score),
        "era5_combined_score": clean(rollup.era5_combined),
        "era5_completeness": rollup.completeness,
        "overall_forecast_score": clean(rollup.overall),
        "avg_rmse": clean(rollup.avg_rmse),
        "avg_acc": clean(rollup.avg_acc),
        "avg_skill_score": clean(rollup.avg_skill),
        "scoring_profile": settings.profile,
    }
    c = forecast_stats.c
    conn.execute(
        sa.update(forecast_stats)
        .where(
            c.run_id == key.run_id,
            c.miner_uid == key.miner_uid,
            c.miner_hotkey == key.miner_hotkey,
            sa.or_(*(c[name].is_distinct_from(value) for name, value in values.items())),
        )
        .values(**values, updated_at=now)
    )
    return rollup


def write_round_scores(conn: sa.Connection, run_id: int, settings: ScoringSettings, now: datetime) -> dict[int, float]:
    """The round's uid score vector into ``weather_round_scores`` (one row per uid); returns it.

    A uid may have several hotkeys in one round (a hotkey change cancels the old thread); the
    vector takes the best overall score among its non-cancelled rows.
    """
    from weather_dagster.db.schema import round_scores  # local: keeps the import list short
    from weather_dagster.scoring.round_score import RoundEntry, round_vector

    c = forecast_stats.c
    rows = conn.execute(
        sa.select(c.miner_uid, c.miner_hotkey, c.overall_forecast_score, c.era5_completeness, c.forecast_status).where(
            c.run_id == run_id, c.forecast_status != "cancelled"
        )
    ).all()
    entries: dict[int, RoundEntry] = {}
    hotkeys: dict[int, str] = {}
    for uid, hotkey, overall, completeness, _status in rows:
        entry = RoundEntry(overall if overall is not None else 0.0, bool(completeness))
        if uid not in entries or entry.overall > entries[uid].overall:
            entries[uid], hotkeys[uid] = entry, hotkey
    vector = round_vector(entries, settings)
    _upsert(
        conn,
        round_scores,
        [
            {
                "run_id": run_id,
                "miner_uid": uid,
                "miner_hotkey": hotkeys[uid],
                "score": score,
                "overall_score": entries[uid].overall,
                "winner_bonus": bonus,
                "scoring_profile": settings.profile,
                "computed_at": now,
            }
            for uid, (score, bonus) in sorted(vector.items())
        ],
        ["run_id", "miner_uid"],
        ["miner_hotkey", "score", "overall_score", "winner_bonus", "scoring_profile"],
    )
    return {uid: score for uid, (score, _b) in vector.items()}

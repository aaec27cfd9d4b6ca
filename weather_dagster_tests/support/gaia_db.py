"""A Gaia v2.9.x validator database for the switch-over tests: the tables, and generated rows.

The DDL is written here from a reading of Gaia's public ``gaia/database/validator_schema.py`` (same
table names, column names, types, nullability and keys for the six tables the importer reads); no
Gaia code is used. The rows are generated deterministically: 20 daily rounds over 20 days, 256
uids, NULL / NaN values where Gaia has them, statuses from across Gaia's pipeline, a uid whose
hotkey changed halfway, per-run score vectors in ``score_table`` plus the rows the importer must
leave out (a generic ``final_weather_scores`` row, another task's row, a superseded legacy row).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

TS = TIMESTAMP(timezone=True)
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
N_RUNS = 20
CHANGED_UID = 7  # hotkey hk7-old in the first half of the rounds, hk7-new afterwards (and in node_table)
NO_ADDRESS = (3, 250)  # node_table ip NULL / '0': the reference gives them no weight
NO_HOTKEY_UID = 251  # an empty slot: node_table row without hotkey
LEADS = (24, 48)


def gaia_metadata() -> sa.MetaData:
    md = sa.MetaData()
    now = sa.func.current_timestamp()
    sa.Table(
        "node_table",
        md,
        sa.Column("uid", sa.Integer, primary_key=True),
        *(sa.Column(c, sa.Text) for c in ("hotkey", "coldkey", "ip", "ip_type")),
        sa.Column("port", sa.Integer),
        *(sa.Column(c, sa.Float) for c in ("incentive", "stake", "trust", "vtrust")),
        sa.Column("protocol", sa.Text),
        sa.Column("last_updated", TS, server_default=now, nullable=False),
        sa.Column("fiber_symmetric_key", sa.Text),
        sa.Column("fiber_symmetric_key_uuid", sa.Text),
        sa.Column("fiber_key_cached_at", sa.DateTime(timezone=True)),
        sa.Column("fiber_key_expires_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("uid >= 0 AND uid < 256", name="node_table_uid_check"),
    )
    sa.Table(
        "weather_forecast_runs",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_initiation_time", TS, nullable=False),
        sa.Column("target_forecast_time_utc", TS, nullable=False),
        sa.Column("gfs_init_time_utc", TS, nullable=False),
        sa.Column("gfs_input_metadata", JSONB),
        sa.Column("status", sa.VARCHAR(50), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("completion_time", TS),
        sa.Column("final_scoring_attempted_time", TS),
        sa.Column("error_message", sa.Text),
    )
    run_fk = sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE")
    node_fk = sa.ForeignKey("node_table.uid", ondelete="CASCADE")
    sa.Table(
        "weather_miner_responses",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, run_fk, nullable=False),
        sa.Column("miner_uid", sa.Integer, node_fk, nullable=False),
        sa.Column("miner_hotkey", sa.VARCHAR(255), nullable=False),
        sa.Column("response_time", TS, nullable=False),
        sa.Column("job_id", sa.VARCHAR(100)),
        sa.Column("kerchunk_json_url", sa.Text),
        sa.Column("target_netcdf_url_template", sa.Text),
        sa.Column("kerchunk_json_retrieved", JSONB),
        sa.Column("frozen_manifest_files", JSONB),
        sa.Column("verification_hash_computed", sa.VARCHAR(64)),
        sa.Column("verification_hash_claimed", sa.VARCHAR(64)),
        sa.Column("verification_passed", sa.Boolean),
        sa.Column("manifest_frozen_at", TS),
        sa.Column("status", sa.VARCHAR(50), nullable=False, server_default=sa.text("'received'")),
        sa.Column("error_message", sa.Text),
        sa.Column("input_hash_miner", sa.VARCHAR(64)),
        sa.Column("input_hash_validator", sa.VARCHAR(64)),
        sa.Column("input_hash_match", sa.Boolean),
        sa.Column("retry_count", sa.Integer, server_default=sa.text("0")),
        *(
            sa.Column(c, TS)
            for c in (
                "next_retry_time",
                "last_polled_time",
                "inference_started_at",
                "job_accepted_at",
                "inference_completed_at",
                "day1_scoring_completed_at",
                "era5_scoring_completed_at",
            )
        ),
        sa.Column("total_pipeline_duration_seconds", sa.Integer),
        sa.UniqueConstraint("run_id", "miner_uid", name="uq_weather_miner_responses_run_miner"),
    )
    sa.Table(
        "weather_miner_scores",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "response_id",
            sa.Integer,
            sa.ForeignKey("weather_miner_responses.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("miner_uid", sa.Integer, sa.ForeignKey("node_table.uid", ondelete="CASCADE"), nullable=False),
        sa.Column("miner_hotkey", sa.VARCHAR(255), nullable=False),
        sa.Column("score_type", sa.VARCHAR(50), nullable=False),
        sa.Column("calculation_time", TS, nullable=False),
        sa.Column("metrics", JSONB),
        sa.Column("score", sa.Float),
        sa.Column("error_message", sa.Text),
        sa.Column("lead_hours", sa.Integer),
        sa.Column("variable_level", sa.String(50)),
        sa.Column("valid_time_utc", TS),
        sa.UniqueConstraint(
            "response_id",
            "score_type",
            "lead_hours",
            "variable_level",
            "valid_time_utc",
            name="uq_wms_response_scoretype_lead_var_time",
        ),
    )
    leads = [sa.Column(f"era5_score_{h}h", sa.Float) for h in range(24, 241, 24)]
    sa.Table(
        "weather_forecast_stats",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("miner_uid", sa.Integer, sa.ForeignKey("node_table.uid", ondelete="CASCADE"), nullable=False),
        sa.Column("miner_hotkey", sa.VARCHAR(255), nullable=False),
        sa.Column("miner_rank", sa.Integer),
        sa.Column("forecast_run_id", sa.VARCHAR(100), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("weather_forecast_runs.id", ondelete="CASCADE")),
        sa.Column("forecast_init_time", TS, nullable=False),
        sa.Column("forecast_status", sa.VARCHAR(50), nullable=False),
        sa.Column("current_forecast_stage", sa.VARCHAR(100)),
        sa.Column("current_forecast_status", sa.VARCHAR(50)),
        sa.Column("last_error_message", sa.Text),
        sa.Column("retries_remaining", sa.Integer, server_default=sa.text("3")),
        sa.Column("next_scheduled_retry", TS),
        sa.Column("forecast_error_msg", JSONB),
        sa.Column("forecast_score_initial", sa.Float),
        *leads,
        *(
            sa.Column(c, sa.Float)
            for c in (
                "era5_combined_score",
                "era5_completeness",
                "overall_forecast_score",
                "avg_rmse",
                "avg_acc",
                "avg_skill_score",
            )
        ),
        sa.Column("forecast_type", sa.VARCHAR(50), server_default=sa.text("'10day'"), nullable=False),
        sa.Column("forecast_inference_duration_seconds", sa.Integer),
        sa.Column("forecast_input_sources", JSONB),
        sa.Column("hosting_status", sa.VARCHAR(50)),
        sa.Column("hosting_latency_ms", sa.Integer),
        sa.Column("validator_hotkey", sa.Text),
        sa.Column("created_at", TS, server_default=now, nullable=False),
        sa.Column("updated_at", TS, server_default=now, nullable=False),
        sa.UniqueConstraint("miner_uid", "forecast_run_id", name="uq_wfs_miner_forecast"),
    )
    sa.Table(
        "score_table",
        md,
        sa.Column("task_name", sa.VARCHAR(255)),
        sa.Column("task_id", sa.Text),
        *(sa.Column(f"uid_{uid}_score", sa.Float) for uid in range(256)),
        sa.Column("created_at", TS, server_default=now, nullable=False),
        sa.Column("status", sa.VARCHAR(50), server_default=sa.text("'pending'")),
        sa.UniqueConstraint("task_name", "task_id", name="uq_score_table_task_name_task_id"),
    )
    return md


def hotkey(uid: int, run_index: int) -> str:
    if uid == CHANGED_UID:
        return "hk7-old" if run_index < N_RUNS // 2 else "hk7-new"
    return f"hk{uid}"


@dataclass
class GaiaData:
    """What was written, for the tests to compare against."""

    run_ids: list[int] = field(default_factory=list)  # by day, oldest first
    vectors: dict[int, dict[str, float | None]] = field(default_factory=dict)  # run id -> uid column -> value
    responders: dict[int, list[int]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


RUN_STATUSES = ["completed"] * 13 + ["day1_scoring_failed", "completed", "completed"] + ["awaiting_era5_truth"] * 4


def fill(engine: sa.Engine, seed: int = 11) -> GaiaData:
    """Create the tables and write the rows; returns what the tests need to know."""
    md = gaia_metadata()
    md.create_all(engine)
    t = md.tables
    rnd = random.Random(seed)
    data = GaiaData()
    with engine.begin() as conn:
        nodes = []
        for uid in range(256):
            ip = None if uid == NO_ADDRESS[0] else "0" if uid == NO_ADDRESS[1] else f"10.0.{uid // 250}.{uid % 250}"
            nodes.append(
                {
                    "uid": uid,
                    "hotkey": None if uid == NO_HOTKEY_UID else hotkey(uid, N_RUNS),
                    "coldkey": f"ck{uid % 50}" if uid % 9 else None,
                    "ip": ip,
                    "port": 8091 if uid % 13 else None,
                    "stake": float(uid) if uid % 5 else None,
                    "incentive": 0.0,
                    "last_updated": NOW - timedelta(hours=1),
                }
            )
        conn.execute(t["node_table"].insert(), nodes)
        for i in range(N_RUNS):
            init = (NOW - timedelta(days=N_RUNS - 1 - i)).replace(hour=0)
            run_id = conn.execute(
                t["weather_forecast_runs"]
                .insert()
                .values(
                    run_initiation_time=init + timedelta(hours=1, minutes=i),
                    target_forecast_time_utc=init + timedelta(hours=6),
                    gfs_init_time_utc=init,
                    gfs_input_metadata={"cycle": init.isoformat()},
                    status=RUN_STATUSES[i],
                    completion_time=init + timedelta(days=10) if RUN_STATUSES[i] == "completed" else None,
                    error_message="day1 failed" if "failed" in RUN_STATUSES[i] else None,
                )
                .returning(t["weather_forecast_runs"].c.id)
            ).scalar_one()
            data.run_ids.append(run_id)
            uids = sorted(set(rnd.sample(range(256), 140)) - {NO_HOTKEY_UID} | {CHANGED_UID})
            data.responders[run_id] = uids
            _fill_round(conn, t, rnd, i, run_id, init, uids, data)
        # Rows the importer must not turn into rounds.
        other = {f"uid_{u}_score": 0.5 for u in range(256)}
        conn.execute(
            t["score_table"].insert(),
            [
                {"task_name": "weather", "task_id": "final_weather_scores", "created_at": NOW - timedelta(days=30)}
                | other,
                {"task_name": "soil_moisture", "task_id": "soil_1", "created_at": NOW - timedelta(days=1)} | other,
                {  # an older release's row, superseded by the run's weather_scores_ row (outside the window)
                    "task_name": "weather",
                    "task_id": f"initial_weather_scores_{data.run_ids[2]}",
                    "created_at": NOW - timedelta(days=N_RUNS - 3),
                }
                | {f"uid_{u}_score": 0.9 for u in range(256)},
            ],
        )
    with engine.connect() as conn:
        for name in md.tables:
            data.counts[name] = conn.execute(sa.select(sa.func.count()).select_from(t[name])).scalar_one()
    return data


_RESPONSE_STATUSES = ["completed", "verification_failed", "day1_scored", "inference_running", "era5_scored", "failed"]


def _fill_round(conn, t, rnd, i, run_id, init, uids, data: GaiaData) -> None:
    responses, stats = [], []
    for uid in uids:
        status = rnd.choice(_RESPONSE_STATUSES)
        responses.append(
            {
                "run_id": run_id,
                "miner_uid": uid,
                "miner_hotkey": hotkey(uid, i),
                "response_time": init + timedelta(minutes=5, seconds=uid),
                "job_id": f"job-{run_id}-{uid}",
                "kerchunk_json_url": f"http://10.0.0.{uid % 250}:8091/forecast/{run_id}.zarr" if uid % 4 else None,
                "frozen_manifest_files": {"files": {".zmetadata": f"{uid:064x}"}} if uid % 3 else None,
                "verification_hash_claimed": f"{run_id * 1000 + uid:064x}",
                "manifest_frozen_at": init + timedelta(minutes=30) if uid % 3 else None,
                "status": status,
                "error_message": "hash mismatch" if status == "verification_failed" else None,
                "retry_count": None if uid % 11 == 0 else uid % 3,
                "inference_started_at": init + timedelta(minutes=10),
                "inference_completed_at": init + timedelta(hours=2) if status != "inference_running" else None,
                "day1_scoring_completed_at": init + timedelta(hours=13)
                if status in ("completed", "day1_scored")
                else None,
                "era5_scoring_completed_at": init + timedelta(days=6)
                if status in ("completed", "era5_scored")
                else None,
            }
        )
    ids = conn.execute(
        t["weather_miner_responses"]
        .insert()
        .returning(t["weather_miner_responses"].c.id, sort_by_parameter_order=True),
        responses,
    ).scalars()
    scores = []
    for response_id, uid in zip(ids, uids, strict=True):
        hk = hotkey(uid, i)
        base = {"response_id": response_id, "run_id": run_id, "miner_uid": uid, "miner_hotkey": hk}
        scores.append(
            base
            | {
                "score_type": "day1_qc_score",
                "calculation_time": init + timedelta(hours=13),
                "score": rnd.random() if uid % 17 else float("nan"),
                "variable_level": "overall_day1",
                "lead_hours": None,
                "valid_time_utc": None,
                "metrics": None,
                "error_message": None,
            }
        )
        for lead in LEADS:
            scores.append(
                base
                | {
                    "score_type": f"era5_rmse_2t_{lead}h",
                    "calculation_time": init + timedelta(days=6),
                    "score": rnd.uniform(0.5, 3.0),
                    "variable_level": "2t",
                    "lead_hours": lead,
                    "valid_time_utc": init + timedelta(hours=lead),
                    "metrics": {"rmse": 1.0, "acc": 0.9},
                    "error_message": "partial" if uid % 29 == 0 else None,
                }
            )
        for k in range(2):  # Gaia keys composites by calculation time: two rows, the importer keeps the later one
            scores.append(
                base
                | {
                    "score_type": "era5_final_composite_score",
                    "calculation_time": init + timedelta(days=6 + k),
                    "score": 0.1 * (k + 1),
                    "variable_level": "aggregated_final",
                    "lead_hours": -1,
                    "valid_time_utc": init + timedelta(days=6 + k),
                    "metrics": {"k": k},
                    "error_message": None,
                }
            )
        overall = rnd.random() if uid % 19 else float("nan")
        stats.append(
            {
                "miner_uid": uid,
                "miner_hotkey": hk,
                "miner_rank": uid % 50 + 1,
                "forecast_run_id": f"weather_{init:%Y%m%d%H}",
                "run_id": None if uid == 200 else run_id,
                "forecast_init_time": init,
                "forecast_status": "completed" if uid % 6 else "failed",
                "current_forecast_stage": "era5_scoring",
                "current_forecast_status": "completed" if uid % 2 else "in_progress",
                "forecast_score_initial": rnd.random(),
                "era5_combined_score": rnd.random(),
                "era5_completeness": 1.0 if uid % 6 else 0.0,
                "overall_forecast_score": overall,
                "avg_rmse": None,
                "forecast_inference_duration_seconds": 300 + uid,
                "hosting_latency_ms": 40 + uid,
                "created_at": init + timedelta(minutes=1),
                "updated_at": init + timedelta(days=6),
            }
        )
    conn.execute(t["weather_miner_scores"].insert(), scores)
    conn.execute(t["weather_forecast_stats"].insert(), stats)
    if i == N_RUNS - 1:
        return  # the newest round has no vector yet (Day1 not scored when the operator switched)
    vector: dict[str, float | None] = {}
    for uid in range(256):
        value: float | None = rnd.uniform(0.0, 1.05) if uid in uids else 0.0
        if uid in uids and uid % 23 == 0:
            value = None
        if uid == 42 and i == 3:
            value = float("nan")
        vector[f"uid_{uid}_score"] = value
    data.vectors[run_id] = vector
    conn.execute(
        t["score_table"]
        .insert()
        .values(
            task_name="weather",
            task_id=f"weather_scores_{run_id}_{init:%Y%m%dT%H%MZ}",
            created_at=init,
            status="final_scores_compiled",
            **vector,
        )
    )

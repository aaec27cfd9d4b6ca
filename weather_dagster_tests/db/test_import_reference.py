"""Switch-over from a Gaia validator: a generated Gaia database on the test PostgreSQL server, imported
into both product backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from weather_dagster.cli import main
from weather_dagster.core.states import RoundStatus
from weather_dagster.db import gaia_source
from weather_dagster.db.engine import Database, make_engine
from weather_dagster.db.gaia_source import ImportReferenceError
from weather_dagster.db.import_reference import TARGETS, import_reference
from weather_dagster.db.schema import (
    forecast_runs,
    forecast_stats,
    miner_responses,
    miner_scores,
    miners,
    round_scores,
)
from weather_dagster.settings import Settings
from weather_dagster.stats.weights import compute_weights, valid_address, weights_for
from weather_dagster_tests.support import gaia_db
from weather_dagster_tests.support.helpers import make_round, table_rows
from weather_dagster_tests.support.pg_server import PostgresServer


@pytest.fixture(scope="module")
def gaia(pg_server: PostgresServer) -> Iterator[tuple[str, gaia_db.GaiaData]]:
    """One Gaia database for the module (the importer only reads it)."""
    url = pg_server.create_database("gaia")
    engine = make_engine(url)
    try:
        data = gaia_db.fill(engine)
    finally:
        engine.dispose()
    yield url, data
    pg_server.drop_database(url)


def _contents(engine: sa.Engine) -> dict[str, list[dict]]:
    return {t.name: table_rows(engine, t) for t in TARGETS}


def _source_rows(url: str, query: str) -> list[sa.Row]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).all()
    finally:
        engine.dispose()


def test_import_counts_rows_and_idempotence(gaia, database: Database, settings: Settings) -> None:
    url, data = gaia
    report = import_reference(url, database.engine, settings)
    tables = report.tables
    n_responses = data.counts["weather_miner_responses"]
    assert tables["miners"].inserted == 256
    assert tables["weather_forecast_runs"].inserted == gaia_db.N_RUNS
    assert tables["weather_miner_responses"].inserted == n_responses
    # Per response: day1, two ERA5 leads and one of the two composite rows (the later calculation).
    assert tables["weather_miner_scores"].inserted == 4 * n_responses
    assert tables["weather_miner_scores"].skipped == {"older calculations of the same score": n_responses}
    stats_without_run = sum(1 for uids in data.responders.values() if 200 in uids)
    assert tables["weather_forecast_stats"].inserted == n_responses - stats_without_run
    assert tables["weather_forecast_stats"].skipped == {"outside the imported rounds": stats_without_run}
    finite = sum(1 for v in data.vectors.values() for x in v.values() if x is not None and math.isfinite(x))
    assert tables["weather_round_scores"].inserted == finite
    assert tables["weather_round_scores"].skipped == {
        "NULL or NaN uid scores": 256 * len(data.vectors) - finite,
        "score_table rows of no round": 1,
        "superseded score_table rows": 1,
    }
    assert "weather_round_scores: read" in "\n".join(report.lines())

    before = _contents(database.engine)
    assert len(before["weather_miner_responses"]) == n_responses
    again = import_reference(url, database.engine, settings)
    assert all(t.inserted == 0 for t in again.tables.values())
    assert _contents(database.engine) == before


def test_imported_rows_map_fields(gaia, database: Database, settings: Settings) -> None:
    url, data = gaia
    import_reference(url, database.engine, settings)
    engine = database.engine
    first = datetime(2026, 3, 20, tzinfo=UTC) - timedelta(days=gaia_db.N_RUNS - 1)
    with engine.connect() as conn:
        runs = conn.execute(sa.select(forecast_runs).order_by(forecast_runs.c.gfs_init_time_utc)).all()
        assert runs[0].gfs_init_time_utc == first
        assert runs[0].run_initiation_time == first + timedelta(hours=1)
        assert runs[0].previous_step_time_utc == first - timedelta(hours=6)
        assert (runs[0].status, runs[0].completed_at, runs[0].error_message) == (
            "completed",
            first + timedelta(days=10),
            None,
        )
        assert runs[0].miner_count == len(data.responders[data.run_ids[0]])
        assert [run.id for run in runs] == sorted(run.id for run in runs)  # ids follow init time, as Gaia's
        assert runs[13].status == RoundStatus.ERROR.value
        assert runs[13].error_message == "day1 failed; gaia status 'day1_scoring_failed'"
        assert runs[-1].status == RoundStatus.EXPIRED.value and runs[-1].test_mode is False

        # The miner whose hotkey changed keeps both identities, each in its own rounds.
        r = miner_responses.c
        hotkeys = conn.execute(
            sa.select(r.miner_hotkey, sa.func.count())
            .where(r.miner_uid == gaia_db.CHANGED_UID)
            .group_by(r.miner_hotkey)
        ).all()
        assert dict(hotkeys) == {"hk7-old": gaia_db.N_RUNS // 2, "hk7-new": gaia_db.N_RUNS // 2}
        old = conn.execute(
            sa.select(miner_responses).where(r.run_id == runs[0].id, r.miner_uid == gaia_db.CHANGED_UID)
        ).one()
        src_run = data.run_ids[0]
        assert old.miner_hotkey == "hk7-old"
        assert old.job_id == f"job-{src_run}-7"
        assert old.zarr_store_url == f"http://10.0.0.7:8091/forecast/{src_run}.zarr"
        assert old.frozen_manifest == {"files": {".zmetadata": f"{7:064x}"}}
        assert old.response_time == first + timedelta(minutes=5, seconds=7)
        assert old.retry_count == 1

        vector = conn.execute(
            sa.select(round_scores).where(
                round_scores.c.run_id == runs[0].id, round_scores.c.miner_uid == gaia_db.CHANGED_UID
            )
        ).one()
        assert vector.miner_hotkey == "hk7-old"
        assert vector.score == data.vectors[src_run]["uid_7_score"]
        assert vector.computed_at == first and vector.winner_bonus == 0.0
        new = conn.execute(
            sa.select(round_scores.c.miner_hotkey).where(
                round_scores.c.run_id == runs[-2].id, round_scores.c.miner_uid == gaia_db.CHANGED_UID
            )
        ).scalar_one()
        assert new == "hk7-new"
        # A uid that did not answer has Gaia's 0.0 and the node's hotkey.
        silent = next(u for u in range(256) if u not in data.responders[src_run] and u != gaia_db.NO_HOTKEY_UID)
        row = conn.execute(
            sa.select(round_scores.c.score, round_scores.c.miner_hotkey, round_scores.c.overall_score).where(
                round_scores.c.run_id == runs[0].id, round_scores.c.miner_uid == silent
            )
        ).one()
        assert tuple(row) == (0.0, f"hk{silent}", None)

        s = miner_scores.c
        nan_uid = next(u for u in data.responders[src_run] if u % 17 == 0)  # its Day1 score is NaN in Gaia
        day1 = conn.execute(
            sa.select(miner_scores).where(
                s.run_id == runs[0].id, s.miner_uid == nan_uid, s.score_type == "day1_qc_score"
            )
        ).one()
        assert day1.score is None and day1.variable == "overall_day1" and day1.lead_hours == 0
        composite = conn.execute(
            sa.select(s.score, s.valid_time_utc, s.metrics).where(
                s.run_id == runs[0].id, s.miner_uid == 7, s.score_type == "era5_final_composite_score"
            )
        ).one()
        assert tuple(composite) == (0.2, first + timedelta(days=7), {"k": 1})
        lead = conn.execute(
            sa.select(s.lead_hours, s.variable, s.metrics).where(
                s.run_id == runs[0].id, s.miner_uid == 7, s.score_type == "era5_rmse_2t_48h"
            )
        ).one()
        assert tuple(lead) == (48, "2t", {"rmse": 1.0, "acc": 0.9})

        st = conn.execute(
            sa.select(forecast_stats).where(forecast_stats.c.run_id == runs[0].id, forecast_stats.c.miner_uid == 7)
        ).one()
        assert (st.forecast_status, st.current_forecast_status, st.forecast_inference_time) == (
            "era5_scored",
            "succeeded",
            307.0,
        )
        assert st.hosting_latency_ms == 47.0 and st.miner_rank == 8 and st.scoring_profile == "reference"

        m = {row.uid: row for row in conn.execute(sa.select(miners))}
        assert m[gaia_db.CHANGED_UID].hotkey == "hk7-new"
        assert m[gaia_db.NO_HOTKEY_UID].hotkey == "" and m[gaia_db.NO_ADDRESS[0]].ip == ""
        assert m[13].port == 0 and m[9].coldkey == ""


def test_weights_from_imported_window_equal_gaia_vectors(gaia, database: Database, settings: Settings) -> None:
    """The first weights after the switch are the ones Gaia's own score rows give (same compute_weights)."""
    url, _data = gaia
    import_reference(url, database.engine, settings)
    until = gaia_db.NOW
    start = until - timedelta(days=settings.scoring.weights_window_days)
    columns = ", ".join(f"uid_{u}_score" for u in range(256))
    # Gaia's own weight query: the weather rows of the last 15 days with a per-run or generic task id.
    rows = _source_rows(
        url,
        f"SELECT {columns} FROM score_table WHERE task_name = 'weather' AND created_at >= '{start.isoformat()}' "
        "AND (task_id LIKE 'weather_scores_%' OR task_id LIKE 'final_weather_scores%' "
        "OR task_id LIKE 'initial_weather_scores%')",
    )
    vectors = [{u: v for u, v in enumerate(row) if v is not None and math.isfinite(v)} for row in rows]
    assert len(vectors) == settings.scoring.weights_window_days - 1  # the newest round has no vector yet
    nodes = _source_rows(url, "SELECT uid, ip, port, coldkey FROM node_table")
    expected = compute_weights(
        vectors,
        settings.scoring,
        valid_address={uid: valid_address(ip, port) for uid, ip, port, _ck in nodes},
        coldkeys={uid: ck or "" for uid, _ip, _port, ck in nodes},
    )
    with database.engine.connect() as conn:
        got = weights_for(conn, until, settings.scoring)
    assert got.details["rounds"] == len(vectors)
    assert got.mean_scores == pytest.approx(expected.mean_scores, abs=1e-12)
    assert got.weights == pytest.approx(expected.weights, abs=1e-12)
    assert got.weights[gaia_db.NO_ADDRESS[0]] == 0.0 and got.weights[gaia_db.NO_ADDRESS[1]] == 0.0
    assert sum(1 for w in got.weights.values() if w > 0) > 50


def test_rounds_this_project_has_are_left_alone(gaia, database: Database, settings: Settings) -> None:
    url, data = gaia
    newest = gaia_db.NOW.replace(hour=0)
    own = make_round(database.engine, newest)
    report = import_reference(url, database.engine, settings)
    assert report.tables["weather_forecast_runs"].skipped == {"rounds this project already has": 1}
    assert report.tables["weather_forecast_runs"].inserted == gaia_db.N_RUNS - 1
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(miner_responses.c.run_id == own)).scalar_one() == 0
        status = conn.execute(sa.select(forecast_runs.c.status).where(forecast_runs.c.id == own)).scalar_one()
    assert status == RoundStatus.CREATED.value
    skipped = report.tables["weather_miner_responses"].skipped
    assert skipped == {"outside the imported rounds": len(data.responders[data.run_ids[-1]])}


def test_since_limits_the_rounds(gaia, database: Database, settings: Settings) -> None:
    url, _data = gaia
    report = import_reference(url, database.engine, settings, since=gaia_db.NOW - timedelta(days=5))
    assert report.tables["weather_forecast_runs"].inserted == 5


def test_clear_errors_for_bad_sources(pg_server: PostgresServer, database: Database, settings: Settings) -> None:
    with pytest.raises(ImportReferenceError, match=r"cannot connect to the Gaia database postgresql\+psycopg2://"):
        import_reference("postgresql://postgres:secret@127.0.0.1:1/gaia", database.engine, settings)
    with pytest.raises(ImportReferenceError, match="not a database URL"):
        import_reference("not a url", database.engine, settings)
    # This project's own database is not a Gaia one: the error names what is missing.
    other = pg_server.create_database("notgaia")
    try:
        Database(other).engine.dispose()
        with pytest.raises(ImportReferenceError, match=r"is not a Gaia v2\.9\.x validator database") as excinfo:
            import_reference(other, database.engine, settings)
        message = str(excinfo.value)
        assert "table 'node_table' is missing" in message and "table 'score_table' is missing" in message
        assert "weather_miner_responses' lacks column(s) kerchunk_json_url" in message
    finally:
        pg_server.drop_database(other)
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(forecast_runs)).scalar_one() == 0


def test_cli_import_reference(gaia, db_url: str, tmp_path, monkeypatch, capsys) -> None:
    url, _data = gaia
    monkeypatch.setenv("WEATHER_DATABASE_URL", db_url)
    monkeypatch.setenv("WEATHER_DATA_DIR", str(tmp_path / "data"))
    assert main(["import-reference", "--from", url]) == 0
    out = capsys.readouterr().out
    assert f"weather_forecast_runs: read {gaia_db.N_RUNS}, inserted {gaia_db.N_RUNS}" in out
    assert main(["import-reference", "--from", url]) == 0
    assert f"weather_forecast_runs: read {gaia_db.N_RUNS}, inserted 0" in capsys.readouterr().out
    assert main(["import-reference", "--from", "postgresql://postgres:hunter2@127.0.0.1:1/gaia"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the Gaia database" in err and "hunter2" not in err


@pytest.mark.parametrize(
    ("status", "day1", "era5", "expected"),
    [
        ("verification_failed", False, False, "failed"),
        ("cancelled", True, True, "cancelled"),
        ("completed", False, False, "era5_scored"),
        ("day1_scoring_started", False, False, "day1_scored"),
        ("awaiting_inference_results", True, False, "day1_scored"),
        ("verified_manifest_store_opened", False, False, "forecast_ready"),
        ("inference_triggered", False, False, "inference_running"),
        ("fetch_accepted", False, False, "fetch_initiated"),
        (None, False, False, "created"),
    ],
)
def test_response_status_mapping(status, day1, era5, expected) -> None:
    assert gaia_source.response_status(status, day1, era5).value == expected


def test_run_and_vector_mappings() -> None:
    assert gaia_source.run_status("completed") is RoundStatus.COMPLETED
    assert gaia_source.run_status("stalled_no_valid_forecasts") is RoundStatus.ERROR
    assert gaia_source.run_status("awaiting_inference_results") is RoundStatus.EXPIRED
    assert gaia_source.vector_run_id("weather_scores_12_20260301T0000Z") == (12, 0)
    assert gaia_source.vector_run_id("final_weather_scores_12") == (12, 1)
    assert gaia_source.vector_run_id("initial_weather_scores_12") == (12, 2)
    assert gaia_source.vector_run_id("final_weather_scores") is None
    assert gaia_source.step_status("completed") == "succeeded" and gaia_source.step_status("odd") is None


def test_two_gaia_runs_for_one_init_time_keep_the_scored_one(
    pg_server: PostgresServer, database: Database, settings: Settings
) -> None:
    url = pg_server.create_database("gaiadup")
    engine = make_engine(url)
    init = gaia_db.NOW.replace(hour=0)
    try:
        md = gaia_db.gaia_metadata()
        md.create_all(engine)
        runs_t, scores_t = md.tables["weather_forecast_runs"], md.tables["score_table"]
        with engine.begin() as conn:
            ids = [
                conn.execute(
                    runs_t.insert()
                    .values(
                        run_initiation_time=init + timedelta(hours=h),
                        target_forecast_time_utc=init,
                        gfs_init_time_utc=init,
                        status=status,
                    )
                    .returning(runs_t.c.id)
                ).scalar_one()
                for h, status in ((1, "completed"), (2, "stale_abandoned"))
            ]
            conn.execute(
                scores_t.insert().values(
                    task_name="weather", task_id=f"weather_scores_{ids[0]}_x", created_at=init, uid_5_score=0.5
                )
            )
        report = import_reference(url, database.engine, settings)
    finally:
        engine.dispose()
        pg_server.drop_database(url)
    assert report.tables["weather_forecast_runs"].skipped == {"other Gaia runs of the same init time": 1}
    with database.engine.connect() as conn:
        run = conn.execute(sa.select(forecast_runs)).one()
        assert (run.run_initiation_time, run.status) == (init + timedelta(hours=1), "completed")
        assert conn.execute(sa.select(round_scores.c.miner_uid, round_scores.c.score)).all() == [(5, 0.5)]

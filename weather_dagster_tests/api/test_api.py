"""The read-only API on SQLite and PostgreSQL: pages, cursors, sanitized errors, receipts, no secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from weather_dagster.api.app import create_app
from weather_dagster.api.pagination import encode_cursor
from weather_dagster.api.queries import read_only_engine
from weather_dagster.db.schema import (
    forecast_stats,
    forecast_steps,
    miner_responses,
    miner_scores,
    score_receipts,
    subnet_snapshots,
    weight_sets,
    weights,
)
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.helpers import make_response, make_round

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LEAKY_ERROR = "GET http://u:pw@miner/x failed: Bearer abc.def.ghi password=hunter2 token=s3cr3t"


def seed(engine: sa.Engine, uids: range = range(7)) -> list[int]:
    """Two rounds; the second with miners, steps, scores, a snapshot and a weight set."""
    first = make_round(engine, NOW - timedelta(days=1))
    run_id = make_round(engine, NOW)
    for uid in uids:
        make_response(engine, run_id, uid, f"hk{uid}")
    with engine.begin() as conn:
        conn.execute(
            sa.update(forecast_stats)
            .where(forecast_stats.c.miner_uid == 3)
            .values(
                current_forecast_stage="day1",
                current_forecast_status="retry_scheduled",
                last_error_message=LEAKY_ERROR,
                next_scheduled_retry=NOW + timedelta(minutes=5),
            )
        )
        conn.execute(sa.update(forecast_stats).values(overall_forecast_score=sa.literal(0.5), miner_rank=1))
        response_ids = dict(conn.execute(sa.select(miner_responses.c.miner_uid, miner_responses.c.id)).all())
        for uid in uids:
            for i, (step, lead) in enumerate(
                [("query", 0), ("poll", 0), ("day1", 0), *[("era5", h) for h in (24, 48)]]
            ):
                status = "failed" if (uid == 3 and step == "day1") else "succeeded"
                conn.execute(
                    sa.insert(forecast_steps).values(
                        run_id=run_id,
                        miner_uid=uid,
                        miner_hotkey=f"hk{uid}",
                        step_name=step,
                        lead_hours=lead,
                        status=status,
                        started_at=NOW + timedelta(minutes=i),
                        completed_at=NOW + timedelta(minutes=i, seconds=30),
                        error_json={"type": "SourceError", "category": "source", "message": LEAKY_ERROR}
                        if status == "failed"
                        else None,
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
            for score_type, lead, variable in [("day1", 0, ""), ("era5", 24, ""), ("era5", 24, "2t"), ("era5", 48, "")]:
                conn.execute(
                    sa.insert(miner_scores).values(
                        response_id=response_ids[uid],
                        run_id=run_id,
                        miner_uid=uid,
                        miner_hotkey=f"hk{uid}",
                        score_type=score_type,
                        lead_hours=lead,
                        variable=variable,
                        score=0.1 * uid + lead / 1000,
                        calculation_time=NOW,
                    )
                )
        conn.execute(
            sa.insert(subnet_snapshots).values(
                run_id=run_id, summary={"miners": len(uids), "leaderboard": [{"rank": 1, "uid": 0}]}, taken_at=NOW
            )
        )
        set_id = conn.execute(
            sa.insert(weight_sets)
            .values(computed_for=NOW, window_days=15, publisher="validator", created_at=NOW)
            .returning(weight_sets.c.id)
        ).scalar_one()
        for uid in range(256):
            conn.execute(sa.insert(weights).values(weight_set_id=set_id, miner_uid=uid, mean_score=0.0, weight=1 / 256))
    return [first, run_id]


@pytest.fixture
def api(tmp_path, database, db_url):
    settings = load_settings(data_dir=tmp_path / "data", database_url=db_url, api={"default_page_size": 3})
    rounds = seed(database.engine)
    app = create_app(settings)
    with TestClient(app) as client:
        client.rounds = rounds  # type: ignore[attr-defined]
        yield client
    app.state.engine.dispose()


def collect(client: TestClient, path: str, limit: int) -> tuple[list[dict], int]:
    items, pages, cursor = [], 0, None
    while True:
        response = client.get(path, params={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


def test_rounds_and_round_miners_page_by_cursor(api):
    first, run_id = api.rounds
    rounds, _ = collect(api, "/api/v1/rounds", 1)
    assert [r["run_id"] for r in rounds] == [run_id, first]  # newest first
    assert api.get(f"/api/v1/rounds/{run_id}").json()["status"] == "created"
    miners, pages = collect(api, f"/api/v1/rounds/{run_id}/miners", 3)
    assert [m["uid"] for m in miners] == list(range(7)) and pages == 3
    default = api.get(f"/api/v1/rounds/{run_id}/miners").json()
    assert len(default["items"]) == 3  # the configured default page size
    three = miners[3]
    assert three["stage"] == "day1" and three["stage_status"] == "retry_scheduled"
    assert three["next_retry"] == (NOW + timedelta(minutes=5)).isoformat()
    assert three["state"] == "created" and three["rank"] == 1


def test_timeline_scores_snapshot_and_weights(api):
    _, run_id = api.rounds
    events, pages = collect(api, f"/api/v1/rounds/{run_id}/miners/3/timeline", 2)
    assert [(e["step"], e["lead_hours"]) for e in events] == [
        ("query", 0),
        ("poll", 0),
        ("day1", 0),
        ("era5", 24),
        ("era5", 48),
    ]
    assert pages == 3 and events[2]["status"] == "failed" and events[2]["error"]["category"] == "source"
    assert events[0]["at"] == (NOW + timedelta(seconds=30)).isoformat()
    scores, _ = collect(api, f"/api/v1/rounds/{run_id}/miners/2/scores", 500)
    assert {(s["score_type"], s["lead_hours"], s["variable"]) for s in scores} == {
        ("day1", 0, None),
        ("era5", 24, None),
        ("era5", 24, "2t"),
        ("era5", 48, None),
    }
    assert api.get(f"/api/v1/rounds/{run_id}/snapshot").json()["summary"]["miners"] == 7
    assert api.get("/api/v1/snapshot").json()["run_id"] == run_id
    sets = api.get("/api/v1/weights").json()["items"]
    assert len(sets) == 1
    values, pages = collect(api, f"/api/v1/weights/{sets[0]['weight_set_id']}", 100)
    assert [v["uid"] for v in values] == list(range(256)) and pages == 3
    assert api.get("/api/v1/weights/latest", params={"limit": 5}).json()["items"][4]["uid"] == 4


def test_errors_are_sanitized_in_every_response(api):
    _, run_id = api.rounds
    bodies = [
        api.get(f"/api/v1/rounds/{run_id}/miners", params={"limit": 10}).text,
        api.get(f"/api/v1/rounds/{run_id}/miners/3/timeline").text,
    ]
    for body in bodies:
        assert "REDACTED" in body
        for secret in ("hunter2", "s3cr3t", "abc.def.ghi", ":pw@"):
            assert secret not in body


def test_bad_requests_and_unknown_things_are_clean_4xx(api):
    _, run_id = api.rounds
    cases = {
        f"/api/v1/rounds/{run_id}/miners?limit=0": 400,
        f"/api/v1/rounds/{run_id}/miners?limit=501": 400,
        f"/api/v1/rounds/{run_id}/miners?limit=x": 400,
        f"/api/v1/rounds/{run_id}/miners?cursor=!!!": 400,
        f"/api/v1/rounds/{run_id}/miners?cursor={encode_cursor([1])}": 400,  # a timeline cursor
        f"/api/v1/rounds/{run_id}/miners/1/timeline?cursor={encode_cursor([True])}": 400,
        "/api/v1/rounds/x": 400,
        "/api/v1/rounds/999": 404,
        "/api/v1/rounds/999/miners": 404,
        "/api/v1/rounds/999/snapshot": 404,
        "/api/v1/weights/999": 404,
        "/api/v1/nothing": 404,
    }
    for path, status in cases.items():
        response = api.get(path)
        assert response.status_code == status, path
        assert set(response.json()) == {"error"}, path
    # Read-only: nothing but GET is routed.
    assert api.post(f"/api/v1/rounds/{run_id}/miners", content=b"{}").status_code == 405
    assert api.delete("/api/v1/rounds").status_code == 405


def test_receipts_answer_404_without_the_table_and_pages_with_it(api, database):
    """An older database without ``weather_score_receipts`` answers 404; with it, receipts page by id."""
    first, run_id = api.rounds
    score_receipts.drop(database.engine)
    try:
        response = api.get(f"/api/v1/rounds/{run_id}/miners/1/receipts")
        assert response.status_code == 404 and "receipts" in response.json()["error"]
        assert api.get("/api/v1/receipts/1").status_code == 404
    finally:
        score_receipts.create(database.engine)
    with database.engine.begin() as conn:
        for lead in (0, 24, 48):
            conn.execute(
                sa.insert(score_receipts).values(
                    run_id=run_id,
                    miner_uid=1,
                    miner_hotkey="hk1",
                    kind="day1" if lead == 0 else "era5",
                    lead_hours=lead,
                    scoring_profile="reference",
                    receipt_json=json.dumps({"lead": lead, "score": 0.5}, sort_keys=True, separators=(",", ":")),
                    receipt_sha256="ab" * 32,
                    signature="cd" * 64,
                    signer_ss58="5Validator",
                    created_at=NOW,
                )
            )
    items, pages = collect(api, f"/api/v1/rounds/{run_id}/miners/1/receipts", 2)
    assert [r["lead_hours"] for r in items] == [0, 24, 48] and pages == 2
    assert items[1]["receipt"] == {"score": 0.5, "lead": 24} and items[1]["created_at"] == NOW.isoformat()
    assert api.get(f"/api/v1/receipts/{items[0]['receipt_id']}").json()["kind"] == "day1"
    assert api.get("/api/v1/receipts/999999").status_code == 404
    assert api.get(f"/api/v1/rounds/{first}/miners/1/receipts").json() == {"items": [], "next_cursor": None}


def test_openapi_lists_every_api_route(api):
    schema = api.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    routed = {route.path for route in api.app.routes if route.path.startswith(("/api/", "/healthz"))}
    documented = {p.replace("{weight_set_id}", "{set_id}") for p in schema["paths"]} - {"/api/v1/weights/latest"}
    assert documented == routed
    assert api.get("/").headers["content-type"].startswith("text/html")
    assert "app.js" in api.get("/").text and api.get("/static/app.js").status_code == 200


def test_the_engine_is_read_only(db_url, database):
    seed(database.engine, range(1))
    engine = read_only_engine(db_url)
    try:
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.delete(forecast_stats))
    finally:
        engine.dispose()
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(forecast_stats)).scalar() == 1


def test_no_secret_in_any_response(tmp_path, pg_server):
    """Database URL and password, data dir and wallet paths: in no body or header, 500s included."""
    url = pg_server.create_database()
    secret_url = url.replace("postgres@", "postgres:Tr0ub4dor-pw@")  # trust auth: the password is never asked
    wallet = tmp_path / "wallets" / "validator-coldkey" / "hotkeys" / "default"
    settings = load_settings(
        data_dir=tmp_path / "secret-data-dir",
        database_url=secret_url,
        miners={"hotkey_file": str(wallet), "hotkey_seed": "11" * 32},
    )
    from weather_dagster.db.engine import Database

    database = Database(secret_url)
    run_id = seed(database.engine)[1]
    app = create_app(settings)
    paths = [route.path for route in app.routes if "{" not in route.path and route.path != "/static"]
    paths += [
        f"/api/v1/rounds/{run_id}",
        f"/api/v1/rounds/{run_id}/miners?limit=500",
        f"/api/v1/rounds/{run_id}/miners/3/timeline",
        f"/api/v1/rounds/{run_id}/miners/3/scores",
        f"/api/v1/rounds/{run_id}/miners/3/receipts",
        f"/api/v1/rounds/{run_id}/snapshot",
        "/api/v1/weights/latest",
        "/static/app.js",
    ]
    with TestClient(app, raise_server_exceptions=False) as client:
        responses = [client.get(path) for path in paths]
        with database.engine.begin() as conn:  # the next reads fail inside the database: a 500 each
            conn.execute(sa.text("DROP TABLE weather_forecast_stats"))
        failed = client.get(f"/api/v1/rounds/{run_id}/miners")
        assert failed.status_code == 500 and failed.json() == {"error": "internal error"}
        responses.append(failed)
    app.state.engine.dispose()
    database.dispose()
    pg_server.drop_database(url)
    assert all(r.status_code in (200, 404, 500) for r in responses)
    assert sum(r.status_code == 200 for r in responses) >= 12
    secrets = ["Tr0ub4dor", secret_url, url, str(pg_server.port), "secret-data-dir", "wallets", "validator-coldkey"]
    secrets += ["11" * 32, str(tmp_path)]
    for response in responses:
        text = response.text + json.dumps(dict(response.headers))
        for secret in secrets:
            assert secret not in text, (response.url, secret)

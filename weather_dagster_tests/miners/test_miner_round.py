"""A whole query / poll / freeze / open round against the demo fleet, one miner per behaviour."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from weather_dagster.core.errors import ManifestError
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.schema import forecast_runs, forecast_stats, forecast_steps, metadata, miner_responses, miners
from weather_dagster.db.steps import StepLog
from weather_dagster.miners.demo.behaviours import ALL_BEHAVIOURS, HOSTILE_BEHAVIOURS, PROTOCOL_BEHAVIOURS, Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import advance_round, create_round, run_until_settled, seed_miners
from weather_dagster.miners.metagraph import metagraph_from_settings
from weather_dagster.miners.opening import open_verified_forecast
from weather_dagster_tests.support.miners_support import VALIDATOR_SEED, fleet_config, validator_settings

B = Behaviour
# behaviour -> (final miner status, failure category)
EXPECTED: dict[Behaviour, tuple[str, str | None]] = {
    B.GOOD: ("forecast_ready", None),
    B.SLOW: ("forecast_ready", None),
    B.OFFLINE: ("failed", "connection"),
    B.FLAKY_5XX: ("forecast_ready", None),
    B.NEVER_COMPLETES: ("failed", "late"),  # polled until the freeze window closed
    B.FETCH_REJECTED: ("failed", "rejected"),
    B.WRONG_SHAPES: ("failed", "invalid_data"),
    B.WRONG_UNITS: ("failed", "invalid_data"),
    B.NAN_INJECTION: ("failed", "invalid_data"),
    B.EXTREME_VALUES: ("failed", "invalid_data"),
    B.GFS_COPY: ("forecast_ready", None),  # structurally fine: the clone penalty is scoring's job
    B.CHUNK_SWAPPED: ("failed", "manifest"),
    B.BAD_SIGNATURE: ("failed", "manifest"),
    B.WRONG_SIGNER: ("failed", "manifest"),
    B.HASH_CHANGED: ("failed", "manifest"),
    B.LATE: ("failed", "late"),
    B.OVERSIZED_METADATA: ("failed", "safety"),
    B.REDIRECT: ("failed", "safety"),
    B.SLOW_DRIP: ("failed", "safety"),
}
REASON_TEXT = {
    B.CHUNK_SWAPPED: "does not match the frozen manifest",
    B.BAD_SIGNATURE: "signature does not verify",
    B.WRONG_SIGNER: "wrong signer",
    B.HASH_CHANGED: "different manifest hash",
    B.LATE: "freeze window closed",
    B.OVERSIZED_METADATA: "exceeds the cap",
    B.REDIRECT: "redirect",
    B.SLOW_DRIP: "slow drip",
    B.WRONG_SHAPES: "grid",
    B.WRONG_UNITS: "units",
    B.NAN_INJECTION: "coverage",
    B.EXTREME_VALUES: "beyond",
}
SETTLED = {"forecast_ready", "failed", "cancelled"}
# The hostile and protocol classes of issue 10 have their own rounds (test_miner_hostile.py, test_miner_protocol.py).
ROSTER = [
    B.GOOD,
    *[b for b in ALL_BEHAVIOURS if b is not B.GOOD and b not in (*PROTOCOL_BEHAVIOURS, *HOSTILE_BEHAVIOURS)],
    B.GOOD,
]


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    with DemoFleet(fleet_config(ROSTER)) as running:
        yield running


@pytest.fixture
def round_env(fleet: DemoFleet, tmp_path: Path, db_url: str, database):
    metagraph = fleet.write_metagraph(tmp_path / "metagraph.json")
    settings = validator_settings(tmp_path, db_url, metagraph)
    fleet.late_released = False  # the fleet outlives each test; late miners start late again
    return settings, database.engine


def _start_round(settings, engine, init: datetime) -> int:
    run_id = create_round(engine, init, settings)
    steps = StepLog(engine, RetryPolicy.from_settings(settings))
    seed_miners(engine, steps, run_id, metagraph_from_settings(settings).snapshot())
    return run_id


def _responses(engine) -> dict[int, dict]:
    with engine.connect() as conn:
        return {r.miner_uid: dict(r._mapping) for r in conn.execute(sa.select(miner_responses))}


def test_round_against_every_behaviour(round_env, fleet: DemoFleet, caplog) -> None:
    settings, engine = round_env
    caplog.set_level(logging.DEBUG)
    run_id = _start_round(settings, engine, datetime(2026, 11, 20, tzinfo=UTC))
    keypair = validator_keypair(settings)
    # Phase 1, inside a generous freeze window: everyone but the two that never get ready settles.
    waiting = {ROSTER.index(B.NEVER_COMPLETES), ROSTER.index(B.LATE)}
    for _ in range(60):
        asyncio.run(run_until_settled(settings, engine, run_id, keypair, max_wait_s=0.5))
        if all(r["status"] in SETTLED for uid, r in _responses(engine).items() if uid not in waiting):
            break
    statuses = {uid: r["status"] for uid, r in _responses(engine).items()}
    assert all(statuses[uid] == "inference_running" for uid in waiting), statuses
    # Phase 2: the window closes (the round started long ago); the late miner is now done, too late.
    fleet.release_late()
    window = settings.miners.manifest_freeze_window_s
    with engine.begin() as conn:
        conn.execute(
            sa.update(forecast_runs)
            .where(forecast_runs.c.id == run_id)
            .values(run_initiation_time=datetime.now(UTC) - timedelta(seconds=window + 1))
        )
    assert asyncio.run(run_until_settled(settings, engine, run_id, keypair, max_wait_s=20))

    responses = _responses(engine)
    outcomes = {uid: (r["status"], r["failure_category"]) for uid, r in responses.items()}
    expected = {uid: EXPECTED[behaviour] for uid, behaviour in enumerate(ROSTER)}
    assert outcomes == expected
    for uid, behaviour in enumerate(ROSTER):
        if behaviour in REASON_TEXT:
            assert REASON_TEXT[behaviour] in responses[uid]["error_message"], (behaviour, responses[uid])
        if EXPECTED[behaviour][0] == "forecast_ready":
            assert responses[uid]["frozen_manifest"] is not None
            assert responses[uid]["manifest_frozen_at"] is not None

    with engine.connect() as conn:
        steps = [dict(r._mapping) for r in conn.execute(sa.select(forecast_steps))]
        stats = {r.miner_uid: dict(r._mapping) for r in conn.execute(sa.select(forecast_stats))}
    # Good miners are unaffected by bad ones: first-attempt successes, nothing failed or retried.
    for uid in (0, len(ROSTER) - 1):
        mine = [s for s in steps if s["miner_uid"] == uid]
        assert {s["step_name"] for s in mine} == {"query", "poll", "manifest"}
        assert all(s["status"] == "succeeded" and s["error_json"] is None for s in mine)
        assert stats[uid]["forecast_status"] == "forecast_ready"
        assert stats[uid]["hosting_status"] == "ok"
    # Each failure is recorded on its own miner, with a sanitized error in the step log and stats.
    for uid, behaviour in enumerate(ROSTER):
        if EXPECTED[behaviour][0] == "failed":
            failed = [s for s in steps if s["miner_uid"] == uid and s["status"] == "failed"]
            assert len(failed) == 1 and failed[0]["error_json"]["message"]
            assert stats[uid]["forecast_status"] == "failed"
            assert stats[uid]["last_error_message"]
    # The offline miner used all its query attempts; the flaky one needed a retry.
    offline = ROSTER.index(B.OFFLINE)
    query = {s["miner_uid"]: s for s in steps if s["step_name"] == "query"}
    assert query[offline]["retry_count"] == settings.retry.query_max_attempts
    assert query[ROSTER.index(B.FLAKY_5XX)]["retry_count"] == 1

    # No token or key the fleet issued (nor the validator seed) reached a table or a log line.
    secrets = [*fleet.issued_tokens(), VALIDATOR_SEED]
    assert len(secrets) > len(ROSTER)
    dump = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            dump += [json.dumps(dict(r._mapping), default=str) for r in conn.execute(sa.select(table))]
    haystack = "\n".join(dump) + "\n" + caplog.text
    for secret in secrets:
        assert secret not in haystack
        for part in secret.split("."):  # each JWT segment on its own
            assert len(part) < 20 or part not in haystack

    # A chunk swapped after the freeze fails that forecast at read time, even for a good store.
    good = open_verified_forecast(settings, engine, run_id, 0, responses[0]["miner_hotkey"])
    try:
        field = good.field("t", 500, 24)
        assert field.shape == good.grid.shape and str(field.dtype) == "float32"
        good.store._files["2t/1.0.0"] = good.store._files["2t/2.0.0"]  # a frozen hash that no longer matches
        with pytest.raises(ManifestError, match="does not match the frozen manifest"):
            good.field("2t", None, 12)
        with pytest.raises(ManifestError, match="not in the frozen manifest"):
            good.store.read_verified("2t/99.0.0")
        del good.store._files["t/1.0.0.0"]  # an unlisted chunk must not read as fill values
        with pytest.raises(ManifestError, match="not in the frozen manifest"):
            good.field("t", 50, 12)
    finally:
        good.close()


def test_hotkey_change_cancels_that_miner_and_keeps_history(round_env, fleet: DemoFleet) -> None:
    settings, engine = round_env
    run_id = _start_round(settings, engine, datetime(2026, 11, 21, tzinfo=UTC))
    keypair = validator_keypair(settings)
    # Query only the first two good-ish miners, then re-register uid 1 under a new hotkey.
    asyncio.run(advance_round(settings, engine, run_id, keypair, uids=[0, 1]))
    old_hotkey = _responses(engine)[1]["miner_hotkey"]
    # The next metagraph snapshot shows uid 1 re-registered; re-seeding the round records it.
    snapshot = metagraph_from_settings(settings).snapshot()
    snapshot[1] = snapshot[1].model_copy(update={"hotkey": "5NewHotkeyAfterReRegistration"})
    seed_miners(engine, StepLog(engine, RetryPolicy.from_settings(settings)), run_id, snapshot)
    with engine.connect() as conn:
        assert conn.execute(sa.select(miners.c.hotkey).where(miners.c.uid == 1)).scalar() == snapshot[1].hotkey
    assert asyncio.run(run_until_settled(settings, engine, run_id, keypair, max_wait_s=20, uids=[0, 1]))
    responses = _responses(engine)
    assert responses[1]["status"] == "cancelled" and responses[1]["failure_category"] == "hotkey_changed"
    assert responses[1]["miner_hotkey"] == old_hotkey  # history kept under the old (uid, hotkey)
    with engine.connect() as conn:  # and no second thread for the new hotkey in this round
        assert conn.execute(sa.select(sa.func.count()).select_from(miner_responses)).scalar() == len(ROSTER)
    assert responses[0]["status"] == "forecast_ready"
    with engine.connect() as conn:
        kept = conn.execute(
            sa.select(sa.func.count()).select_from(forecast_steps).where(forecast_steps.c.miner_uid == 1)
        ).scalar()
    assert kept >= 2


def test_poll_budget_exhausted_before_the_window_is_not_ready(fleet, tmp_path, db_url, database) -> None:
    metagraph = fleet.write_metagraph(tmp_path / "metagraph.json")
    settings = validator_settings(tmp_path, db_url, metagraph, manifest_freeze_window_s=600.0)
    settings = settings.model_copy(update={"retry": settings.retry.model_copy(update={"poll_max_attempts": 3})})
    engine = database.engine
    run_id = _start_round(settings, engine, datetime(2026, 11, 22, tzinfo=UTC))
    uid = ROSTER.index(B.NEVER_COMPLETES)
    keypair = validator_keypair(settings)
    assert asyncio.run(run_until_settled(settings, engine, run_id, keypair, max_wait_s=20, uids=[uid]))
    response = _responses(engine)[uid]
    assert (response["status"], response["failure_category"]) == ("failed", "not_ready")
    assert "after 3 polls" in response["error_message"]


def test_freeze_never_overwrites(round_env) -> None:
    from weather_dagster.miners.manifest import freeze

    settings, engine = round_env
    run_id = create_round(engine, datetime(2026, 11, 23, tzinfo=UTC), settings)
    from weather_dagster_tests.support.helpers import make_response

    make_response(engine, run_id, 5, "hk5")
    kwargs = {"run_id": run_id, "miner_uid": 5, "miner_hotkey": "hk5", "store_url": "u", "window_s": 60.0}
    freeze(engine, manifest={"files": {"a": "1"}}, verification_hash="a" * 64, **kwargs)
    freeze(engine, manifest={"files": {"a": "1"}}, verification_hash="a" * 64, **kwargs)  # same hash: no-op
    with pytest.raises(ManifestError, match="different manifest hash"):
        freeze(engine, manifest={"files": {"b": "2"}}, verification_hash="b" * 64, **kwargs)
    late = {**kwargs, "miner_uid": 6, "miner_hotkey": "hk6"}
    make_response(engine, run_id, 6, "hk6")
    with pytest.raises(ManifestError, match="freeze window closed"):
        freeze(engine, manifest={}, verification_hash="c" * 64, now=datetime.now(UTC) + timedelta(hours=1), **late)
    assert _responses(engine)[5]["frozen_manifest"] == {"files": {"a": "1"}}

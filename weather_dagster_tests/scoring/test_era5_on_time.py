"""ERA5 on time: a round whose truth is late from ARCO and on time from the CDS, and the round expiry
that waits for late truth up to a limit, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from weather_dagster.core.states import MinerForecastStatus, RoundStatus, StepName, StepStatus
from weather_dagster.db.schema import forecast_steps, miner_responses, miner_scores
from weather_dagster.db.steps import StepKey
from weather_dagster.orchestration.due import RunKind, due_work
from weather_dagster.orchestration.readiness import round_expires_at
from weather_dagster.orchestration.rounds import complete_round, sync_round_status
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.scoring.service import run_day1, run_era5
from weather_dagster.settings import load_settings
from weather_dagster.work.forecasts import set_miner_status
from weather_dagster_tests.support.cds_support import two_sources
from weather_dagster_tests.support.helpers import INIT, make_response, make_round
from weather_dagster_tests.support.synthetic_scoring import MinerProfile, SyntheticScoringInputs

_M = MinerForecastStatus
GRID = Grid(5.0)
ROUND_INIT = datetime(2025, 6, 1, tzinfo=UTC)
LEADS = tuple(range(24, 241, 24))


class TruthFromSources(SyntheticScoringInputs):
    """Synthetic miners and climatology; ERA5 truth from the real adapters (ARCO Zarr, CDS API)."""

    def __init__(self, reference: ReferenceData, **kwargs) -> None:
        super().__init__(GRID, **kwargs)
        self.reference = reference

    def truth(self, kind, init_time):
        return self.reference.era5() if kind == "era5" else super().truth(kind, init_time)


def test_round_with_era5_late_from_arco_and_on_time_from_cds(tmp_path, db_url, database, steps) -> None:
    """ARCO has published truth only for leads 24 h and 48 h; the CDS has all ten. Every lead is
    scored and each lead's step records which source its truth came from."""
    engine = database.engine
    arco_until, cds_until = ROUND_INIT + timedelta(days=2), ROUND_INIT + timedelta(days=10)
    with two_sources(tmp_path / "src", GRID, ROUND_INIT, 10, arco_until, cds_until) as src:
        src.cds.state.accepted_polls = 0  # each job done at its first status poll (the client sleeps 1 s per poll)
        settings = load_settings(
            data_dir=tmp_path / "data", database_url=db_url, test_mode=True, reference=src.reference()
        )
        now = ROUND_INIT + timedelta(days=11, hours=1)  # test mode: truth due at the valid time itself
        reference = ReferenceData(settings, clock=lambda: now)
        inputs = TruthFromSources(reference, profiles={1: MinerProfile(seed=1), 2: MinerProfile(seed=2)})
        run_id = make_round(engine, ROUND_INIT, RoundStatus.QUERYING_MINERS)
        for uid in (1, 2):
            make_response(engine, run_id, uid, f"hk{uid}")
            inputs.register(run_id, uid, f"hk{uid}", ROUND_INIT)
        with engine.begin() as conn:
            conn.execute(sa.update(miner_responses).values(status=_M.FORECAST_READY.value))
        for uid in (1, 2):
            assert run_day1(engine, steps, settings, inputs, run_id, uid, now=now).status == "scored"
        # The one readiness rule, with the ordered sources as its probe: every lead is ready.
        [work] = due_work(engine, settings, now, reference.era5_available)
        assert sorted({item.lead_hours for item in work.items[RunKind.ERA5]}) == list(LEADS)
        for uid in (1, 2):
            outcome = run_era5(engine, steps, settings, inputs, run_id, uid, now=now)
            assert outcome.leads == dict.fromkeys(LEADS, "done")
        cds_jobs = len(src.cds.state.retrieved())
    assert cds_jobs == 2 * 8  # two datasets for each of the 8 valid times ARCO lacked, once for both miners
    s = forecast_steps.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(s.miner_uid, s.lead_hours, s.status, s.context).where(s.step_name == StepName.ERA5.value)
        ).all()
        scores = conn.execute(
            sa.select(miner_scores.c.miner_uid, miner_scores.c.lead_hours, miner_scores.c.score).where(
                miner_scores.c.score_type == "era5", miner_scores.c.variable == ""
            )
        ).all()
        assert sync_round_status(conn, run_id, settings, now) is RoundStatus.AWAITING_ERA5
        assert complete_round(conn, run_id, settings, now) is RoundStatus.COMPLETED
    assert len(rows) == 20 and all(r.status == StepStatus.SUCCEEDED.value for r in rows)
    source = {(r.miner_uid, r.lead_hours): r.context["truth_source"] for r in rows}
    assert source == {(uid, lead): "arco" if lead <= 48 else "cds" for uid in (1, 2) for lead in LEADS}
    assert len(scores) == 20 and all(0.0 < r.score <= 1.0 for r in scores)
    # The key reached neither the database nor the settings' printed form.
    with engine.connect() as conn:
        dump = " ".join(str(tuple(row)) for t in (forecast_steps, miner_scores) for row in conn.execute(sa.select(t)))
    assert src.key not in dump and src.key not in repr(settings)


def _day1_scored(engine, run_id: int, uid: int) -> None:
    make_response(engine, run_id, uid, f"hk{uid}")
    with engine.begin() as conn:
        for status in (_M.FORECAST_READY, _M.DAY1_SCORING, _M.DAY1_SCORED):
            set_miner_status(conn, run_id, uid, f"hk{uid}", status)


def test_expiry_waits_for_late_truth_up_to_the_limit_then_records_leads_without_truth(database, steps) -> None:
    settings = load_settings(round={"truth_late_limit_hours": 72})
    engine = database.engine
    run_id = make_round(engine, status=RoundStatus.AWAITING_ERA5)
    _day1_scored(engine, run_id, 1)
    # Leads 24..216 scored; 240 waits for truth (due at init + 240 h + 126 h = init + 15.25 d).
    for lead in LEADS[:-1]:
        key = StepKey(run_id, 1, "hk1", StepName.ERA5, lead_hours=lead)
        steps.start(key, now=INIT)
        steps.succeed(key, now=INIT)
    waiting = StepKey(run_id, 1, "hk1", StepName.ERA5, lead_hours=240)
    steps.start(waiting, now=INIT)
    steps.wait_for_truth(waiting, next_check_time=INIT + timedelta(days=16))
    expires = INIT + timedelta(hours=240 + 126 + 72)
    assert round_expires_at(INIT, [240], settings) == expires
    assert round_expires_at(INIT, [], settings) == INIT + timedelta(days=16)
    with engine.begin() as conn:
        # Past the plain 16-day window the round stays open: its last lead is only late.
        assert (
            sync_round_status(conn, run_id, settings, INIT + timedelta(days=16, hours=1)) is RoundStatus.AWAITING_ERA5
        )
        assert sync_round_status(conn, run_id, settings, expires + timedelta(minutes=1)) is RoundStatus.EXPIRED
    rows = {r.lead_hours: r for r in _era5_steps(engine, run_id)}
    assert rows[240].status == StepStatus.FAILED.value
    assert rows[240].error_json["category"] == "truth_never_arrived"
    assert "ERA5 at 2026-11-30T00Z" in rows[240].error_json["message"]
    assert all(rows[lead].status == StepStatus.SUCCEEDED.value for lead in LEADS[:-1])  # earlier leads kept


@pytest.mark.parametrize("limit_hours", [0.0, 24.0])
def test_leads_that_never_started_are_recorded_at_expiry_too(database, limit_hours) -> None:
    """ARCO stalled for the whole round: no ERA5 step was ever created; expiry records all ten."""
    settings = load_settings(round={"truth_late_limit_hours": limit_hours})
    engine = database.engine
    run_id = make_round(engine, status=RoundStatus.AWAITING_ERA5)
    _day1_scored(engine, run_id, 1)
    make_response(engine, run_id, 2, "hk2")  # still querying: not waiting for truth, nothing recorded
    expires = round_expires_at(INIT, LEADS, settings)
    assert expires == max(INIT + timedelta(days=16), INIT + timedelta(hours=240 + 126 + limit_hours))
    with engine.begin() as conn:
        assert sync_round_status(conn, run_id, settings, expires - timedelta(minutes=1)) is not RoundStatus.EXPIRED
        assert sync_round_status(conn, run_id, settings, expires + timedelta(minutes=1)) is RoundStatus.EXPIRED
    rows = _era5_steps(engine, run_id)
    assert sorted(r.lead_hours for r in rows) == list(LEADS)
    assert {(r.miner_uid, r.status, r.error_json["category"]) for r in rows} == {
        (1, StepStatus.FAILED.value, "truth_never_arrived")
    }


def _era5_steps(engine, run_id: int):
    s = forecast_steps.c
    with engine.connect() as conn:
        return conn.execute(
            sa.select(forecast_steps).where(s.run_id == run_id, s.step_name == StepName.ERA5.value)
        ).all()

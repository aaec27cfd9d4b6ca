"""ERA5 scoring of a batch of miners, field-major (the batches themselves: ``orchestration.batching``).

``run_era5`` scores one miner at a time, so every truth and climatology field is read once per
miner. :func:`run_era5_batch` does the same state checks, step-log writes and score writes per
miner, but scores each lead for all of the batch's miners at once through
``score_era5_lead_many``: each truth and climatology field is read once for the whole batch, then
each miner's field is read, scored and dropped. Memory is bounded by one field per miner in flight
(plus the one chunk each verified store reads ahead), whatever the batch size.

Each miner's outcome is its own, as with ``run_era5``: an error reading one miner's store ends
only that miner's lead (recorded in its step row); a truth error is recorded for every miner that
needed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from weather_dagster import work
from weather_dagster.core.errors import InvalidDataError, TruthNotAvailable
from weather_dagster.core.states import MinerForecastStatus, StepName
from weather_dagster.db.steps import StepLog
from weather_dagster.db.types import utcnow
from weather_dagster.reference.interfaces import ForecastSource
from weather_dagster.scoring.era5 import SCORED, score_era5_lead_many
from weather_dagster.scoring.fanout import scoring_threads
from weather_dagster.scoring.inputs import ScoringInputs
from weather_dagster.scoring.service import (
    Outcome,
    _begin_lead,
    _forecast,
    _record_error,
    era5_truth_sources,
    find_response,
    lead_state,
    per_variable_of,
    record_era5_lead,
)
from weather_dagster.scoring.store import ResponseKey, read_rollup
from weather_dagster.settings import Settings
from weather_dagster.work.keys import StepKey

_M = MinerForecastStatus
ERA5_READY = (_M.DAY1_SCORED.value, _M.ERA5_SCORING.value, _M.ERA5_SCORED.value)


class _IsolatedForecast:
    """A miner's forecast whose unexpected read errors are kept, and reported to scoring as invalid data.

    Scoring then stops reading this miner, as for a rejected forecast; the batch turns the kept
    ``error`` back into that miner's own outcome (retry, waiting, failed), as ``run_era5`` would.
    """

    def __init__(self, source: ForecastSource) -> None:
        self.source = source
        self.error: Exception | None = None

    @property
    def grid(self):
        return self.source.grid

    def field(self, variable: str, level_hpa: int | None, lead_hours: int) -> np.ndarray:
        try:
            return self.source.field(variable, level_hpa, lead_hours)
        except InvalidDataError:
            raise
        except Exception as exc:
            self.error = exc
            raise InvalidDataError(f"{variable} at {lead_hours}h: read failed") from exc


@dataclass
class _Miner:
    key: ResponseKey
    init: datetime
    outcome: Outcome
    forecast: ForecastSource | None = None
    error: Exception | None = None  # raised out of this miner's scoring: ends it, re-raised to the caller


def _open_lead(
    engine: sa.Engine, steps: StepLog, settings: Settings, miner: _Miner, lead: int, dagster_run_id, now
) -> tuple[StepKey, int] | None:
    """The step to score now for this miner and lead (started), or None: ``run_era5``'s rule, shared."""
    with engine.begin() as conn:
        skipped, attempt = _begin_lead(conn, steps, settings, miner.key, miner.init, lead, now, dagster_run_id)
    if skipped is not None:
        miner.outcome.leads[lead] = skipped
        return None
    step = StepKey(miner.key.run_id, miner.key.miner_uid, miner.key.miner_hotkey, StepName.ERA5, lead_hours=lead)
    return step, attempt


def _fail_step(steps: StepLog, engine: sa.Engine, miner: _Miner, lead: int, step: StepKey, attempt: int, exc, now):
    """``run_era5``'s handling of an exception while scoring one lead, in the step's own transaction."""
    with engine.begin() as conn:
        decision = _record_error(conn, steps, step, exc, attempt, now, final=False)
    if isinstance(exc, TruthNotAvailable | InvalidDataError):
        miner.outcome.leads[lead] = decision
        return
    miner.error = exc  # retry_scheduled (or failed past max attempts), and re-raised to the caller


def _record_lead(
    engine: sa.Engine, steps: StepLog, settings: Settings, miner: _Miner, lead: int, work_item, result, now
):
    _step, attempt, latency_ms, truth_and_digests = work_item
    with engine.begin() as conn:
        miner.outcome.rollup = record_era5_lead(
            conn, steps, settings, miner.key, miner.init, (lead, attempt, latency_ms), result, truth_and_digests, now
        )
    miner.outcome.leads[lead] = lead_state(result)
    if result.status == SCORED:
        miner.outcome.per_variable = per_variable_of(result)


def _score_lead(engine, steps, settings, inputs, run_id, miners: dict[int, _Miner], lead, dagster_run_id, now) -> None:
    """One lead for every miner of the batch it is due for: open, score field-major, record."""
    opened: dict[int, tuple[StepKey, int]] = {}
    for uid, miner in miners.items():
        if miner.error is None:
            started = _open_lead(engine, steps, settings, miner, lead, dagster_run_id, now)
            if started is not None:
                opened[uid] = started
    sources: dict[int, _IsolatedForecast] = {}
    for uid, (step, attempt) in opened.items():
        miner = miners[uid]
        try:
            miner.forecast = miner.forecast or inputs.forecast(run_id, uid, miner.key.miner_hotkey)
        except Exception as exc:
            _fail_step(steps, engine, miner, lead, step, attempt, exc, now)
            continue
        sources[uid] = _IsolatedForecast(miner.forecast)
    if not sources:
        return
    init = next(iter(miners.values())).init  # one round: one init time
    started = time.perf_counter()
    try:
        truth, climatology, digests = era5_truth_sources(inputs, init)  # one digest per field for the batch
        threads = scoring_threads(settings)
        results = score_era5_lead_many(sources, truth, climatology, init, lead, settings.scoring, threads=threads)
    except Exception as exc:  # the truth (or climatology) failed: the same for every miner that needed it
        for uid in sources:
            _fail_step(steps, engine, miners[uid], lead, *opened[uid], exc, now)
        return
    latency_ms = (time.perf_counter() - started) * 1e3 / len(sources)  # each miner's share of the batch
    for uid, result in results.items():
        miner, (step, attempt) = miners[uid], opened[uid]
        if sources[uid].error is not None:
            _fail_step(steps, engine, miner, lead, step, attempt, sources[uid].error, now)
            continue
        try:
            _record_lead(
                engine, steps, settings, miner, lead, (step, attempt, latency_ms, (truth, digests)), result, now
            )
        except Exception as exc:  # the database: the step stays in progress and the run fails (score_batch)
            miner.error = exc


def run_era5_batch(
    engine: sa.Engine,
    steps: StepLog,
    settings: Settings,
    inputs: ScoringInputs,
    run_id: int,
    uids: Sequence[int],
    *,
    dagster_run_id: str | None = None,
    now: datetime | None = None,
) -> dict[int, Outcome | Exception]:
    """``run_era5`` for every uid, field-major; per uid its Outcome, or the exception ``run_era5`` would raise."""
    now = now or utcnow()
    outcomes: dict[int, Outcome | Exception] = {}
    miners: dict[int, _Miner] = {}
    for uid in uids:
        try:
            with engine.connect() as conn:
                found = find_response(conn, run_id, uid)
        except Exception as exc:
            outcomes[uid] = exc
            continue
        if found is None:
            outcomes[uid] = Outcome(None, "skipped", "no live response for this miner in this round")
            continue
        key, status, init = found
        if status not in ERA5_READY:
            outcomes[uid] = Outcome(key, "skipped", f"forecast is {status}: ERA5 scoring starts after Day1")
            continue
        miners[uid] = _Miner(key, init, Outcome(key, "scored"))
    for lead in settings.scoring.era5_lead_hours:
        _score_lead(engine, steps, settings, inputs, run_id, miners, lead, dagster_run_id, now)
    for uid, miner in miners.items():
        if miner.error is not None:
            outcomes[uid] = miner.error
            continue
        try:
            with engine.begin() as conn:
                if all(state in ("done", "failed", "rejected") for state in miner.outcome.leads.values()):
                    work.set_miner_status(conn, *_forecast(miner.key), _M.ERA5_SCORED, now=now, era5_scored_at=now)
                miner.outcome.rollup = read_rollup(conn, miner.key.response_id, settings.scoring)
        except Exception as exc:
            outcomes[uid] = exc
            continue
        outcomes[uid] = miner.outcome
    return {uid: outcomes[uid] for uid in uids if uid in outcomes}


def era5_batch_scorer(
    engine: sa.Engine,
    steps: StepLog,
    settings: Settings,
    inputs: ScoringInputs,
    run_id: int,
    uids: Sequence[int],
    *,
    dagster_run_id: str | None = None,
) -> Callable[..., Outcome]:
    """A drop-in for ``run_era5`` in a per-uid loop: the first call scores the whole batch.

    Later calls return (or raise) each uid's own result, so the caller's per-miner accounting,
    logging and materializations stay as they are; the batch's CPU falls in the first call.
    """
    results: dict[int, Outcome | Exception] | None = None

    def scorer(_engine, _steps, _settings, _inputs, _run_id, uid: int, **_kwargs) -> Outcome:
        nonlocal results
        if results is None:
            results = run_era5_batch(engine, steps, settings, inputs, run_id, uids, dagster_run_id=dagster_run_id)
        result = results.get(uid)
        if result is None:  # not in the batch the scorer was made for: score it on its own terms
            result = run_era5_batch(engine, steps, settings, inputs, run_id, [uid], dagster_run_id=dagster_run_id)[uid]
        if isinstance(result, Exception):
            raise result
        return result

    return scorer

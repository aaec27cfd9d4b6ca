"""One pass over a round's due miner steps: claim, then query / poll / fetch + freeze the manifest.

``RoundWorker`` claims the due steps of a round (``work.claim``), runs each concurrently (bounded by
``settings.miners.http_concurrency`` in flight) and records each miner's outcome on its own, with the
retry policy of SPEC section 5, through the work layer. A step that must wait writes
``retry_scheduled`` with its next time and returns: nothing sleeps in here. The drivers that call it
live in ``miners.lifecycle``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from datetime import datetime

import httpx
import sqlalchemy as sa

from weather_dagster import work
from weather_dagster.core.errors import (
    InvalidDataError,
    ManifestError,
    MinerJobFailed,
    MinerNotReady,
    MinerRejected,
    SafetyViolation,
    WeatherError,
    sanitize_error,
)
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import FORECAST_CLOSED_VALUES, MinerForecastStatus, StepName
from weather_dagster.db.schema import forecast_runs, forecast_stats, forecast_steps, miner_responses
from weather_dagster.db.types import utcnow
from weather_dagster.miners import protocol
from weather_dagster.miners.answers import check_kerchunk_ready, unreachable_state
from weather_dagster.miners.duplicates import check_job_id, note_same_manifest
from weather_dagster.miners.fiber_client import FiberClient, MinerProtocolError
from weather_dagster.miners.manifest import (
    MANIFEST_KEY,
    SIGNATURE_KEY,
    check_freeze_window,
    freeze,
    verify_manifest,
)
from weather_dagster.miners.metagraph import MinerInfo, registered
from weather_dagster.miners.opening import load_frozen, open_frozen_async, probe
from weather_dagster.miners.perimeter import check_store_url
from weather_dagster.miners.seeding import MINER_STEPS
from weather_dagster.settings import Settings
from weather_dagster.work.due import ClaimedStep
from weather_dagster.work.forecasts import forecast_row
from weather_dagster.work.keys import StepKey

_M = MinerForecastStatus
log = logging.getLogger(__name__)


class ForecastNotReady(MinerNotReady):
    """The miner still says "running" (or cannot be reached) at a poll: retried on the poll schedule
    by the retry policy, failed once the polls are used up."""

    category = "not_ready"


class HotkeyChanged(WeatherError):
    category = "hotkey_changed"


class RoundWorker:
    """State for one pass: settings, the retry policy, one client and the in-flight bound.

    Every outcome of a step is written in one transaction with the forecast status it moves (the work
    layer's operations on one connection). Two outcomes are split on purpose: a query commits the
    job id before the duplicate check (``miners.duplicates`` needs it committed), and a manifest is
    frozen (``miners.manifest.freeze``) before the store is opened.
    """

    def __init__(
        self, settings: Settings, engine: sa.Engine, client: FiberClient, *, dagster_run_id: str | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        self.policy = RetryPolicy.from_settings(settings)
        self.dagster_run_id = dagster_run_id
        self.slots = asyncio.Semaphore(settings.miners.http_concurrency)

    async def advance(self, run_id: int, uids: Iterable[int] | None = None) -> int:
        """Run every step due now, all at once (bounded), and wait for them: one batched pass."""
        tasks = self.spawn_due(run_id, uids, running={})
        await asyncio.gather(*tasks.values())
        return len(tasks)

    def spawn_due(
        self, run_id: int, uids: Iterable[int] | None, running: dict[int, asyncio.Task]
    ) -> dict[int, asyncio.Task]:
        """Claim and start a task for each due step not already running; returns the new tasks by step id."""
        # Claimed atomically: a concurrent pass (another run, a UI materialization) never gets the same step.
        s = forecast_steps.c
        where = sa.and_(s.run_id == run_id, s.step_name.in_([str(n) for n in MINER_STEPS]), s.id.not_in(list(running)))
        if uids is not None:
            where = sa.and_(where, s.miner_uid.in_(list(uids)))
        with self.engine.begin() as conn:
            claimed = work.claim(
                conn,
                self.policy,
                where=where,
                worker_id=self.dagster_run_id or f"pid-{os.getpid()}",
                lease_s=self.settings.retry.step_lease_s,
                dagster_run_id=self.dagster_run_id,
            )
            if not claimed:
                return {}
            round_row = conn.execute(sa.select(forecast_runs).where(forecast_runs.c.id == run_id)).one()
            forecasts = {
                (f.miner_uid, f.miner_hotkey): f
                for f in conn.execute(sa.select(miner_responses).where(miner_responses.c.run_id == run_id))
            }
        current = registered(self.engine)
        return {
            step.id: asyncio.create_task(
                self._guarded(step, round_row, forecasts.get((step.key.miner_uid, step.key.miner_hotkey)), current)
            )
            for step in claimed
        }

    async def _guarded(
        self, step: ClaimedStep, round_row: sa.Row, forecast: sa.Row | None, current: dict[int, MinerInfo]
    ) -> None:
        async with self.slots:
            await self._run_step(step, round_row, forecast, current)

    async def _run_step(
        self, step: ClaimedStep, round_row: sa.Row, forecast: sa.Row | None, current: dict[int, MinerInfo]
    ) -> None:
        key, attempt = step.key, step.attempt
        status = forecast.status if forecast is not None else None
        info = current.get(key.miner_uid)
        if status in FORECAST_CLOSED_VALUES:
            with self.engine.begin() as conn:
                work.fail(conn, self.policy, key, f"miner forecast already {status}", attempt=attempt)
            return
        if info is None or info.hotkey != key.miner_hotkey:
            error = HotkeyChanged("miner deregistered or its hotkey changed: thread cancelled, history kept")
            with self.engine.begin() as conn:
                work.cancel(conn, self.policy, key, error, attempt=attempt)
            return
        started = time.perf_counter()
        try:
            handler = {StepName.QUERY: self._query, StepName.POLL: self._poll, StepName.MANIFEST: self._manifest}
            await handler[key.step_name](step, info, round_row, forecast, started)
        except Exception as exc:  # every failure is recorded on this miner alone
            with self.engine.begin() as conn:
                self._record_failure(conn, step, exc)

    def _record_failure(self, conn: sa.Connection, step: ClaimedStep, exc: BaseException) -> None:
        """The policy's decision for this attempt, and the forecast failed with it when it is final."""
        key = step.key
        decision = work.record_failure(
            conn,
            self.policy,
            key,
            exc,
            attempt=step.attempt,
            timeouts_so_far=step.timeouts_so_far,
            fail_forecast=True,
        )
        log.info(
            "run %s uid %s %s attempt %s: %s (%s) -> %s",
            key.run_id,
            key.miner_uid,
            key.step_name,
            step.attempt,
            sanitize_error(exc)["message"][:200],
            decision.error_class,
            decision.status,
        )

    def _timeout(self, base: float, step: ClaimedStep) -> float:
        """The call's timeout, doubled for each timed-out attempt the step row stores (capped)."""
        return self.policy.timeout_for(base, step.timeouts_so_far)

    # -- steps ------------------------------------------------------------------------------------------

    async def _query(self, step, info, round_row, forecast, started) -> None:
        key = step.key
        payload = protocol.initiate_fetch_payload(
            round_row.gfs_init_time_utc, round_row.previous_step_time_utc, self.client.keypair.ss58_address, info.hotkey
        )
        timeout = self._timeout(self.settings.retry.initiate_fetch_timeout_s, step)
        answer = await self.client.initiate_fetch(info.address, payload, timeout)
        if answer.status == protocol.FETCH_REJECTED:
            raise MinerRejected(f"miner refused the job: {answer.message or 'fetch_rejected'}")
        if answer.status not in (protocol.FETCH_ACCEPTED, protocol.FETCH_COMPLETED) or not answer.job_id:
            raise MinerProtocolError(protocol.INITIATE_FETCH_PATH, f"initiate-fetch answered {answer.status!r}")
        now = utcnow()
        with self.engine.begin() as conn:  # committed first: the duplicate check compares committed job ids
            work.set_miner_status(
                conn, *_forecast_key(key), _M.FETCH_INITIATED, now=now, job_id=answer.job_id, response_time=now
            )
        context: dict = {"status": answer.status}
        if shared := check_job_id(self.engine, key, answer.job_id):  # raises on the later uids
            context["duplicate_job_id_uids"] = shared
        with self.engine.begin() as conn:
            work.succeed(conn, self.policy, key, attempt=step.attempt, latency_ms=_ms(started), context=context)
            if answer.status == protocol.FETCH_COMPLETED:  # fast path: no polling
                work.ensure_pending(conn, key.sibling(StepName.MANIFEST), due_at=now)
            else:
                work.ensure_pending(conn, key.sibling(StepName.POLL), due_at=self.policy.first_poll_time(now))

    async def _poll(self, step, info, round_row, forecast, started) -> None:
        key = step.key
        job_id = _job_id(forecast)
        cause: BaseException | None = None
        try:
            answer = await self.client.poll(
                info.address, job_id, self._timeout(self.settings.retry.poll_timeout_s, step)
            )
            state = answer.status
        except SafetyViolation:
            raise
        except (httpx.HTTPError, MinerProtocolError, InvalidDataError, OSError) as exc:
            state, cause = unreachable_state(exc), exc  # SPEC: anything else, keep polling (the reference does too)
        # Past the freeze window a forecast can no longer be frozen, whatever the miner says now.
        check_freeze_window(self.engine, key.run_id, self.settings.miners.manifest_freeze_window_s)
        if state in protocol.POLL_FAILED:
            raise MinerJobFailed(f"miner reports its job {state}")
        with self.engine.begin() as conn:
            if state in protocol.POLL_DONE:
                now = utcnow()
                _mark_inference(conn, key, forecast.status, completed=now)
                work.succeed(
                    conn, self.policy, key, attempt=step.attempt, latency_ms=_ms(started), context={"status": state}
                )
                work.ensure_pending(conn, key.sibling(StepName.MANIFEST), due_at=now)
                return
            if state in protocol.POLL_RUNNING:
                _mark_inference(conn, key, forecast.status)
            # Not ready: the retry policy schedules the next poll, or fails the forecast when polls are used up.
            # A poll that timed out is the cause, so the next poll's timeout doubles (RetryPolicy.timeout_for).
            error = ForecastNotReady(f"forecast not ready: still {state!r} after {step.attempt} polls")
            error.__cause__ = cause
            self._record_failure(conn, step, error)

    async def _manifest(self, step, info, round_row, forecast, started) -> None:
        settings, client, key = self.settings, self.client, step.key
        job_id = _job_id(forecast)
        if forecast.manifest_frozen_at is None:
            check_freeze_window(self.engine, key.run_id, settings.miners.manifest_freeze_window_s)
            timeout = self._timeout(settings.retry.kerchunk_timeout_s, step)
            answer = await client.kerchunk(info.address, job_id, timeout)
            check_kerchunk_ready(answer)
            root = check_store_url(answer.zarr_store_url, info.ip, info.port, settings)
            read = {"token": answer.access_token, "timeout_s": timeout}
            manifest_bytes = await client.get_store_file(
                root, MANIFEST_KEY, max_bytes=settings.miners.max_metadata_bytes, **read
            )
            signature = await client.get_store_file(root, SIGNATURE_KEY, max_bytes=4096, **read)
            manifest = verify_manifest(
                manifest_bytes,
                signature,
                answer.verification_hash,
                info.hotkey,
                max_keys=settings.miners.max_store_keys,
            )
            freeze(
                self.engine,
                run_id=key.run_id,
                miner_uid=key.miner_uid,
                miner_hotkey=key.miner_hotkey,
                manifest=manifest,
                verification_hash=answer.verification_hash.lower(),
                store_url=root,
                window_s=settings.miners.manifest_freeze_window_s,
            )
        frozen = load_frozen(self.engine, key.run_id, key.miner_uid, key.miner_hotkey)
        opened = await open_frozen_async(settings, client, frozen)
        try:
            await asyncio.to_thread(probe, opened, settings)
            files = len(frozen.files)
        finally:
            await asyncio.to_thread(opened.close)
        latency = _ms(started)
        with self.engine.begin() as conn:  # the whole outcome in one transaction
            _mark_inference(conn, key, forecast.status, completed=utcnow())
            work.set_miner_status(conn, *_forecast_key(key), _M.FORECAST_READY)
            work.succeed(conn, self.policy, key, attempt=step.attempt, latency_ms=latency, context={"files": files})
            conn.execute(
                sa.update(forecast_stats)
                .where(*_stats_where(key))
                .values(hosting_status="ok", hosting_latency_ms=latency)
            )
            row = forecast_row(conn, *_forecast_key(key))
        log.info("run %s uid %s: forecast frozen and opened (%d files)", key.run_id, key.miner_uid, files)
        if row is not None and row.manifest_frozen_at is not None and row.verification_hash_claimed:
            shared = note_same_manifest(self.engine, key, row.verification_hash_claimed)
            if len(shared) > 1:
                log.warning("run %s: uids %s froze the same manifest hash", key.run_id, shared)


# -- helpers ----------------------------------------------------------------------------------------


def _forecast_key(key: StepKey) -> tuple[int, int, str]:
    return key.run_id, key.miner_uid, key.miner_hotkey


def _job_id(forecast: sa.Row | None) -> str:
    if forecast is None or not forecast.job_id:
        raise ManifestError("no job id recorded for this miner")
    return forecast.job_id


def _mark_inference(conn: sa.Connection, key: StepKey, status: str, completed: datetime | None = None) -> None:
    """fetch_initiated -> inference_running once the miner says it is working (or done)."""
    if status == _M.FETCH_INITIATED.value:
        work.set_miner_status(conn, *_forecast_key(key), _M.INFERENCE_RUNNING, inference_started_at=utcnow())
    if completed is not None:
        conn.execute(
            sa.update(miner_responses)
            .where(*work.response_where(*_forecast_key(key)), miner_responses.c.inference_completed_at.is_(None))
            .values(inference_completed_at=completed)
        )


def _stats_where(key: StepKey) -> list:
    c = forecast_stats.c
    return [c.run_id == key.run_id, c.miner_uid == key.miner_uid, c.miner_hotkey == key.miner_hotkey]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0

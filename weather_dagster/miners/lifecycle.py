"""A round's miner threads: seed, query, poll, fetch + freeze the manifest, open the store.

Plain async functions over the database. Each call of :func:`advance_round` runs every miner step
that is due, concurrently (bounded by ``settings.miners.http_concurrency`` in flight), and records
each miner's outcome on its own in the step log and stats with the retry policy of SPEC section 5.
A step that must wait writes ``retry_scheduled`` with its next time and returns: nothing sleeps in
here, so a sensor or a loop (``run_until_settled``) decides when to call again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from substrateinterface import Keypair

from weather_dagster.core.errors import (
    InvalidDataError,
    ManifestError,
    MinerJobFailed,
    MinerRejected,
    SafetyViolation,
    WeatherError,
    sanitize_error,
)
from weather_dagster.core.retry import RetryPolicy, WorkKind
from weather_dagster.core.states import IllegalTransition, MinerForecastStatus, StepName, StepStatus
from weather_dagster.db.claims import claim_rows
from weather_dagster.db.schema import forecast_runs, forecast_stats, forecast_steps, miner_responses
from weather_dagster.db.states import set_miner_status
from weather_dagster.db.steps import StepKey, StepLog
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
from weather_dagster.miners.seeding import (
    MINER_STEPS,
    create_round,
    next_due_time,
    seed_miners,
)
from weather_dagster.settings import Settings

__all__ = [
    "MINER_STEPS",
    "RoundWorker",
    "advance_round",
    "advance_until_waiting",
    "create_round",
    "next_due_time",
    "run_until_settled",
    "seed_miners",
]

_M = MinerForecastStatus
log = logging.getLogger(__name__)
TERMINAL = {_M.FAILED.value, _M.CANCELLED.value}


class ForecastNotReady(WeatherError):
    """The miner kept saying "running" for every allowed poll."""

    category = "not_ready"


class HotkeyChanged(WeatherError):
    category = "hotkey_changed"


class RoundWorker:
    """State for one pass: settings, the step log, one client and the in-flight bound."""

    def __init__(
        self, settings: Settings, engine: sa.Engine, client: FiberClient, *, dagster_run_id: str | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        self.policy = RetryPolicy.from_settings(settings)
        self.steps = StepLog(engine, self.policy)
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
        """Start a task for each due step not already running; returns the new tasks by step id."""
        # Claimed atomically: a concurrent pass (another run, a UI materialization) never gets the same step.
        s = forecast_steps.c
        where = sa.and_(s.run_id == run_id, s.step_name.in_([str(n) for n in MINER_STEPS]), s.id.not_in(list(running)))
        if uids is not None:
            where = sa.and_(where, s.miner_uid.in_(list(uids)))
        rows = claim_rows(
            self.engine,
            where=where,
            worker_id=self.dagster_run_id or f"pid-{os.getpid()}",
            lease_s=self.settings.retry.step_lease_s,
        )
        if not rows:
            return {}
        current = registered(self.engine)
        with self.engine.connect() as conn:
            round_row = conn.execute(sa.select(forecast_runs).where(forecast_runs.c.id == run_id)).one()
        return {row.id: asyncio.create_task(self._guarded(row, round_row, current)) for row in rows}

    async def _guarded(self, row: sa.Row, round_row: sa.Row, current: dict[int, MinerInfo]) -> None:
        async with self.slots:
            await self._run_step(row, round_row, current)

    def _miner_status(self, key: StepKey) -> str | None:
        r = miner_responses.c
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(r.status).where(
                    r.run_id == key.run_id, r.miner_uid == key.miner_uid, r.miner_hotkey == key.miner_hotkey
                )
            ).scalar()

    def _set_status(self, key: StepKey, target: MinerForecastStatus, **fields) -> None:
        with self.engine.begin() as conn:
            set_miner_status(conn, key.run_id, key.miner_uid, key.miner_hotkey, target, **fields)

    async def _run_step(self, row: sa.Row, round_row: sa.Row, current: dict[int, MinerInfo]) -> None:
        key = StepKey(row.run_id, row.miner_uid, row.miner_hotkey, StepName(row.step_name), row.substep, row.lead_hours)
        attempt = row.retry_count + 1
        status = self._miner_status(key)
        info = current.get(key.miner_uid)
        self.steps.start(
            key, attempt=attempt, dagster_run_id=self.dagster_run_id, lease_s=self.settings.retry.step_lease_s
        )
        if status in TERMINAL:
            self.steps.fail(key, f"miner forecast already {status}", attempt=attempt)
            return
        if info is None or info.hotkey != key.miner_hotkey:
            error = HotkeyChanged("miner deregistered or its hotkey changed: thread cancelled, history kept")
            self.steps.fail(key, error, attempt=attempt)
            self._set_status(key, _M.CANCELLED, failure_category=error.category, error_message=str(error))
            return
        started = time.perf_counter()
        try:
            handler = {StepName.QUERY: self._query, StepName.POLL: self._poll, StepName.MANIFEST: self._manifest}
            await handler[key.step_name](key, attempt, info, round_row, row, started)
        except Exception as exc:  # every failure is recorded on this miner alone
            self._record_failure(key, exc, attempt)

    def _record_failure(self, key: StepKey, exc: BaseException, attempt: int) -> None:
        decision = self.steps.record_failure(key, exc, attempt=attempt)
        log.info(
            "run %s uid %s %s attempt %s: %s (%s) -> %s",
            key.run_id,
            key.miner_uid,
            key.step_name,
            attempt,
            sanitize_error(exc)["message"][:200],
            decision.error_class,
            decision.status,
        )
        if decision.status is StepStatus.FAILED:
            category = exc.category if isinstance(exc, WeatherError) else decision.error_class.value
            with contextlib.suppress(IllegalTransition):  # already terminal: a concurrent pass got there
                self._set_status(
                    key, _M.FAILED, failure_category=category, error_message=sanitize_error(exc)["message"]
                )

    def _timeout(self, base: float, attempt: int, row: sa.Row) -> float:
        previous = (row.error_json or {}).get("type", "")
        return self.policy.timeout_for(base, attempt - 1) if "Timeout" in previous else base

    # -- steps ------------------------------------------------------------------------------------------

    async def _query(self, key, attempt, info, round_row, row, started) -> None:
        payload = protocol.initiate_fetch_payload(
            round_row.gfs_init_time_utc, round_row.previous_step_time_utc, self.client.keypair.ss58_address, info.hotkey
        )
        timeout = self._timeout(self.settings.retry.initiate_fetch_timeout_s, attempt, row)
        answer = await self.client.initiate_fetch(info.address, payload, timeout)
        if answer.status == protocol.FETCH_REJECTED:
            raise MinerRejected(f"miner refused the job: {answer.message or 'fetch_rejected'}")
        if answer.status not in (protocol.FETCH_ACCEPTED, protocol.FETCH_COMPLETED) or not answer.job_id:
            raise MinerProtocolError(protocol.INITIATE_FETCH_PATH, f"initiate-fetch answered {answer.status!r}")
        now = utcnow()
        self._set_status(key, _M.FETCH_INITIATED, job_id=answer.job_id, response_time=now)
        context: dict = {"status": answer.status}
        if shared := check_job_id(self.engine, key, answer.job_id):  # raises on the later uids
            context["duplicate_job_id_uids"] = shared
        self.steps.succeed(key, attempt=attempt, latency_ms=_ms(started), context=context)
        if answer.status == protocol.FETCH_COMPLETED:  # fast path: no polling
            self.steps.ensure_pending(_sibling(key, StepName.MANIFEST), due_at=now)
        else:
            self.steps.ensure_pending(_sibling(key, StepName.POLL), due_at=self.policy.first_poll_time(now))

    async def _poll(self, key, attempt, info, round_row, row, started) -> None:
        job_id = self._job_id(key)
        try:
            answer = await self.client.poll(
                info.address, job_id, self._timeout(self.settings.retry.poll_timeout_s, 1, row)
            )
            state = answer.status
        except SafetyViolation:
            raise
        except (httpx.HTTPError, MinerProtocolError, InvalidDataError, OSError) as exc:
            state = unreachable_state(exc)  # SPEC: anything else, keep polling (the reference does too)
        # Past the freeze window a forecast can no longer be frozen, whatever the miner says now.
        check_freeze_window(self.engine, key.run_id, self.settings.miners.manifest_freeze_window_s)
        if state in protocol.POLL_DONE:
            now = utcnow()
            self._mark_inference(key, completed=now)
            self.steps.succeed(key, attempt=attempt, latency_ms=_ms(started), context={"status": state})
            self.steps.ensure_pending(_sibling(key, StepName.MANIFEST), due_at=now)
            return
        if state in protocol.POLL_FAILED:
            raise MinerJobFailed(f"miner reports its job {state}")
        if state in protocol.POLL_RUNNING:
            self._mark_inference(key)
        if attempt >= self.policy.attempts_for(WorkKind.POLL):
            raise ForecastNotReady(f"still {state!r} after {attempt} polls")
        now = utcnow()
        when = now + timedelta(seconds=self.policy.backoff(WorkKind.POLL, attempt))
        self.steps.schedule_retry(key, f"forecast not ready: {state}", attempt=attempt, next_retry_time=when, now=now)

    async def _manifest(self, key, attempt, info, round_row, row, started) -> None:
        settings, client = self.settings, self.client
        job_id = self._job_id(key)
        frozen_already = self._frozen_hash(key) is not None
        if not frozen_already:
            check_freeze_window(self.engine, key.run_id, settings.miners.manifest_freeze_window_s)
            timeout = self._timeout(settings.retry.kerchunk_timeout_s, attempt, row)
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
        forecast = await open_frozen_async(settings, client, frozen)
        try:
            await asyncio.to_thread(probe, forecast, settings)
            files = len(frozen.files)
        finally:
            await asyncio.to_thread(forecast.close)
        latency = _ms(started)
        self._mark_inference(key, completed=utcnow())
        self._set_status(key, _M.FORECAST_READY)
        log.info("run %s uid %s: forecast frozen and opened (%d files)", key.run_id, key.miner_uid, files)
        self.steps.succeed(key, attempt=attempt, latency_ms=latency, context={"files": files})
        if (verification_hash := self._frozen_hash(key)) is not None:
            shared = note_same_manifest(self.engine, key, verification_hash)
            if len(shared) > 1:
                log.warning("run %s: uids %s froze the same manifest hash", key.run_id, shared)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(forecast_stats)
                .where(*_stats_where(key))
                .values(hosting_status="ok", hosting_latency_ms=latency)
            )

    # -- helpers ----------------------------------------------------------------------------------------

    def _job_id(self, key: StepKey) -> str:
        r = miner_responses.c
        with self.engine.connect() as conn:
            job_id = conn.execute(
                sa.select(r.job_id).where(
                    r.run_id == key.run_id, r.miner_uid == key.miner_uid, r.miner_hotkey == key.miner_hotkey
                )
            ).scalar()
        if not job_id:
            raise ManifestError("no job id recorded for this miner")
        return job_id

    def _frozen_hash(self, key: StepKey) -> str | None:
        r = miner_responses.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(r.manifest_frozen_at, r.verification_hash_claimed).where(
                    r.run_id == key.run_id, r.miner_uid == key.miner_uid, r.miner_hotkey == key.miner_hotkey
                )
            ).one()
        return row.verification_hash_claimed if row.manifest_frozen_at else None

    def _mark_inference(self, key: StepKey, completed: datetime | None = None) -> None:
        """fetch_initiated -> inference_running once the miner says it is working (or done)."""
        if self._miner_status(key) == _M.FETCH_INITIATED.value:
            self._set_status(key, _M.INFERENCE_RUNNING, inference_started_at=utcnow())
        if completed is not None:
            r = miner_responses.c
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(miner_responses)
                    .where(
                        r.run_id == key.run_id,
                        r.miner_uid == key.miner_uid,
                        r.miner_hotkey == key.miner_hotkey,
                        r.inference_completed_at.is_(None),
                    )
                    .values(inference_completed_at=completed)
                )


def _sibling(key: StepKey, name: StepName) -> StepKey:
    return StepKey(key.run_id, key.miner_uid, key.miner_hotkey, name)


def _stats_where(key: StepKey) -> list:
    c = forecast_stats.c
    return [c.run_id == key.run_id, c.miner_uid == key.miner_uid, c.miner_hotkey == key.miner_hotkey]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


# -- drivers -------------------------------------------------------------------------------------------


async def advance_round(
    settings: Settings,
    engine: sa.Engine,
    run_id: int,
    keypair: Keypair,
    *,
    uids: Iterable[int] | None = None,
    dagster_run_id: str | None = None,
) -> int:
    """Run every due miner step of the round once (batched, bounded); returns how many ran."""
    async with FiberClient(settings, keypair) as client:
        return await RoundWorker(settings, engine, client, dagster_run_id=dagster_run_id).advance(run_id, uids)


async def run_until_settled(
    settings: Settings,
    engine: sa.Engine,
    run_id: int,
    keypair: Keypair,
    *,
    max_wait_s: float,
    uids: Iterable[int] | None = None,
    client: FiberClient | None = None,
) -> bool:
    """Advance the round until no miner step is left to do (True) or ``max_wait_s`` passes (False).

    For demos, tests and benchmarks, where the retry times are seconds; production waits in sensors.
    """
    deadline = time.monotonic() + max_wait_s
    uids = list(uids) if uids is not None else None
    own = client is None
    client = client or FiberClient(settings, keypair)
    worker = RoundWorker(settings, engine, client)
    running: dict[int, asyncio.Task] = {}
    try:
        while time.monotonic() < deadline:
            running.update(worker.spawn_due(run_id, uids, running))
            for task in [t for t in running.values() if t.done() and not t.cancelled() and t.exception()]:
                log.error("miner step crashed: %s", sanitize_error(task.exception())["message"])
            running = {step_id: task for step_id, task in running.items() if not task.done()}
            due = next_due_time(engine, run_id, uids)
            if due is None and not running:
                return True
            wait = (due - utcnow()).total_seconds() if due is not None else 0.05
            await asyncio.sleep(min(max(wait, 0.01), 0.05, max(deadline - time.monotonic(), 0.0)))
        return False
    finally:
        # Steps already started finish (their calls are bounded by timeouts): none is left half-done.
        await asyncio.gather(*running.values(), return_exceptions=True)
        if own:
            await client.aclose()


async def advance_until_waiting(
    settings: Settings,
    engine: sa.Engine,
    run_id: int,
    keypair: Keypair,
    *,
    uids: Iterable[int] | None = None,
    max_passes: int = 4,
    dagster_run_id: str | None = None,
) -> int:
    """Batched passes while steps are due right now (a query's fast path makes the manifest due at
    once); stops as soon as everything left waits for a later time. Never sleeps. Returns steps run."""
    total = 0
    async with FiberClient(settings, keypair) as client:
        worker = RoundWorker(settings, engine, client, dagster_run_id=dagster_run_id)
        for _ in range(max_passes):
            ran = await worker.advance(run_id, list(uids) if uids is not None else None)
            total += ran
            if not ran:
                break
    return total

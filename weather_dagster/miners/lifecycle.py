"""A round's miner threads: seed, query, poll, fetch + freeze the manifest, open the store.

Plain async functions over the database. Each call of :func:`advance_round` runs every miner step
that is due, concurrently (bounded by ``settings.miners.http_concurrency`` in flight), and records
each miner's outcome on its own in the step log and stats with the retry policy of SPEC section 5.
A step that must wait writes ``retry_scheduled`` with its next time and returns: nothing sleeps in
here, so a sensor or a loop (``run_until_settled``) decides when to call again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import sqlalchemy as sa
from substrateinterface import Keypair

from weather_dagster.core.errors import sanitize_error
from weather_dagster.db.types import utcnow
from weather_dagster.miners.fiber_client import FiberClient
from weather_dagster.miners.seeding import MINER_STEPS, create_round, next_due_time, seed_miners
from weather_dagster.miners.worker import ForecastNotReady, HotkeyChanged, RoundWorker
from weather_dagster.settings import Settings

__all__ = [
    "MINER_STEPS",
    "ForecastNotReady",
    "HotkeyChanged",
    "RoundWorker",
    "advance_round",
    "advance_until_waiting",
    "create_round",
    "next_due_time",
    "run_until_settled",
    "seed_miners",
]

log = logging.getLogger(__name__)


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

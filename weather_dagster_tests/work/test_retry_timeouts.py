"""A timed-out call's next timeout grows from the count the step row stores (issue 12).

The poll used to pass attempt 1 to the timeout rule, so a miner whose status endpoint timed out was
polled with the base timeout forever. Here a real ``FiberClient`` polls a real loopback socket that
accepts and never answers; the client only records the timeout each poll is given.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import StepName
from weather_dagster.db.schema import forecast_steps, miner_responses
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.miners.fiber_client import FiberClient
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import RoundWorker
from weather_dagster.miners.metagraph import MinerInfo, sync_miners_table
from weather_dagster_tests.support.helpers import make_response, make_round
from weather_dagster_tests.support.miners_support import validator_settings

BASE_S = 0.2


@pytest.fixture
def silent_miner() -> Iterator[int]:
    """A TCP port that accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


class RecordingClient(FiberClient):
    """The real client; it only notes the timeout each poll is given."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.poll_timeouts: list[float] = []

    async def poll(self, miner, job_id: str, timeout_s: float):
        self.poll_timeouts.append(timeout_s)
        return await super().poll(miner, job_id, timeout_s)


def test_each_timed_out_poll_doubles_the_next_polls_timeout(tmp_path, db_url, database, silent_miner) -> None:
    settings = validator_settings(tmp_path, db_url)
    retry = settings.retry.model_copy(
        update={"poll_timeout_s": BASE_S, "poll_interval_s": 0.0, "poll_max_attempts": 10}
    )
    settings = settings.model_copy(update={"retry": retry})
    engine = database.engine
    run_id = make_round(engine)
    make_response(engine, run_id, 3, "hk3")
    sync_miners_table(engine, [MinerInfo(uid=3, hotkey="hk3", ip="127.0.0.1", port=silent_miner)])
    with engine.begin() as conn:
        conn.execute(sa.update(miner_responses).values(status="fetch_initiated", job_id="job-3"))
    StepLog(engine, RetryPolicy.from_settings(settings)).ensure_pending(StepKey(run_id, 3, "hk3", StepName.POLL))

    async def four_polls() -> list[float]:
        async with RecordingClient(settings, validator_keypair(settings)) as client:
            worker = RoundWorker(settings, engine, client)
            for _ in range(4):
                await worker.advance(run_id)
            return client.poll_timeouts

    timeouts = asyncio.run(four_polls())
    cap = BASE_S * settings.retry.timeout_cap_factor
    assert timeouts == pytest.approx([BASE_S, 2 * BASE_S, min(4 * BASE_S, cap), min(8 * BASE_S, cap)])
    with engine.connect() as conn:
        step = conn.execute(sa.select(forecast_steps).where(forecast_steps.c.step_name == "poll")).one()
    assert (step.status, step.retry_count) == ("retry_scheduled", 4)

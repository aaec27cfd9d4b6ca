"""The executors of the code location, chosen by the settings.

Jobs of one op (the sensors' batch jobs) run on :func:`batch_executor`: in the run worker's own process,
so a launched run starts one process, not two. Jobs with parallel steps (asset jobs launched from the UI,
backfills of several assets) use :func:`build_executor`, the code location's default.

Without a broker the steps of a run execute in Dagster's multiprocess executor on the machine that runs
the run, at most ``executor_max_concurrent`` at a time (default: one per core, so a 2-core box is not
oversubscribed on top of the pools). With ``round.celery_broker_url`` set the steps go to Celery workers
instead (dagster-celery, installed with the ``celery`` extra); the run's orchestration stays where the
run launcher put it, which must never be a worker process of the same pool: see :data:`WORKER_ARGS`.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from weather_dagster.dagster_defs.pools import pool_limits
from weather_dagster.settings import Settings

# Celery settings that both the executor (producer side) and the workers must agree on. One task per
# worker process and no prefetching: a worker whose processes are all busy must not hold step tasks
# that an idle worker could run, because the run's orchestrator has already claimed the step's pool
# slot before it submits the task. Late acknowledgement plus reject-on-worker-lost puts a step whose
# worker process died back on the queue instead of losing it (the orchestrator would wait forever).
CELERY_TRANSPORT_DEFAULTS: dict[str, Any] = {
    "worker_prefetch_multiplier": 1,
    "worker_disable_prefetch": True,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "broker_connection_retry_on_startup": True,
}

# Arguments for ``dagster-celery worker start`` / ``celery -A dagster_celery.app worker`` that go with
# the defaults above. ``--concurrency`` must be at least the sum of the pool limits so every step that
# holds a pool slot also finds a free worker process.
WORKER_ARGS: tuple[str, ...] = ("--prefetch-multiplier=1", "--disable-prefetch", "-O", "fair")


def min_worker_concurrency(settings: Settings) -> int:
    """Fewest processes a Celery worker serving these pools needs so no slot-holding step waits for one."""
    return sum(pool_limits(settings).values())


def default_max_concurrent(settings: Settings) -> int:
    """Step processes per run for the multiprocess executor: the setting, or one per CPU core."""
    return settings.round.executor_max_concurrent or os.cpu_count() or 1


def celery_executor_config(settings: Settings) -> dict[str, Any]:
    """The ``execution: config:`` block for dagster-celery, also the YAML a worker starts with (``-y``)."""
    broker = settings.round.celery_broker_url
    if not broker:
        raise ValueError("round.celery_broker_url is not set (WEATHER_ROUND__CELERY_BROKER_URL)")
    transport = dict(CELERY_TRANSPORT_DEFAULTS)
    visibility = {"visibility_timeout": settings.round.celery_visibility_timeout_s}
    # dagster-celery's own connection-retry options, kept, plus the Redis visibility timeout.
    transport["broker_transport_options"] = {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
        **visibility,
    }
    return {
        "broker": broker,
        "backend": settings.round.celery_backend_url or broker,
        "config_source": transport,
    }


def build_executor(settings: Settings) -> ExecutorDefinition:
    """Celery executor when a broker is configured, else the multiprocess executor sized for the cores."""
    if settings.round.celery_broker_url:
        try:
            from dagster_celery import celery_executor
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "WEATHER_ROUND__CELERY_BROKER_URL is set but dagster-celery is missing: "
                "pip install 'weather-dagster[celery]'"
            ) from exc
        return celery_executor.configured(celery_executor_config(settings), name="weather_celery")
    return multiprocess_executor.configured(
        {"max_concurrent": default_max_concurrent(settings)}, name="weather_multiprocess"
    )


def batch_executor(settings: Settings) -> ExecutorDefinition:
    """In-process for a single-op batch job; the Celery executor when a broker is configured.

    With Celery the point of the job is to run its step on a worker of the pool (another machine), so
    it keeps that executor; without, a step process would only repeat the run worker's imports.
    """
    if settings.round.celery_broker_url:
        return build_executor(settings)
    return in_process_executor

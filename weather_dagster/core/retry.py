"""Retry policy and error classification (SPEC section 5) as pure functions of settings.

One place decides, for any failed unit of work, whether it is retried, when, with what timeout, or
whether it has failed for good: step retries (:meth:`RetryPolicy.decide`, including a miner's "not
ready yet"), the next call's timeout from the stored count of timed-out attempts
(:meth:`RetryPolicy.timeout_for` with :func:`stored_timeouts`), and the short in-step repeats of a
blip (:func:`with_retries`: store reads, reference downloads). Attempts are numbered from 1;
``attempt`` is the one that just ended.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

import httpx

from weather_dagster.core.errors import (
    InvalidDataError,
    MinerJobFailed,
    MinerNotReady,
    MinerRejected,
    SourceError,
    TruthNotAvailable,
)
from weather_dagster.core.states import StepName, StepStatus
from weather_dagster.settings import Settings

T = TypeVar("T")


class WorkKind(StrEnum):
    QUERY = "query"
    POLL = "poll"
    DAY1 = "day1"
    ERA5 = "era5"
    DOWNLOAD = "download"


STEP_WORK_KIND: dict[StepName, WorkKind] = {
    StepName.QUERY: WorkKind.QUERY,
    StepName.POLL: WorkKind.POLL,
    StepName.MANIFEST: WorkKind.POLL,
    StepName.DAY1: WorkKind.DAY1,
    StepName.ERA5: WorkKind.ERA5,
    StepName.REFERENCE_DATA: WorkKind.DOWNLOAD,
    StepName.ROUND_SETUP: WorkKind.DOWNLOAD,
    StepName.ROUND_FINALIZE: WorkKind.DAY1,
}


class ErrorClass(StrEnum):
    CONNECTION = "connection"  # refused / reset / DNS: retry with backoff
    TIMEOUT = "timeout"  # retry with the timeout doubled (capped)
    SERVER = "server"  # 5xx, 429, protocol hiccups: retry with backoff
    INVALID = "invalid"  # bad shape, units, NaN, manifest: failed, no retry
    REJECTED = "rejected"  # the miner refused the job: failed, no retry
    MINER_FAILED = "miner_failed"  # the miner's own job failed: failed, no retry
    NOT_READY = "not_ready"  # the miner says its forecast is not ready yet: retry with backoff
    TRUTH_NOT_READY = "truth_not_ready"  # waiting_for_truth, not an attempt
    UNKNOWN = "unknown"  # anything else: retried with backoff, so a bug never kills a round


_NO_RETRY = {ErrorClass.INVALID, ErrorClass.REJECTED, ErrorClass.MINER_FAILED}


def classify(exc: BaseException) -> ErrorClass:
    """Map an exception (ours, httpx's, or the OS's) to the class that decides its retry."""
    if isinstance(exc, TruthNotAvailable):
        return ErrorClass.TRUTH_NOT_READY
    if isinstance(exc, InvalidDataError):
        return ErrorClass.INVALID
    if isinstance(exc, MinerRejected):
        return ErrorClass.REJECTED
    if isinstance(exc, MinerJobFailed):
        return ErrorClass.MINER_FAILED
    if isinstance(exc, MinerNotReady):
        return ErrorClass.NOT_READY
    if isinstance(exc, httpx.TimeoutException | TimeoutError | asyncio.TimeoutError | socket.timeout):
        return ErrorClass.TIMEOUT
    if isinstance(
        exc,
        httpx.ConnectError
        | ConnectionRefusedError
        | ConnectionResetError
        | ConnectionAbortedError
        | BrokenPipeError
        | socket.gaierror,
    ):
        return ErrorClass.CONNECTION
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return ErrorClass.SERVER if code >= 500 or code in (408, 425, 429) else ErrorClass.INVALID
    if isinstance(exc, httpx.TransportError | ssl.SSLError | SourceError | ConnectionError):
        # TransientSourceError (a blip the reference reader repeated in-step) is a SourceError too.
        return ErrorClass.SERVER
    return ErrorClass.UNKNOWN


# Dropped connections a request may be repeated on at once: nothing was answered, so nothing is lost.
_RECONNECTABLE = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    ConnectionRefusedError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


def with_retries(
    call: Callable[[], T],
    pauses_s: Sequence[float],
    retry_on: tuple[type[BaseException], ...],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``, repeating it after each pause in ``pauses_s`` while it raises one of ``retry_on``.

    The in-step repeat of a blip (seconds, not a step retry). The last error is raised as it is, so
    the step's policy then classifies it; anything not in ``retry_on`` is raised at once.
    """
    for pause in pauses_s:
        try:
            return call()
        except retry_on:
            sleep(pause)
    return call()


def exponential_pauses(base_s: float, count: int) -> tuple[float, ...]:
    """``count`` pauses doubling from ``base_s``: the in-step blip schedule of the reference reads."""
    return tuple(base_s * 2**i for i in range(count))


def with_reconnects(call: Callable[[], T], pauses_s: Sequence[float], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``, repeating it after each pause in ``pauses_s`` while its connection is refused or reset.

    For blocking store reads inside one step: a miner restarting its server costs seconds, not a step
    retry. Anything else (timeouts, status codes, bad data) is not repeated here.
    """
    return with_retries(call, pauses_s, _RECONNECTABLE, sleep)


def timed_out(error: BaseException) -> bool:
    """The attempt ended in a timeout: the error itself, or the cause of a "not ready" built from one
    (a poll that timed out reports "not ready" but still lengthens the next poll's timeout)."""
    if classify(error) is ErrorClass.TIMEOUT:
        return True
    cause = error.__cause__
    return cause is not None and classify(cause) is ErrorClass.TIMEOUT


def stored_timeouts(error_json: dict | None) -> int:
    """How many attempts of a step timed out, as the step row's last ``error_json`` stores it."""
    try:
        return max(0, int((error_json or {}).get("timeouts", 0)))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class RetryDecision:
    status: StepStatus  # retry_scheduled, failed or waiting_for_truth
    error_class: ErrorClass
    next_retry_time: datetime | None
    counts_as_attempt: bool
    timeouts: int = 0  # timed-out attempts so far, this one included: stored with the retry

    @property
    def retries(self) -> bool:
        return self.status is not StepStatus.FAILED


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff schedules and attempt limits, built once from settings (scaled down in test mode)."""

    max_attempts: dict[WorkKind, int]
    backoff_s: dict[WorkKind, tuple[float, ...]]
    download_base_s: float
    download_max_s: float
    download_jitter: float
    poll_first_delay_s: float
    truth_recheck_s: float
    timeout_cap_factor: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        r = settings.retry
        scale = r.test_mode_time_scale if settings.test_mode else 1.0
        return cls(
            max_attempts={
                WorkKind.QUERY: r.query_max_attempts,
                WorkKind.POLL: r.poll_max_attempts,
                WorkKind.DAY1: r.day1_max_attempts,
                WorkKind.ERA5: r.era5_max_attempts,
                WorkKind.DOWNLOAD: r.download_max_attempts,
            },
            backoff_s={
                WorkKind.QUERY: tuple(v * scale for v in r.query_backoff_s),
                WorkKind.POLL: (r.poll_interval_s * scale,),
                WorkKind.DAY1: tuple(v * scale for v in r.day1_backoff_s),
                WorkKind.ERA5: tuple(v * scale for v in r.era5_backoff_s),
            },
            download_base_s=r.download_base_backoff_s * scale,
            download_max_s=r.download_max_backoff_s * scale,
            download_jitter=r.download_jitter_fraction,
            poll_first_delay_s=r.poll_first_delay_s * scale,
            truth_recheck_s=r.truth_recheck_s * scale,
            timeout_cap_factor=r.timeout_cap_factor,
        )

    @staticmethod
    def kind_of(step: StepName) -> WorkKind:
        return STEP_WORK_KIND[StepName(step)]

    def attempts_for(self, step: StepName | WorkKind) -> int:
        kind = step if isinstance(step, WorkKind) else self.kind_of(step)
        return self.max_attempts[kind]

    def backoff(self, kind: WorkKind, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        if kind is WorkKind.DOWNLOAD:
            base = min(self.download_base_s * 2 ** (attempt - 1), self.download_max_s)
            jitter = (rng or random.Random()).uniform(0.0, self.download_jitter) if self.download_jitter else 0.0
            return base * (1.0 + jitter)
        schedule = self.backoff_s[kind]
        return schedule[min(attempt - 1, len(schedule) - 1)]

    def next_retry_time(
        self, kind: WorkKind, attempt: int, now: datetime, rng: random.Random | None = None
    ) -> datetime | None:
        """When to try again after ``attempt`` failed, or None when the attempts are used up."""
        if attempt >= self.max_attempts[kind]:
            return None
        return now + timedelta(seconds=self.backoff(kind, attempt, rng))

    def first_poll_time(self, accepted_at: datetime) -> datetime:
        return accepted_at + timedelta(seconds=self.poll_first_delay_s)

    def timeout_for(self, base_timeout_s: float, timeouts_so_far: int) -> float:
        """Each timeout doubles the next call's timeout, capped at ``base x timeout_cap_factor``.

        ``timeouts_so_far`` is the stored count (:func:`stored_timeouts` of the step's last error)."""
        return min(base_timeout_s * 2**timeouts_so_far, base_timeout_s * self.timeout_cap_factor)

    def decide(
        self,
        kind: WorkKind,
        error: BaseException,
        attempt: int,
        now: datetime,
        *,
        timeouts_so_far: int = 0,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """The single answer to "this attempt failed with this error: now what?".

        A miner's "not ready yet" (:class:`MinerNotReady`) is retried on the kind's schedule like any
        transient error and fails once the attempts are used up.
        """
        error_class = classify(error)
        if error_class is ErrorClass.TRUTH_NOT_READY:
            return RetryDecision(
                StepStatus.WAITING_FOR_TRUTH,
                error_class,
                now + timedelta(seconds=self.truth_recheck_s),
                counts_as_attempt=False,
                timeouts=timeouts_so_far,
            )
        timeouts = timeouts_so_far + (1 if timed_out(error) else 0)
        if error_class in _NO_RETRY:
            return RetryDecision(StepStatus.FAILED, error_class, None, True, timeouts)
        when = self.next_retry_time(kind, attempt, now, rng)
        if when is None:
            return RetryDecision(StepStatus.FAILED, error_class, None, True, timeouts)
        return RetryDecision(StepStatus.RETRY_SCHEDULED, error_class, when, True, timeouts)

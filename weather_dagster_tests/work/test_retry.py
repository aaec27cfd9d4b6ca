from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from weather_dagster.core.errors import InvalidDataError, ManifestError, MinerRejected, SourceError, TruthNotAvailable
from weather_dagster.core.retry import ErrorClass, RetryPolicy, WorkKind, classify
from weather_dagster.core.states import StepStatus
from weather_dagster.settings import load_settings

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy.from_settings(load_settings())


@pytest.mark.parametrize(
    ("kind", "waits"),
    [
        (WorkKind.QUERY, [60, 300]),  # 3 attempts: two waits, then failed
        (WorkKind.DAY1, [300, 600]),
        (WorkKind.ERA5, [3600] * 4),
        (WorkKind.POLL, [300] * 19),
    ],
)
def test_schedules(policy: RetryPolicy, kind: WorkKind, waits: list[float]) -> None:
    for attempt, wait in enumerate(waits, start=1):
        assert policy.next_retry_time(kind, attempt, NOW) == NOW + timedelta(seconds=wait)
    assert policy.next_retry_time(kind, len(waits) + 1, NOW) is None


def test_download_backoff_is_exponential_with_bounded_jitter(policy: RetryPolicy) -> None:
    rng = random.Random(7)
    for attempt in range(1, 6):
        wait = policy.backoff(WorkKind.DOWNLOAD, attempt, rng)
        base = 300 * 2 ** (attempt - 1)
        assert base <= wait <= base * 1.2
    assert policy.next_retry_time(WorkKind.DOWNLOAD, 6, NOW) is None


def test_values_come_from_settings() -> None:
    policy = RetryPolicy.from_settings(load_settings(retry={"query_max_attempts": 5, "query_backoff_s": [1, 2]}))
    assert [policy.backoff(WorkKind.QUERY, a) for a in (1, 2, 3, 4)] == [1, 2, 2, 2]
    assert policy.next_retry_time(WorkKind.QUERY, 5, NOW) is None


def test_first_poll_is_five_minutes_after_acceptance(policy: RetryPolicy) -> None:
    assert policy.first_poll_time(NOW) == NOW + timedelta(seconds=300)


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:1/x")
    return httpx.HTTPStatusError("boom", request=request, response=httpx.Response(code, request=request))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(), ErrorClass.CONNECTION),
        (ConnectionResetError(), ErrorClass.CONNECTION),
        (httpx.ConnectError("refused"), ErrorClass.CONNECTION),
        (httpx.ReadTimeout("slow"), ErrorClass.TIMEOUT),
        (TimeoutError(), ErrorClass.TIMEOUT),
        (_status_error(500), ErrorClass.SERVER),
        (_status_error(429), ErrorClass.SERVER),
        (_status_error(404), ErrorClass.INVALID),
        (InvalidDataError("NaN"), ErrorClass.INVALID),
        (ManifestError("mismatch"), ErrorClass.INVALID),
        (MinerRejected("hotkey"), ErrorClass.REJECTED),
        (TruthNotAvailable("later"), ErrorClass.TRUTH_NOT_READY),
        (SourceError("http://x", "HTTP 500"), ErrorClass.SERVER),
        (RuntimeError("bug"), ErrorClass.UNKNOWN),
    ],
)
def test_classification(error: BaseException, expected: ErrorClass) -> None:
    assert classify(error) is expected


def test_decisions(policy: RetryPolicy) -> None:
    d = policy.decide(WorkKind.QUERY, ConnectionRefusedError(), 1, NOW)
    assert d.status is StepStatus.RETRY_SCHEDULED and d.next_retry_time == NOW + timedelta(seconds=60)
    d = policy.decide(WorkKind.QUERY, ConnectionRefusedError(), 3, NOW)
    assert d.status is StepStatus.FAILED  # offline past max attempts
    d = policy.decide(WorkKind.DAY1, InvalidDataError("bad shape"), 1, NOW)
    assert d.status is StepStatus.FAILED and d.counts_as_attempt
    d = policy.decide(WorkKind.ERA5, TruthNotAvailable("not yet"), 5, NOW)
    assert d.status is StepStatus.WAITING_FOR_TRUTH and not d.counts_as_attempt
    assert d.next_retry_time == NOW + timedelta(seconds=3600)


def test_timeouts_double_and_cap(policy: RetryPolicy) -> None:
    counts = [
        policy.decide(WorkKind.QUERY, httpx.ReadTimeout("t"), a, NOW, timeouts_so_far=n).timeouts
        for n, a in enumerate((1, 2))
    ]
    assert counts == [1, 2]
    assert [policy.timeout_for(30, n) for n in counts] == [60, 120]
    assert policy.timeout_for(30, 10) == 120  # cap: 4 x base
    d = policy.decide(WorkKind.QUERY, ConnectionResetError(), 1, NOW, timeouts_so_far=1)
    assert d.timeouts == 1  # a connection error does not lengthen the timeout

"""The run-key and batching policy, as plain functions (no Dagster instance)."""

from __future__ import annotations

from datetime import UTC, datetime

from weather_dagster.dagster_defs.partitions import climatology_slices
from weather_dagster.orchestration.batching import (
    ALL_ROUNDS,
    RunJob,
    StatusAction,
    chunks,
    crash_suffix,
    plan_finalize,
    plan_work_runs,
)
from weather_dagster.orchestration.calendar import init_time_of, partition_date_of
from weather_dagster.orchestration.due import DueItem, RoundWork, RunKind
from weather_dagster.reference.climatology import climatology_key
from weather_dagster.settings import load_settings

INIT = datetime(2026, 11, 20, tzinfo=UTC)


def _work(run_id: int = 7, **items: list[DueItem]) -> RoundWork:
    work = RoundWork(run_id, INIT, "scoring_day1")
    for kind, values in items.items():
        work.items[RunKind(kind)] = values
    return work


def _items(step: str, uids: range, attempt: int = 1, lead: int = 0) -> list[DueItem]:
    return [DueItem(uid, f"hk{uid}", step, lead, attempt) for uid in uids]


def _never(*_args) -> bool:
    return False


def _no_failures(*_args) -> int:
    return 0


def test_chunks_cover_every_uid_once_in_bounded_batches() -> None:
    batches = chunks(list(range(10)), 4)
    # three batches of at most 4, sizes differing by at most one; offsets are positions in the sorted uids
    assert batches == [(0, [0, 1, 2, 3]), (4, [4, 5, 6]), (7, [7, 8, 9])]
    # two scoring slots: the batch count is a multiple of the slots, so no wave runs half empty
    assert [len(b) for _, b in chunks(list(range(10)), 4, slots=2)] == [3, 3, 2, 2]
    assert chunks([1, 2], 0) == [(0, [1]), (1, [2])]  # a zero batch size still makes progress
    assert chunks([], 4) == []


def test_scoring_runs_are_batched_and_keyed_by_the_due_items() -> None:
    work = _work(day1=_items("day1", range(5)))
    planned = plan_work_runs([work], batch_size=2, active=_never, failures=_no_failures)
    assert [p.job for p in planned] == [RunJob.SCORE_BATCH] * 3
    assert [p.op_config["score_batch"]["uids"] for p in planned] == [[0, 1], [2, 3], [4]]
    assert {p.kind for p in planned} == {"day1"} and {p.round_date for p in planned} == {"2026-11-20"}
    again = plan_work_runs([work], batch_size=2, active=_never, failures=_no_failures)
    assert [p.run_key for p in again] == [p.run_key for p in planned]  # a repeated tick: same keys
    retried = _work(day1=_items("day1", range(5), attempt=2))
    keys = [p.run_key for p in plan_work_runs([retried], batch_size=2, active=_never, failures=_no_failures)]
    assert not set(keys) & {p.run_key for p in planned}  # a retry: new keys


def test_day1_goes_first_and_an_active_run_holds_the_round_back() -> None:
    work = _work(day1=_items("day1", range(2)), era5=_items("era5", range(2), lead=24))
    planned = plan_work_runs([work], batch_size=10, active=_never, failures=_no_failures)
    assert [p.kind for p in planned] == ["day1"]
    quiet = _work(era5=_items("era5", range(2), lead=24))
    assert [p.kind for p in plan_work_runs([quiet], batch_size=10, active=_never, failures=_no_failures)] == ["era5"]
    busy = plan_work_runs(
        [work], batch_size=10, active=lambda job, date: job is RunJob.SCORE_BATCH, failures=_no_failures
    )
    assert busy == []


def test_one_miner_pass_serves_every_round_and_a_crash_changes_its_key() -> None:
    works = [_work(1, miners=_items("query", range(2))), _work(2, miners=_items("poll", range(3)))]
    (first,) = plan_work_runs(works, batch_size=10, active=_never, failures=_no_failures)
    assert first.job is RunJob.ADVANCE_MINERS and first.round_date == ALL_ROUNDS
    assert first.line == "advance_miners_job for 5 steps"
    (after,) = plan_work_runs(works, batch_size=10, active=_never, failures=lambda *a: 1)
    assert after.run_key == first.run_key + crash_suffix(1) and crash_suffix(0) == ""


def test_finalize_rolls_up_once_then_completes() -> None:
    work = _work()
    rollup, stats = plan_finalize(work, rollup_succeeded=False)
    assert (rollup.job, rollup.final, rollup.partition_key) == (RunJob.ROUND_ROLLUP, True, "2026-11-20")
    assert stats.job is RunJob.MINER_STATS
    (complete,) = plan_finalize(work, rollup_succeeded=True)
    assert complete.job is RunJob.ROUND_STATUS
    assert complete.op_config == {"sync_round": {"run_id": 7, "action": str(StatusAction.COMPLETE)}}
    assert plan_finalize(work, True)[0].run_key == complete.run_key  # once per round


def test_partition_date_and_init_time_round_trip_for_every_cycle() -> None:
    for cycle in (0, 6, 12, 18):
        settings = load_settings(round={"gfs_cycle_hour_utc": cycle})
        init = init_time_of("2026-11-20", settings)
        assert init == datetime(2026, 11, 20, cycle, tzinfo=UTC)
        assert partition_date_of(init) == "2026-11-20"
    assert partition_date_of(datetime(2026, 11, 20, 18)) == "2026-11-20"  # naive: read as UTC


def test_climatology_partition_keys_are_the_reference_keys() -> None:
    expected = [climatology_key(day, hour) for day in range(1, 367) for hour in (0, 6, 12, 18)]
    assert climatology_slices.get_partition_keys() == expected

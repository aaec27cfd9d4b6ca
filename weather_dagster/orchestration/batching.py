"""Which runs a sensor tick asks for: the batching and run-key policy, as plain functions.

The Dagster layer only turns a :class:`PlannedRun` into a ``RunRequest``; everything decided here is
testable without an instance. Run keys are what make a tick harmless to repeat: the same due items give
the same key (Dagster skips it), a retry has a new attempt number and so a new key, and a run of a kind
that ended badly bumps a crash generation so a run that died before holding a step is asked again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from weather_dagster.orchestration.due import RoundWork, RunKind

ALL_ROUNDS = "all"  # the round tag of the miner pass, which serves every open round at once


class RunJob(StrEnum):
    """The names of the jobs a sensor requests (the Dagster jobs are named from these)."""

    ADVANCE_MINERS = "advance_miners_job"
    SCORE_BATCH = "score_batch_job"
    ROUND_ROLLUP = "round_rollup_job"
    MINER_STATS = "miner_stats_job"
    ROUND_STATUS = "round_status_job"


class StatusAction(StrEnum):
    """What a ``round_status_job`` run does to one round."""

    EXPIRE = "expire"  # the round window is over: record the leads whose truth never came, expire
    COMPLETE = "complete"  # the final rollup succeeded: walk the round to completed


@dataclass(frozen=True)
class PlannedRun:
    job: RunJob
    run_key: str
    round_date: str
    line: str  # what the request is, for the log and for dry runs
    kind: str | None = None
    final: bool = False
    partition_key: str | None = None
    op_config: dict[str, dict[str, Any]] = field(default_factory=dict)  # op name -> its config


def split_evenly(uids: Sequence[int], slots: int, max_batch: int) -> list[list[int]]:
    """Due miners in contiguous batches of sizes differing by at most one, a multiple of ``slots`` of them.

    ``slots`` is the scoring pool's limit (runs scoring at once): fewer batches than slots leave a
    slot idle, a count that is not a multiple leaves the last wave half empty. No batch exceeds
    ``max_batch``; there is never an empty batch. Sorted order keeps run keys stable across ticks.
    """
    ordered = sorted(uids)
    if not ordered:
        return []
    slots, max_batch = max(1, slots), max(1, max_batch)
    waves = math.ceil(math.ceil(len(ordered) / max_batch) / slots)
    count = min(len(ordered), waves * slots)
    size, extra = divmod(len(ordered), count)
    batches, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        batches.append(ordered[start:end])
        start = end
    return batches


def chunks(uids: Sequence[int], batch_size: int, slots: int = 1) -> list[tuple[int, list[int]]]:
    """The batches of :func:`split_evenly`, each with its offset in the sorted uids (part of its run key)."""
    offset, out = 0, []
    for batch in split_evenly(uids, slots, batch_size):
        out.append((offset, batch))
        offset += len(batch)
    return out


def crash_suffix(failed_runs: int) -> str:
    """A run-key suffix that changes whenever a run of the same kind and round failed or was canceled."""
    return f":f{failed_runs}" if failed_runs else ""


def round_run_key(init_time: datetime) -> str:
    """One run key per GFS cycle: however many schedule ticks fire, Dagster opens the round once."""
    return f"round:{init_time:%Y-%m-%dT%H}"


def era5_truth_run_key(valid_date: str, published_until: str) -> str:
    """Per valid date and ERA5T publication stamp: a new publication lets a failed date be asked again."""
    return f"era5_truth:{valid_date}:{published_until}"


def final_run_key(date: str) -> str:
    return f"final:{date}"


def stats_run_key(date: str) -> str:
    return f"stats:{date}"


def status_run_key(run_id: int, action: StatusAction) -> str:
    """One status run per round and action: a repeated tick never expires or completes a round twice."""
    return f"status:{action}:{run_id}"


def _uids(work: RoundWork, kind: RunKind) -> list[int]:
    return sorted({item.miner_uid for item in work.items.get(kind, [])})


def plan_work_runs(
    works: list[RoundWork],
    *,
    batch_size: int,
    slots: int = 1,
    active: Callable[[RunJob, str], bool],
    failures: Callable[[RunJob, str, str | None], int],
) -> list[PlannedRun]:
    """Runs for due miner steps and scoring, never a kind for a round while one of it is queued or running.

    ``active(job, round_date)`` says whether a run is queued or running; ``failures(job, round_date, kind)``
    counts the failed or canceled runs (the crash generation). One miner pass serves every open round;
    scoring is one kind per round per tick, Day1 first and ERA5 when Day1 is quiet.
    """
    planned: list[PlannedRun] = []
    with_miners = [w for w in works if w.items.get(RunKind.MINERS)]
    if with_miners and not active(RunJob.ADVANCE_MINERS, ALL_ROUNDS):
        key = "+".join(w.run_key(RunKind.MINERS) for w in with_miners)
        key += crash_suffix(failures(RunJob.ADVANCE_MINERS, ALL_ROUNDS, None))
        steps = sum(len(w.items[RunKind.MINERS]) for w in with_miners)
        planned.append(PlannedRun(RunJob.ADVANCE_MINERS, key, ALL_ROUNDS, f"advance_miners_job for {steps} steps"))
    for work in works:
        for kind in (RunKind.DAY1, RunKind.ERA5):
            uids = _uids(work, kind)
            if not uids or active(RunJob.SCORE_BATCH, work.date):
                continue
            suffix = crash_suffix(failures(RunJob.SCORE_BATCH, work.date, str(kind)))
            for start, chunk in chunks(uids, batch_size, slots):
                config = {"run_id": work.run_id, "date": work.date, "kind": str(kind), "uids": chunk}
                planned.append(
                    PlannedRun(
                        RunJob.SCORE_BATCH,
                        f"{work.run_key(kind)}:{start}{suffix}",
                        work.date,
                        f"score_batch_job {kind} round {work.date}: uids {chunk}",
                        kind=str(kind),
                        op_config={"score_batch": config},
                    )
                )
            break
    return planned


def plan_finalize(work: RoundWork, rollup_succeeded: bool) -> list[PlannedRun]:
    """A settled round: the final rollup and the miner stats once, then (after it succeeded) completion."""
    if rollup_succeeded:
        return [status_run(work.run_id, work.date, StatusAction.COMPLETE)]
    return [
        PlannedRun(
            RunJob.ROUND_ROLLUP,
            final_run_key(work.date),
            work.date,
            f"round_rollup_job for round {work.date}",
            final=True,
            partition_key=work.date,
        ),
        PlannedRun(RunJob.MINER_STATS, stats_run_key(work.date), work.date, f"miner_stats_job for round {work.date}"),
    ]


def status_run(run_id: int, date: str, action: StatusAction) -> PlannedRun:
    return PlannedRun(
        RunJob.ROUND_STATUS,
        status_run_key(run_id, action),
        date,
        f"round_status_job {action} round {date}",
        op_config={"sync_round": {"run_id": run_id, "action": str(action)}},
    )

"""The state machines of SPEC section 4, the one table-driven transition check, and the status groups.

Every status change in the product goes through :func:`check_transition` (the work layer,
``weather_dagster.work``, calls it on every write); nothing else decides what may follow what. The
status groups below (due, done, terminal, open) are the only copies of those sets.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from enum import StrEnum


class RoundStatus(StrEnum):
    CREATED = "created"
    GFS_DOWNLOADING = "gfs_downloading"
    GFS_READY = "gfs_ready"
    QUERYING_MINERS = "querying_miners"
    SCORING_DAY1 = "scoring_day1"
    AWAITING_ERA5 = "awaiting_era5"
    SCORING_ERA5 = "scoring_era5"
    COMPLETED = "completed"
    ERROR = "error"
    EXPIRED = "expired"


class MinerForecastStatus(StrEnum):
    CREATED = "created"
    FETCH_INITIATED = "fetch_initiated"
    INFERENCE_RUNNING = "inference_running"
    FORECAST_READY = "forecast_ready"
    DAY1_SCORING = "day1_scoring"
    DAY1_SCORED = "day1_scored"
    ERA5_SCORING = "era5_scoring"
    ERA5_SCORED = "era5_scored"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY_SCHEDULED = "retry_scheduled"
    WAITING_FOR_TRUTH = "waiting_for_truth"


class StepName(StrEnum):
    """Units of work in the step log; round-level ones use the coordinator pseudo-miner."""

    ROUND_SETUP = "round_setup"
    REFERENCE_DATA = "reference_data"
    QUERY = "query"
    POLL = "poll"
    MANIFEST = "manifest"
    DAY1 = "day1"
    ERA5 = "era5"
    ROUND_FINALIZE = "round_finalize"


class IllegalTransition(ValueError):
    """A status change the state machine does not allow; names the machine and both states."""

    def __init__(self, machine: str, current: str, target: str) -> None:
        current, target = str(current), str(target)
        super().__init__(f"illegal {machine} transition: {current!r} -> {target!r}")
        self.machine, self.current, self.target = machine, current, target


_R = RoundStatus
ROUND_FORWARD = [
    _R.CREATED,
    _R.GFS_DOWNLOADING,
    _R.GFS_READY,
    _R.QUERYING_MINERS,
    _R.SCORING_DAY1,
    _R.AWAITING_ERA5,
    _R.SCORING_ERA5,
    _R.COMPLETED,
]
ROUND_TRANSITIONS: Mapping[RoundStatus, frozenset[RoundStatus]] = {
    **{current: frozenset({target, _R.ERROR, _R.EXPIRED}) for current, target in itertools.pairwise(ROUND_FORWARD)},
    # ERA5 leads arrive one at a time: a round goes back to waiting between leads.
    _R.SCORING_ERA5: frozenset({_R.AWAITING_ERA5, _R.COMPLETED, _R.ERROR, _R.EXPIRED}),
    _R.COMPLETED: frozenset(),
    _R.ERROR: frozenset(),
    _R.EXPIRED: frozenset(),
}

_M = MinerForecastStatus
_MINER_FORWARD = [
    _M.CREATED,
    _M.FETCH_INITIATED,
    _M.INFERENCE_RUNNING,
    _M.FORECAST_READY,
    _M.DAY1_SCORING,
    _M.DAY1_SCORED,
    _M.ERA5_SCORING,
    _M.ERA5_SCORED,
]
_MINER_TERMINAL = frozenset({_M.ERA5_SCORED, _M.FAILED, _M.CANCELLED})


def _miner_targets(current: MinerForecastStatus) -> frozenset[MinerForecastStatus]:
    if current in _MINER_TERMINAL:
        return frozenset()
    index = _MINER_FORWARD.index(current)
    targets = {_MINER_FORWARD[index + 1], _M.FAILED, _M.CANCELLED}
    if current is _M.CREATED:
        # The fast path: a miner may answer initiate-fetch with "completed" (forecast already done).
        targets.add(_M.FORECAST_READY)
    if current is _M.FETCH_INITIATED:
        targets.add(_M.FORECAST_READY)
    if current is _M.DAY1_SCORED:
        # Scoring the first ERA5 lead cannot fail the forecast by itself (SPEC section 4).
        targets.discard(_M.FAILED)
    if current is _M.ERA5_SCORING:
        # A failed lead leaves earlier leads in place; the forecast stays in era5_scoring.
        targets.discard(_M.FAILED)
    return frozenset(targets)


MINER_TRANSITIONS: Mapping[MinerForecastStatus, frozenset[MinerForecastStatus]] = {
    state: _miner_targets(state) for state in MinerForecastStatus
}

_S = StepStatus
STEP_TRANSITIONS: Mapping[StepStatus, frozenset[StepStatus]] = {
    _S.PENDING: frozenset({_S.IN_PROGRESS, _S.FAILED}),
    _S.IN_PROGRESS: frozenset({_S.SUCCEEDED, _S.FAILED, _S.RETRY_SCHEDULED, _S.WAITING_FOR_TRUTH}),
    _S.RETRY_SCHEDULED: frozenset({_S.IN_PROGRESS, _S.FAILED}),
    _S.WAITING_FOR_TRUTH: frozenset({_S.IN_PROGRESS, _S.FAILED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
}

MACHINES: Mapping[str, Mapping] = {
    "round": ROUND_TRANSITIONS,
    "miner_forecast": MINER_TRANSITIONS,
    "step": STEP_TRANSITIONS,
}


def allowed(machine: str, current: str, target: str) -> bool:
    table = MACHINES[machine]
    enum_type = type(next(iter(table)))
    return enum_type(target) in table[enum_type(current)]


def check_transition(machine: str, current: str, target: str) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is in the machine's table.

    Staying in the same state is not a transition and is rejected too: callers that want idempotent
    writes go through ``work.guard.settle``, which treats "already there" as a replay before calling this.
    """
    if not allowed(machine, current, target):
        raise IllegalTransition(machine, str(current), str(target))


def is_terminal(machine: str, state: str) -> bool:
    table = MACHINES[machine]
    enum_type = type(next(iter(table)))
    return not table[enum_type(state)]


def predecessors(machine: str, target: str) -> frozenset[str]:
    """States from which ``target`` may be entered: the guard of every status write.

    ``target`` itself is never among them (no self-loops). A replay of a write whose row is already in
    ``target`` is recognised by the work layer after the guard matched nothing (see
    ``work.transitions.settle``), and it writes nothing.
    """
    table = MACHINES[machine]
    enum_type = type(next(iter(table)))
    goal = enum_type(target)
    return frozenset({state for state, targets in table.items() if goal in targets})


def is_replay(current: str | None, target: str) -> bool:
    """The stored state already is the target: a repeated call, not a transition (nothing is written)."""
    return current is not None and str(current) == str(target)


# -- status groups (defined once; SQL filters use the ``*_VALUES`` tuples) --------------------------------

# A step that may be claimed once its time has come (in_progress under an expired lease is due too).
STEP_DUE = frozenset({_S.PENDING, _S.RETRY_SCHEDULED, _S.WAITING_FOR_TRUTH})
STEP_DONE = frozenset({_S.SUCCEEDED, _S.FAILED})
# A forecast that no step will move again.
FORECAST_TERMINAL = _MINER_TERMINAL
# A forecast whose thread ended without a score (a step of it only records that and stops).
FORECAST_CLOSED = frozenset({_M.FAILED, _M.CANCELLED})
# Rounds the automation still looks at (an errored round is still finalized).
ROUND_OPEN = frozenset(s for s in RoundStatus if s not in (_R.COMPLETED, _R.EXPIRED))


def values(statuses: frozenset[StrEnum]) -> tuple[str, ...]:
    """A status group as sorted plain strings, for ``IN (...)`` filters."""
    return tuple(sorted(str(s) for s in statuses))


STEP_DUE_VALUES = values(STEP_DUE)
STEP_DONE_VALUES = values(STEP_DONE)
FORECAST_TERMINAL_VALUES = values(FORECAST_TERMINAL)
FORECAST_CLOSED_VALUES = values(FORECAST_CLOSED)
ROUND_OPEN_VALUES = values(ROUND_OPEN)

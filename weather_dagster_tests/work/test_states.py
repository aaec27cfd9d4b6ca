"""Every (from, to) pair of every state machine: allowed pairs pass, all others raise."""

from __future__ import annotations

import itertools

import pytest

from weather_dagster.core.states import (
    MACHINES,
    IllegalTransition,
    MinerForecastStatus,
    RoundStatus,
    StepStatus,
    check_transition,
    is_terminal,
)

M = MinerForecastStatus
R = RoundStatus
S = StepStatus

# The expected tables, written out by hand from SPEC section 4 (not derived from the code under test).
EXPECTED = {
    "round": {
        R.CREATED: {R.GFS_DOWNLOADING, R.ERROR, R.EXPIRED},
        R.GFS_DOWNLOADING: {R.GFS_READY, R.ERROR, R.EXPIRED},
        R.GFS_READY: {R.QUERYING_MINERS, R.ERROR, R.EXPIRED},
        R.QUERYING_MINERS: {R.SCORING_DAY1, R.ERROR, R.EXPIRED},
        R.SCORING_DAY1: {R.AWAITING_ERA5, R.ERROR, R.EXPIRED},
        R.AWAITING_ERA5: {R.SCORING_ERA5, R.ERROR, R.EXPIRED},
        R.SCORING_ERA5: {R.AWAITING_ERA5, R.COMPLETED, R.ERROR, R.EXPIRED},
        R.COMPLETED: set(),
        R.ERROR: set(),
        R.EXPIRED: set(),
    },
    "miner_forecast": {
        M.CREATED: {M.FETCH_INITIATED, M.FORECAST_READY, M.FAILED, M.CANCELLED},
        M.FETCH_INITIATED: {M.INFERENCE_RUNNING, M.FORECAST_READY, M.FAILED, M.CANCELLED},
        M.INFERENCE_RUNNING: {M.FORECAST_READY, M.FAILED, M.CANCELLED},
        M.FORECAST_READY: {M.DAY1_SCORING, M.FAILED, M.CANCELLED},
        M.DAY1_SCORING: {M.DAY1_SCORED, M.FAILED, M.CANCELLED},
        M.DAY1_SCORED: {M.ERA5_SCORING, M.CANCELLED},
        M.ERA5_SCORING: {M.ERA5_SCORED, M.CANCELLED},
        M.ERA5_SCORED: set(),
        M.FAILED: set(),
        M.CANCELLED: set(),
    },
    "step": {
        S.PENDING: {S.IN_PROGRESS, S.FAILED},
        S.IN_PROGRESS: {S.SUCCEEDED, S.FAILED, S.RETRY_SCHEDULED, S.WAITING_FOR_TRUTH},
        S.RETRY_SCHEDULED: {S.IN_PROGRESS, S.FAILED},
        S.WAITING_FOR_TRUTH: {S.IN_PROGRESS, S.FAILED},
        S.SUCCEEDED: set(),
        S.FAILED: set(),
    },
}

ALL_PAIRS = [
    (machine, current, target)
    for machine, table in EXPECTED.items()
    for current, target in itertools.product(table, repeat=2)
]


def test_tables_cover_every_state() -> None:
    for machine, table in MACHINES.items():
        assert set(table) == set(EXPECTED[machine]), machine


@pytest.mark.parametrize(("machine", "current", "target"), ALL_PAIRS, ids=lambda v: str(v))
def test_every_pair(machine: str, current: str, target: str) -> None:
    if target in EXPECTED[machine][current]:
        check_transition(machine, current, target)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(machine, current, target)
        assert f"'{current}'" in str(info.value) and f"'{target}'" in str(info.value)
        assert machine in str(info.value)


def test_terminal_states() -> None:
    assert is_terminal("miner_forecast", "failed") and is_terminal("miner_forecast", "era5_scored")
    assert not is_terminal("miner_forecast", "day1_scored")
    assert is_terminal("round", "expired") and not is_terminal("step", "retry_scheduled")


def test_no_state_is_its_own_predecessor() -> None:
    """The write guard (``predecessors``) never lets a state follow itself (it used to, issue 12)."""
    from weather_dagster.core.states import predecessors

    for machine, table in EXPECTED.items():
        for state in table:
            expected = {current for current, targets in table.items() if state in targets}
            assert predecessors(machine, state) == expected, (machine, state)

"""The work layer: every write of a step, forecast or round status, in the caller's transaction.

Shaped like procrastinate's ``JobManager``: named operations (claim, start, succeed, fail,
schedule_retry, wait_for_truth, cancel, retry_now; set_miner_status and set_round_status for the two status
machines), each one guarded statement on the SQLAlchemy Core ``Connection`` the caller passes in, so a
step and its forecast's status move in one transaction. The guard is the transition table of
``core.states``: a move the table does not allow raises ``IllegalTransition`` (no silent path); a
call whose row already is in the target state is a replay and writes nothing (the op returns False).
``due_condition`` is the one "which step is due" predicate, used by claims and by
``orchestration.due``.
"""

from weather_dagster.work.due import ClaimedStep, claim, due_condition
from weather_dagster.work.forecasts import response_where, set_miner_status, set_round_status
from weather_dagster.work.keys import StepKey
from weather_dagster.work.steps import (
    cancel,
    ensure_pending,
    fail,
    get,
    record_failure,
    retry_now,
    schedule_retry,
    start,
    succeed,
    wait_for_truth,
)

__all__ = [
    "ClaimedStep",
    "StepKey",
    "cancel",
    "claim",
    "due_condition",
    "ensure_pending",
    "fail",
    "get",
    "record_failure",
    "response_where",
    "retry_now",
    "schedule_retry",
    "set_miner_status",
    "set_round_status",
    "start",
    "succeed",
    "wait_for_truth",
]

"""What a guarded write that matched no row means: a replay (nothing to do) or an illegal move."""

from __future__ import annotations

from weather_dagster.core.states import IllegalTransition, check_transition, is_replay


def settle(machine: str, current: str | None, target: str) -> bool:
    """Called when a guarded UPDATE matched no row. Returns False for a replay; raises otherwise.

    ``current`` is the stored state (None: no row). A replay (the row already is in ``target``) is the
    only case that passes; an illegal move raises from :func:`check_transition` with the machine and
    both states. A legal move the guard still missed (a concurrent writer moved the row between the
    two statements) or a missing row raises too, so the caller's transaction is rolled back whole.
    """
    if is_replay(current, target):
        return False
    if current is not None:
        check_transition(machine, current, target)
    raise IllegalTransition(machine, current or "(no row)", target)

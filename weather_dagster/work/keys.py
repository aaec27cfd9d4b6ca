"""The natural key of a step row, built in one place (``StepKey.from_row`` for any selected row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from weather_dagster.core.states import StepName
from weather_dagster.db.schema import COORDINATOR_HOTKEY, COORDINATOR_UID, forecast_steps


@dataclass(frozen=True)
class StepKey:
    """The natural key of a step row; round-level steps use the coordinator pseudo-miner."""

    run_id: int
    miner_uid: int
    miner_hotkey: str
    step_name: StepName
    substep: str = ""
    lead_hours: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_name", StepName(self.step_name))
        if self.miner_uid == COORDINATOR_UID and self.miner_hotkey != COORDINATOR_HOTKEY:
            raise ValueError(f"round-level steps use miner_hotkey {COORDINATOR_HOTKEY!r}")
        if not self.miner_hotkey:
            raise ValueError("miner_hotkey must not be empty")

    @classmethod
    def coordinator(cls, run_id: int, step_name: StepName, substep: str = "", lead_hours: int = 0) -> StepKey:
        return cls(run_id, COORDINATOR_UID, COORDINATOR_HOTKEY, step_name, substep, lead_hours)

    @classmethod
    def from_row(cls, row: Any) -> StepKey:
        """The key of a selected ``weather_forecast_steps`` row (or any row with those six columns)."""
        return cls(row.run_id, row.miner_uid, row.miner_hotkey, StepName(row.step_name), row.substep, row.lead_hours)

    def sibling(self, step_name: StepName, lead_hours: int = 0) -> StepKey:
        """Another step of the same miner in the same round."""
        return StepKey(self.run_id, self.miner_uid, self.miner_hotkey, step_name, lead_hours=lead_hours)

    @property
    def is_miner_step(self) -> bool:
        return self.miner_uid != COORDINATOR_UID

    @property
    def stage(self) -> str:
        return f"{self.step_name}:{self.lead_hours}h" if self.lead_hours else str(self.step_name)

    def as_values(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "miner_uid": self.miner_uid,
            "miner_hotkey": self.miner_hotkey,
            "step_name": str(self.step_name),
            "substep": self.substep,
            "lead_hours": self.lead_hours,
        }

    def where(self, table: sa.Table = forecast_steps) -> sa.ColumnElement[bool]:
        return sa.and_(*(table.c[name] == value for name, value in self.as_values().items()))

"""Where the miner set comes from: a metagraph snapshot, written to the ``miners`` table.

The default source is a JSON file (``settings.miners.metagraph_file``; the demo fleet writes one):
``{"miners": [{"uid", "hotkey", "coldkey", "ip", "port", "stake"}]}``. A chain adapter can offer the
same ``snapshot()`` method. A hotkey change on a uid overwrites the ``miners`` row (the current
registration) but never the history, which is keyed by (uid, hotkey) elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from weather_dagster.db.schema import miners
from weather_dagster.db.types import utcnow
from weather_dagster.db.upsert import insert_for
from weather_dagster.miners.fiber_client import MinerAddress
from weather_dagster.settings import Settings


class MinerInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    uid: int = Field(ge=0, le=255)
    hotkey: str = Field(min_length=1, max_length=64)
    coldkey: str = Field("", max_length=64)
    ip: str = Field("", max_length=64)
    port: int = Field(0, ge=0, le=65535)
    stake: float = 0.0
    # Read from the chain (absent from metagraph files): active validators get no weight.
    validator_permit: bool = False

    @property
    def address(self) -> MinerAddress:
        return MinerAddress(self.uid, self.hotkey, self.ip, self.port)


class MetagraphSource(Protocol):
    def snapshot(self) -> list[MinerInfo]: ...


@dataclass(frozen=True)
class FileMetagraph:
    """The metagraph as a JSON file (the demo fleet's, or one exported from the chain)."""

    path: Path
    max_miners: int = 256

    def snapshot(self) -> list[MinerInfo]:
        data = json.loads(self.path.read_text())
        rows = data["miners"] if isinstance(data, dict) else data
        infos = [MinerInfo.model_validate(row) for row in rows]
        uids = [m.uid for m in infos]
        if len(uids) != len(set(uids)):
            raise ValueError(f"metagraph {self.path} lists a uid twice")
        return sorted(infos, key=lambda m: m.uid)[: self.max_miners]


def metagraph_from_settings(settings: Settings) -> FileMetagraph:
    if settings.miners.metagraph_file is None:
        raise ValueError("no metagraph source: set WEATHER_MINERS__METAGRAPH_FILE (the demo fleet writes one)")
    return FileMetagraph(settings.miners.metagraph_file, settings.miners.max_miners)


def sync_miners_table(engine: sa.Engine, snapshot: list[MinerInfo]) -> None:
    """Upsert the snapshot into ``miners`` (uid is the key; the hotkey follows the chain)."""
    if not snapshot:
        return
    now = utcnow()
    with engine.begin() as conn:
        for info in snapshot:
            values = {**info.model_dump(), "updated_at": now}
            stmt = insert_for(conn, miners).values(**values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["uid"], set_={k: stmt.excluded[k] for k in values}))


def registered(engine: sa.Engine) -> dict[int, MinerInfo]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(miners)).all()
    return {r.uid: MinerInfo.model_validate(dict(r._mapping)) for r in rows}

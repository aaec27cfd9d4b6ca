"""The metagraph from the chain, behind the same ``snapshot()`` as the file metagraph.

Read at round creation (``forecast_round`` calls ``snapshot()``) and by the refresh job between
rounds. Today's rules hold: a hotkey change overwrites the ``miners`` row, so the old hotkey's
thread is cancelled at its next step with its history kept; a uid no longer on the subnet loses its
``miners`` row at the next refresh, which cancels its thread the same way.
"""

from __future__ import annotations

import sqlalchemy as sa

from weather_dagster.chain.client import ChainClient
from weather_dagster.chain.convert import neurons_from_sdk
from weather_dagster.db.schema import miners
from weather_dagster.miners.metagraph import MinerInfo, sync_miners_table


class ChainMetagraph:
    """``snapshot()`` = the subnet's neurons now (one SDK call), as :class:`MinerInfo` by uid."""

    def __init__(self, client: ChainClient, netuid: int, max_miners: int = 256) -> None:
        self.client, self.netuid, self.max_miners = client, netuid, max_miners

    def snapshot(self) -> list[MinerInfo]:
        return [n.info for n in neurons_from_sdk(self.client.neurons(self.netuid), self.max_miners)]


def refresh_miners_table(engine: sa.Engine, snapshot: list[MinerInfo]) -> dict[str, int]:
    """Upsert the snapshot and drop the rows of uids the chain no longer lists.

    An empty snapshot changes nothing: a chain read that returns no neurons is a broken read, and
    treating it as "everyone deregistered" would cancel every miner's thread.
    """
    if not snapshot:
        return {"upserted": 0, "removed": 0, "hotkeys_changed": 0}
    with engine.connect() as conn:
        before = dict(conn.execute(sa.select(miners.c.uid, miners.c.hotkey)).all())
    sync_miners_table(engine, snapshot)
    listed = {info.uid for info in snapshot}
    gone = sorted(set(before) - listed)
    if gone:
        with engine.begin() as conn:
            conn.execute(sa.delete(miners).where(miners.c.uid.in_(gone)))
    changed = sum(1 for info in snapshot if info.uid in before and before[info.uid] != info.hotkey)
    return {"upserted": len(snapshot), "removed": len(gone), "hotkeys_changed": changed}

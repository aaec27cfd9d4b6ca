"""One field's per-miner work, side by side on a few threads (field-major scoring of a batch).

A batch reads each truth field once, then scores every miner's copy of it. That per-miner work is
the reading and hashing of the miner's chunk, the NaN gate, the checks and the metric kernel, all of
which release the GIL (sockets, hashlib, numba ``nogil``), so on a machine with several cores the
miners of one field run in parallel. Fields stay in order and every miner's work on a field is its
own (its store, its tallies), so the results do not depend on the number of threads; memory stays
at one field per miner in flight. ``threads`` <= 1 runs everything in the calling thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from weather_dagster.settings import Settings


def scoring_threads(settings: Settings) -> int:
    """Threads per batch: ``round.scoring_threads``, or one per CPU core."""
    return settings.round.scoring_threads or os.cpu_count() or 1


class MinerFanout:
    def __init__(self, threads: int, miners: int) -> None:
        self._threads = max(1, min(threads, miners))
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> MinerFanout:
        if self._threads > 1:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="score-miner")
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def each(self, keys: Sequence[Hashable], work: Callable[..., None], *args: Any) -> None:
        """``work(key, *args)`` for every key; returns when all are done (the first error is raised)."""
        if self._pool is None or len(keys) <= 1:
            for key in keys:
                work(key, *args)
            return
        futures = [self._pool.submit(work, key, *args) for key in keys]
        errors = [future.exception() for future in futures]  # waits for every miner of the field
        first = next((error for error in errors if error is not None), None)
        if first is not None:
            raise first

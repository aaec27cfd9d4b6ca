"""The demo fleet's shared field cache keeps each init time's fields apart (issue 10, part 5)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from weather_dagster.miners.demo.forecast import FieldCache, ForecastStore
from weather_dagster.reference.grid import Grid

GRID = Grid(3.0)
FIRST = datetime(2026, 6, 1, 0, tzinfo=UTC)
SECOND = datetime(2026, 6, 2, 0, tzinfo=UTC)


def _store(init: datetime, cache: FieldCache | None) -> ForecastStore:
    return ForecastStore(GRID, init, uid=3, steps=2, cache=cache)


def test_shared_cache_serves_each_init_date_its_own_fields() -> None:
    cache = FieldCache(GRID)
    first, second = _store(FIRST, cache), _store(SECOND, cache)
    a = first.field("2t", None, 6)  # fills the shared cache for the first init date
    b = second.field("2t", None, 6)  # same variable, lead and skill: must not reuse it
    # Each equals what an uncached store of its own init date serves.
    np.testing.assert_array_equal(a, _store(FIRST, None).field("2t", None, 6))
    np.testing.assert_array_equal(b, _store(SECOND, None).field("2t", None, 6))
    assert not np.array_equal(a, b)
    # And the manifests of the two stores hash their own chunks (honest miners pass the manifest check).
    assert first.file_hashes()["2t/0.0.0"] != second.file_hashes()["2t/0.0.0"]
    assert second.file_hashes() == _store(SECOND, None).file_hashes()

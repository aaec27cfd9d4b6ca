"""Pytest plugin: synthetic reference data (GFS GRIB2 + .idx, ERA5 and climatology Zarr) on loopback.

Fixtures (reusable by every area):
- ``reference_tree`` (session): files for a 2.0-degree grid, GFS analyses every 6 h for
  ``REFERENCE_START`` .. +2 days, 00Z forecasts (lead 12 h) for two days, ERA5 at 00Z for
  ``REFERENCE_START`` .. +10 days, climatology for those days of year at hours 0 and 12.
- ``reference_server`` (session): a :class:`SyntheticHttpServer` serving it on 127.0.0.1 (ephemeral
  port), stopped at teardown; ``reference_server.log`` records every request.
- ``reference_urls``: ``settings.reference`` overrides (URLs and grid); clears faults and the log.
- ``reference_settings``: ``Settings`` with those overrides and a fresh ``data_dir``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from weather_dagster.reference.grid import Grid
from weather_dagster.reference.synthetic.server import SyntheticHttpServer
from weather_dagster.reference.synthetic.tree import SyntheticTree, build_tree
from weather_dagster.settings import Settings, load_settings

REFERENCE_START = datetime(2025, 6, 1, tzinfo=UTC)
REFERENCE_GRID = Grid(2.0)


@pytest.fixture(scope="session")
def reference_tree(tmp_path_factory: pytest.TempPathFactory) -> SyntheticTree:
    root = tmp_path_factory.mktemp("reference-tree")
    return build_tree(root, REFERENCE_GRID, REFERENCE_START, days=10)


@pytest.fixture(scope="session")
def reference_server(reference_tree: SyntheticTree) -> Iterator[SyntheticHttpServer]:
    server = SyntheticHttpServer(reference_tree.root).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def reference_urls(reference_server: SyntheticHttpServer, reference_tree: SyntheticTree) -> dict[str, Any]:
    reference_server.faults.clear()
    reference_server.log.clear()
    return {**reference_tree.urls(reference_server.base_url), "http_blip_backoff_s": 0.01}


@pytest.fixture
def reference_settings(tmp_path: Path, reference_urls: dict[str, Any]) -> Settings:
    return load_settings(data_dir=tmp_path / "data", reference=reference_urls)

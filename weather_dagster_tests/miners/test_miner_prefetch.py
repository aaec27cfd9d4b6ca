"""The verified store's read-ahead keeps every security check: prefetched bytes are hash-checked."""

from __future__ import annotations

import pytest

from weather_dagster.core.errors import ManifestError
from weather_dagster.miners.manifest import file_hash
from weather_dagster.miners.reader import VerifiedStore

GOOD = {"2t/0.0.0": b"a" * 64, "2t/1.0.0": b"b" * 64}


def _store(served: dict[str, bytes], calls: list[str]) -> VerifiedStore:
    def fetch(key: str, max_bytes: int) -> bytes:
        calls.append(key)
        return served[key]

    files = {key: file_hash(key, data) for key, data in GOOD.items()}
    return VerifiedStore(files, fetch, max_metadata_bytes=1024, max_chunk_bytes=1024)


def test_prefetched_chunk_is_served_once_and_verified() -> None:
    calls: list[str] = []
    store = _store(GOOD, calls)
    store.prefetch("2t/1.0.0")
    store.prefetch("2t/1.0.0")  # already pending: not fetched twice
    store.prefetch("2t/9.0.0")  # not in the manifest: never fetched
    assert store.read_verified("2t/1.0.0") == GOOD["2t/1.0.0"]
    assert calls == ["2t/1.0.0"]
    store.close()


def test_tampered_prefetched_chunk_is_refused() -> None:
    calls: list[str] = []
    store = _store({**GOOD, "2t/1.0.0": b"x" * 64}, calls)
    store.prefetch("2t/1.0.0")
    with pytest.raises(ManifestError, match="does not match the frozen manifest"):
        store.read_verified("2t/1.0.0")
    store.close()

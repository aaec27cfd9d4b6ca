"""The verified store's read-ahead keeps every security check: prefetched bytes are hash-checked."""

from __future__ import annotations

import pytest

from weather_dagster.core.errors import ManifestError
from weather_dagster.miners.manifest import file_hash
from weather_dagster.miners.reader import VerifiedStore

GOOD = {"2t/0.0.0": b"a" * 64, "2t/1.0.0": b"b" * 64, "2t/2.0.0": b"c" * 64, "2t/3.0.0": b"d" * 64}


def _store(served: dict[str, bytes], calls: list[str]) -> VerifiedStore:
    def fetch(key: str, max_bytes: int) -> bytes:
        calls.append(key)
        return served[key]

    files = {key: file_hash(key, data) for key, data in GOOD.items()}
    return VerifiedStore(files, fetch, max_metadata_bytes=1024, max_chunk_bytes=1024)


def test_prefetched_chunk_is_served_once_and_verified() -> None:
    calls: list[str] = []
    store = _store(GOOD, calls)
    store.prefetch(["2t/1.0.0"])
    store.prefetch(["2t/1.0.0", "2t/9.0.0"])  # already pending: not fetched twice; not listed: never
    assert store.read_verified("2t/1.0.0") == GOOD["2t/1.0.0"]
    assert calls == ["2t/1.0.0"]
    store.close()


def test_the_read_ahead_window_holds_at_most_its_chunks_and_drops_what_left_it() -> None:
    calls: list[str] = []
    store = _store(GOOD, calls)
    assert store.read_ahead_chunks == 2
    store.prefetch(["2t/0.0.0", "2t/1.0.0", "2t/2.0.0"])  # a window of 2: the third is not read
    assert store.read_decoded("2t/0.0.0") == GOOD["2t/0.0.0"]
    store.prefetch(["2t/2.0.0", "2t/3.0.0"])  # 2t/1.0.0 left the window unread: dropped
    assert store.read_decoded("2t/2.0.0") == GOOD["2t/2.0.0"]
    assert store.read_decoded("2t/3.0.0") == GOOD["2t/3.0.0"]
    assert store.read_decoded("2t/1.0.0") == GOOD["2t/1.0.0"]  # read again, on demand
    # 2t/1.0.0: cancelled before its read started (once in all), or read and thrown away (twice).
    assert calls.count("2t/0.0.0") == calls.count("2t/2.0.0") == calls.count("2t/3.0.0") == 1
    assert calls.count("2t/1.0.0") in (1, 2) and len(calls) <= 5
    store.close()


def test_tampered_prefetched_chunk_is_refused() -> None:
    calls: list[str] = []
    store = _store({**GOOD, "2t/1.0.0": b"x" * 64}, calls)
    store.prefetch(["2t/1.0.0"])
    with pytest.raises(ManifestError, match="does not match the frozen manifest"):
        store.read_verified("2t/1.0.0")
    store.close()

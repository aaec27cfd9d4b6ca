"""The byte form receipts are signed in, and the digests of the reference fields a score read.

A field digest (receipt version 2) is BLAKE3 over the field's C-contiguous bytes as scoring got
them (after decoding); the field's name, level, time, dtype and shape sit beside it in the receipt,
which is signed as a whole. Version 1 hashed that header in front of the bytes, which ruled out
computing a digest once per cached file: replay still recomputes version 1 receipts their way.

Where a field comes from the partition cache, its digest was computed when the cache entry was
written (``reference.cache``: over the very chunk bytes a read returns, kept only while the file's
size, mtime and inode are unchanged), so scoring a miner-lead hashes nothing; any other field is
hashed as read, on a background thread. Replay never takes a cached digest: it hashes what it reads.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
from blake3 import blake3

from weather_dagster.reference.cache import DIGESTED_DTYPE
from weather_dagster.scoring.store import clean

RECEIPT_VERSION = 2
DIGEST = "blake3"  # the key of each input's field digest


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def canonical_json(value: Any) -> bytes:
    """The one byte form that is hashed and signed (json floats are ``repr``: shortest round-trip).

    A value that is already clean (str keys; str, int, finite float, bool, None, lists) is encoded
    as it is, by the C encoder; anything else (numpy scalars, non-finite floats, tuples of them)
    raises there and goes through :func:`clean` first. Both give the same bytes for a clean value:
    walking a receipt's ~3000 nodes in Python was most of what writing one cost."""
    try:
        return _dumps(value)
    except (TypeError, ValueError):
        return _dumps(clean(value))


def plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, np.generic):
        return value.item()
    return value


def field_digest(entry: Mapping[str, Any], values: np.ndarray, version: int = RECEIPT_VERSION) -> str:
    """BLAKE3 of the field's bytes (version 1: of the canonical header, NUL, then the bytes).

    BLAKE3, not sha256: as secure, a quarter of the cost on 4 MB fields (``bench_receipts``)."""
    digest = blake3(canonical_json(dict(entry)) + b"\0") if version == 1 else blake3()
    digest.update(memoryview(np.ascontiguousarray(values)).cast("B"))
    return digest.hexdigest()


DigestLookup = Callable[..., "str | None"]


class FieldDigests:
    """Every reference field scoring read, in read order, with its digest (a repeat is kept once).

    ``trust_cache``: take the digest a cached field's source recorded when the cache was written
    (``cached_digest``) instead of hashing it again; replay passes False. Fields without one are
    hashed on one background thread (BLAKE3 releases the GIL), overlapping the scoring of the field
    just read; at most ``max_pending`` wait, so memory stays a few fields. Scoring never writes into
    the reference arrays it reads, so the bytes hashed are those used.
    """

    def __init__(self, max_pending: int = 4, *, trust_cache: bool = True, version: int = RECEIPT_VERSION) -> None:
        self._entries: list[dict[str, Any]] = []
        self._seen: set[tuple] = set()
        self._pending: deque[tuple[dict[str, Any], Future]] = deque()
        self._max_pending = max_pending
        self._pool: ThreadPoolExecutor | None = None
        self.trust_cache = trust_cache and version == RECEIPT_VERSION
        self.version = version
        self.hashed = 0  # fields hashed here (the rest came with a cached digest)

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Every digest, once all are computed (the background thread is released)."""
        while self._pending:
            self._settle_oldest()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        return self._entries

    def _settle_oldest(self) -> None:
        entry, future = self._pending.popleft()
        entry[DIGEST] = future.result()

    def wrap(self, source: Any, name: str) -> _Recorded:
        """``source`` with its reads recorded under ``name`` (era5, gfs_analysis, gfs_forecast, climatology)."""
        return _Recorded(source, name, self)

    def record(
        self,
        source: str,
        variable: str,
        level: int | None,
        at: tuple,
        values: np.ndarray,
        cached: Callable[[], str | None] | None = None,
    ) -> None:
        stamps = [plain(a) for a in at]
        key = (source, variable, level, *stamps, values.dtype.str, *values.shape)
        if key in self._seen:
            return
        self._seen.add(key)
        entry = {
            "source": source,
            "variable": variable,
            "level": level,
            "at": stamps,
            "dtype": values.dtype.str,
            "shape": list(values.shape),
        }
        self._entries.append(entry)
        known = cached() if cached is not None and self.trust_cache and values.dtype == DIGESTED_DTYPE else None
        if known is not None:
            entry[DIGEST] = known
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receipt-digest")
        while len(self._pending) >= self._max_pending:
            self._settle_oldest()
        self.hashed += 1
        self._pending.append((entry, self._pool.submit(field_digest, dict(entry), values, self.version)))


class _Recorded:
    """A field source that records a digest of each field it returns (everything else passes through)."""

    def __init__(self, inner: Any, name: str, digests: FieldDigests) -> None:
        self._inner, self._name, self._digests = inner, name, digests
        self._lookup: DigestLookup | None = getattr(inner, "cached_digest", None)

    @property
    def grid(self):
        return self._inner.grid

    def field(self, variable: str, level_hpa: int | None, *at: Any) -> np.ndarray:
        values = self._inner.field(variable, level_hpa, *at)
        lookup = self._lookup
        cached = None if lookup is None else (lambda: lookup(variable, level_hpa, *at))
        self._digests.record(self._name, variable, level_hpa, at, values, cached)
        return values

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

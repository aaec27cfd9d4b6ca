"""The read-only Zarr store over a miner's frozen forecast: every byte checked against the manifest.

Every key it returns, metadata included, must be listed in the frozen manifest and hash-match it,
else ManifestError. After ``restrict_to`` zarr sees only the arrays scoring reads, without codecs:
every chunk is decoded by ``miners.decoding`` under the bound of its declared chunk shape.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype

from weather_dagster.core.errors import ManifestError, SafetyViolation
from weather_dagster.miners.decoding import ChunkSpec, decode_chunk, load_json, zarr_view
from weather_dagster.miners.manifest import file_hash
from weather_dagster.miners.perimeter import check_store_key

METADATA_SUFFIXES = (".zmetadata", ".zarray", ".zattrs", ".zgroup", "zarr.json")

Fetch = Callable[[str, int], bytes]  # (key, max_bytes) -> bytes, blocking


def is_metadata_key(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in METADATA_SUFFIXES


class VerifiedStore(Store):
    """Read-only Zarr store whose every byte is checked against a frozen manifest."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True
    supports_partial_writes = False

    def __init__(
        self,
        files: dict[str, str],
        fetch: Fetch,
        *,
        max_metadata_bytes: int,
        max_chunk_bytes: int,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(read_only=True)
        self._on_close = on_close
        self._files = dict(files)
        self._fetch = fetch
        self._max_metadata = max_metadata_bytes
        self._max_chunk = max_chunk_bytes
        self._metadata_cache: dict[str, bytes] = {}
        # Set by restrict_to(): the only arrays zarr may read, and the metadata zarr is shown.
        self._specs: dict[str, ChunkSpec] | None = None
        self._served: dict[str, bytes] = {}
        # One request at a time per store: a miner task never has more than one request in flight,
        # which is what keeps a whole round within settings.miners.http_concurrency.
        self._lock = threading.Lock()
        self.reads = 0
        # Read-ahead of the next chunk scoring will ask for (at most one, verified like any read):
        # the miner's transfer and the hash overlap the truth reads and the metrics of this field.
        self._prefetched: dict[str, Future[bytes]] = {}
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetch_lock = threading.Lock()

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def close(self) -> None:
        super().close()
        if self._prefetcher is not None:
            # Not waiting: closing the HTTP client below ends a read still in flight.
            self._prefetcher.shutdown(wait=False, cancel_futures=True)
            self._prefetcher = None
        with self._prefetch_lock:
            self._prefetched.clear()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def prefetch(self, key: str) -> None:
        """Start reading ``key`` in the background; a later ``read_verified(key)`` takes the result.

        Only a listed, not yet prefetched chunk is fetched, one at a time (the store lock still
        serializes requests), and its bytes are hash-checked before anyone can use them.
        """
        with self._prefetch_lock:
            if key in self._prefetched or key not in self._files or is_metadata_key(key):
                return
            if self._prefetcher is None:
                self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-prefetch")
            for stale in [k for k, f in self._prefetched.items() if f.done()]:
                self._prefetched.pop(stale)  # never asked for: drop it rather than hold its bytes
            self._prefetched[key] = self._prefetcher.submit(self._read_verified, key)

    def read_verified(self, key: str) -> bytes:
        """The bytes of ``key`` after the manifest check (blocking)."""
        with self._prefetch_lock:
            pending = self._prefetched.pop(key, None)
        if pending is not None:
            return pending.result()  # raises what the verified read raised (e.g. ManifestError)
        return self._read_verified(key)

    def _read_verified(self, key: str) -> bytes:
        check_store_key(key)
        expected = self._files.get(key)
        if expected is None:
            raise ManifestError(f"store key {key!r} is not in the frozen manifest")
        if key in self._metadata_cache:
            return self._metadata_cache[key]
        metadata = is_metadata_key(key)
        with self._lock:
            data = self._fetch(key, self._max_metadata if metadata else self._max_chunk)
            self.reads += 1
        if file_hash(key, data) != expected.lower():
            raise ManifestError(f"store key {key!r} does not match the frozen manifest (changed after freeze)")
        if metadata:
            self._metadata_cache[key] = data
        return data

    def restrict_to(self, arrays: Iterable[str]) -> None:
        """From now on zarr sees only ``arrays`` (the ones scoring needs), and decoded chunks.

        The metadata zarr is shown lists just those arrays, with no codecs: every chunk is decoded
        here with output bounds (``decoding.decode_chunk``), so no Zarr or numcodecs decoder ever
        runs on a miner's bytes, and extra variables, coordinates or attributes are never read.
        """
        meta = load_json(self.read_verified(".zmetadata"), ".zmetadata")["metadata"]
        self._specs, self._served = zarr_view(meta, arrays, max_chunk_bytes=self._max_chunk)

    def read_decoded(self, key: str) -> bytes:
        """A verified chunk of a needed array, decoded under the bounds of its declared chunk shape."""
        data = self.read_verified(key)
        if self._specs is None:
            return data
        return decode_chunk(key, data, self._specs[key.split("/", 1)[0]], max_chunk_bytes=self._max_chunk)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        if self._specs is not None and is_metadata_key(key):
            shown = self._served.get(key)  # consolidated: per-array files are never fetched
            return None if shown is None else prototype.buffer.from_bytes(shown)
        if key not in self._files:
            if is_metadata_key(key):
                return None  # optional metadata zarr probes for (e.g. zarr.json) is simply absent
            # A chunk the manifest does not list would silently read as fill values: refuse it.
            raise ManifestError(f"store key {key!r} is not in the frozen manifest")
        if self._specs is not None and key.split("/", 1)[0] not in self._specs:
            raise SafetyViolation(f"store key {key!r} is not part of an array scoring reads")
        data = await asyncio.to_thread(self.read_decoded, key)
        if isinstance(byte_range, RangeByteRequest):
            data = data[byte_range.start : byte_range.end]
        elif isinstance(byte_range, OffsetByteRequest):
            data = data[byte_range.offset :]
        elif isinstance(byte_range, SuffixByteRequest):
            data = data[-byte_range.suffix :]
        return prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        return key in self._files

    async def set(self, key: str, value: Buffer) -> None:
        raise PermissionError("verified stores are read-only")

    async def delete(self, key: str) -> None:
        raise PermissionError("verified stores are read-only")

    async def list(self) -> AsyncIterator[str]:
        for key in self._files:
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._files:
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/")
        start = prefix + "/" if prefix else ""
        seen = {key[len(start) :].split("/")[0] for key in self._files if key.startswith(start)}
        for name in sorted(seen):
            yield name

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
        read_ahead: int = 2,
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
        # Read-ahead of the next ``read_ahead`` chunks scoring will ask for, verified and decoded like
        # any read, one worker each: the requests still go one at a time (the lock above), so one
        # chunk's transfer overlaps another's hash and decode, and both overlap this field's metrics.
        self._read_ahead = read_ahead
        self._prefetched: dict[str, Future[tuple[bytes, bytes | None]]] = {}
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

    def prefetch(self, keys: Iterable[str]) -> None:
        """Make ``keys`` (the next chunks scoring will read, at most ``read_ahead``) the read-ahead window.

        Each listed, not yet pending chunk is fetched, hash-checked and decoded in the background; a
        later ``read_decoded`` (or ``read_verified``) takes the result. A pending chunk no longer in
        the window is dropped (cancelled if not started), so at most the window's chunks are held.
        """
        wanted = [k for k in keys if k in self._files and not is_metadata_key(k)][: self._read_ahead]
        with self._prefetch_lock:
            for stale in [k for k in self._prefetched if k not in wanted]:
                self._prefetched.pop(stale).cancel()
            for key in wanted:
                if key in self._prefetched:
                    continue
                if self._prefetcher is None:
                    self._prefetcher = ThreadPoolExecutor(
                        max_workers=max(1, self._read_ahead), thread_name_prefix="forecast-prefetch"
                    )
                self._prefetched[key] = self._prefetcher.submit(self._read_ahead_one, key)

    @property
    def read_ahead_chunks(self) -> int:
        return self._read_ahead

    def _read_ahead_one(self, key: str) -> tuple[bytes, bytes | None]:
        data = self._read_verified(key)
        return data, self._decode(key, data) if self._specs is not None else None

    def _take_prefetched(self, key: str) -> tuple[bytes, bytes | None] | None:
        with self._prefetch_lock:
            pending = self._prefetched.pop(key, None)
        return None if pending is None else pending.result()  # raises what the read raised

    def read_verified(self, key: str) -> bytes:
        """The bytes of ``key`` after the manifest check (blocking)."""
        taken = self._take_prefetched(key)
        return taken[0] if taken is not None else self._read_verified(key)

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
        taken = self._take_prefetched(key)
        data, decoded = taken if taken is not None else (self._read_verified(key), None)
        if self._specs is None:
            return data
        return decoded if decoded is not None else self._decode(key, data)

    def _decode(self, key: str, data: bytes) -> bytes:
        assert self._specs is not None
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

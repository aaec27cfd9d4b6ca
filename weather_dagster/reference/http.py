"""HTTP reads for reference data: whole small files and byte ranges, with short in-run retries.

Only blips (connection reset, 5xx, timeouts: :class:`TransientSourceError`) are repeated here, a few
times within seconds, by the retry policy's in-step repeat (``core.retry.with_retries`` on
``exponential_pauses``); longer outages surface as a :class:`SourceError` so the step table schedules
the next attempt (SPEC section 5). Every failure names the URL and the problem.

Timeouts (:class:`Timeouts`, from the reference settings) never cap a whole transfer: ARCO's level
chunks are ~150 MB, minutes on a slow link. A transfer fails when connecting takes too long, when no
byte arrives for the idle-read time (a stalled server), or when a progress window passes with less
than the minimum bytes (a trickle that dodges the idle timeout): the same rules for the GFS range
reads (httpx, here) and the Zarr chunk reads (aiohttp, :mod:`zarr_http`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from weather_dagster.core.errors import SourceError, TransientSourceError
from weather_dagster.core.retry import exponential_pauses, with_retries
from weather_dagster.core.tls import shared_tls_context


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 15.0
    idle_read_s: float = 60.0  # also the wait for the answer's first byte
    progress_window_s: float = 60.0
    progress_min_bytes: int = 1 << 20

    @classmethod
    def from_settings(cls, reference: Any) -> Timeouts:
        return cls(
            connect_s=reference.http_connect_timeout_s,
            idle_read_s=reference.http_timeout_s,
            progress_window_s=reference.http_progress_window_s,
            progress_min_bytes=reference.http_progress_min_bytes,
        )


class ProgressWatch:
    """Fails a transfer when a whole window went by with fewer than the minimum bytes.

    Checked as bytes arrive; when none arrive, the idle-read timeout fires instead. A transfer at
    ``progress_min_bytes / progress_window_s`` or faster always passes, however long it takes.
    """

    def __init__(self, timeouts: Timeouts, url: str) -> None:
        self.timeouts = timeouts
        self.url = url
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def add(self, count: int) -> None:
        self.window_bytes += count
        elapsed = time.monotonic() - self.window_start
        if elapsed < self.timeouts.progress_window_s:
            return
        if self.window_bytes < self.timeouts.progress_min_bytes:
            raise TransientSourceError(
                self.url,
                f"transfer too slow: {self.window_bytes} bytes in {elapsed:.1f}s, below the progress minimum of "
                f"{self.timeouts.progress_min_bytes} bytes per {self.timeouts.progress_window_s:g}s",
            )
        self.window_start, self.window_bytes = time.monotonic(), 0


@dataclass
class HttpReader:
    client: httpx.Client
    timeouts: Timeouts = field(default_factory=Timeouts)
    retries: int = 2
    backoff_s: float = 0.5
    bytes_read: int = 0
    requests: int = 0
    urls: list[str] = field(default_factory=list)

    def _attempt(self, fn, url: str):
        def once():
            try:
                return fn()
            except httpx.TimeoutException as exc:
                kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "idle-read"
                limit = self.client.timeout.connect if kind == "connect" else self.client.timeout.read
                raise TransientSourceError(
                    url, f"timed out: no {kind} progress for {limit}s ({type(exc).__name__})"
                ) from exc
            except httpx.TransportError as exc:
                raise TransientSourceError(url, f"transport error: {type(exc).__name__}: {exc}") from exc

        return with_retries(once, exponential_pauses(self.backoff_s, self.retries), (TransientSourceError,))

    def _check_status(self, response: httpx.Response, url: str, expected: tuple[int, ...]) -> None:
        if response.status_code in expected:
            return
        problem = f"HTTP {response.status_code} {response.reason_phrase}"
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientSourceError(url, problem)
        raise SourceError(url, problem)

    def get_text(self, url: str, max_bytes: int = 16 * 1024 * 1024) -> str:
        def once() -> str:
            with self.client.stream("GET", url) as response:
                self._check_status(response, url, (200,))
                body = self._read(response, url, max_bytes)
            return body.decode("utf-8", errors="replace")

        return self._attempt(once, url)

    def get_range(self, url: str, start: int, end: int | None, max_bytes: int) -> bytes:
        """Bytes ``start`` .. ``end`` - 1 (``end`` None: to the end of the file, at most ``max_bytes``).

        A server that ignores ``Range`` answers 200 with the whole file: that is refused before the
        body is read (SPEC section 7), as is any answer of the wrong length.
        """
        header = f"bytes={start}-{'' if end is None else end - 1}"

        def once() -> bytes:
            with self.client.stream("GET", url, headers={"Range": header}) as response:
                if response.status_code == 200:
                    raise SourceError(
                        url,
                        f"server ignored the Range header ({header}) and sent the whole file "
                        f"(HTTP 200, content-length {response.headers.get('content-length', '?')})",
                    )
                self._check_status(response, url, (206,))
                content_range = response.headers.get("content-range", "")
                if not content_range.startswith(f"bytes {start}-"):
                    raise SourceError(url, f"wrong Content-Range {content_range!r} for {header}")
                body = self._read(response, url, max_bytes)
            if end is not None and len(body) != end - start:
                raise TransientSourceError(url, f"truncated range {header}: got {len(body)} of {end - start} bytes")
            return body

        return self._attempt(once, url)

    def _read(self, response: httpx.Response, url: str, max_bytes: int) -> bytes:
        chunks = []
        size = 0
        watch = ProgressWatch(self.timeouts, url)
        try:
            for chunk in response.iter_bytes():
                watch.add(len(chunk))
                size += len(chunk)
                if size > max_bytes:
                    raise SourceError(url, f"response larger than the {max_bytes}-byte limit")
                chunks.append(chunk)
        except httpx.RemoteProtocolError as exc:
            raise TransientSourceError(url, f"truncated response after {size} bytes: {exc}") from exc
        self.bytes_read += size
        self.requests += 1
        self.urls.append(url)
        return b"".join(chunks)


def make_client(timeouts: Timeouts) -> httpx.Client:
    """No redirects: reference URLs are configuration, a redirect elsewhere is an error to see.

    httpx's read timeout is per socket read (an idle timeout), never a cap on the whole body."""
    timeout = httpx.Timeout(
        connect=timeouts.connect_s, read=timeouts.idle_read_s, write=timeouts.idle_read_s, pool=timeouts.connect_s
    )
    return httpx.Client(timeout=timeout, follow_redirects=False, verify=shared_tls_context())

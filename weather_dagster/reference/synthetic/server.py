"""A loopback HTTP file server with Range support, a request log and injectable faults.

It stands in for NOAA's bucket and Google Cloud Storage in tests and the demo: the real adapters
talk to it over HTTP exactly as they would to the public sources. Faults (per path prefix) let
tests reproduce what real servers do wrong: error statuses, ignoring ``Range``, stalling, and
cutting a response short.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Fault:
    status: int | None = None  # answer this status instead of the file
    ignore_range: bool = False  # answer 200 with the whole file, like a naive server
    delay_s: float = 0.0  # wait before answering (a timeout in the client)
    truncate_after: int | None = None  # send only this many body bytes, then close
    rate_bytes_per_s: float | None = None  # send the body at this steady rate (a slow link)
    stall_after: int | None = None  # send this many body bytes, then stall for stall_s before the rest
    stall_s: float = 0.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int


@dataclass
class RequestLog:
    entries: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: Request) -> None:
        with self.lock:
            self.entries.append(entry)

    def snapshot(self) -> list[Request]:
        with self.lock:
            return list(self.entries)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()

    def matching(self, fragment: str) -> list[Request]:
        return [r for r in self.snapshot() if fragment in r.path]


class _Handler(BaseHTTPRequestHandler):
    server: SyntheticHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: the request log is the record
        return

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        range_header = self.headers.get("Range")
        fault = self.server.fault_for(path)
        if fault and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault and fault.status:
            return self._status(path, range_header, fault.status)
        target = (self.server.root / path.lstrip("/")).resolve()
        if (self.server.root not in target.parents and target != self.server.root) or not target.is_file():
            return self._status(path, range_header, 404)
        size = target.stat().st_size
        start, end = 0, size
        status = 200
        if range_header and not (fault and fault.ignore_range):
            match = _RANGE.match(range_header.strip())
            if not match or int(match.group(1)) >= size:
                return self._status(path, range_header, 416, {"Content-Range": f"bytes */{size}"})
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, size) if match.group(2) else size
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        sent = 0
        if body:
            limit = end - start if not (fault and fault.truncate_after is not None) else fault.truncate_after
            with open(target, "rb") as handle:
                handle.seek(start)
                sent = self._send_body(handle, min(limit, end - start), fault)
            if sent < end - start:
                self.close_connection = True
        self.server.log.add(Request(self.command, path, range_header, status, sent))

    def _send_body(self, handle, count: int, fault: Fault | None) -> int:
        """Copy ``count`` bytes to the client: at once, at a steady rate, or with one stall."""
        rate = fault.rate_bytes_per_s if fault else None
        piece = max(1, int(rate * 0.02)) if rate else 1 << 20  # at a rate: one piece every 20 ms
        stall_at = fault.stall_after if fault and fault.stall_s else None
        sent = 0
        while sent < count:
            if stall_at is not None and sent >= stall_at:
                time.sleep(fault.stall_s)  # type: ignore[union-attr]
                stall_at = None
            size = min(count - sent, piece, (stall_at - sent) if stall_at is not None else piece)
            chunk = handle.read(size)
            if not chunk:
                break
            try:
                self.wfile.write(chunk)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            if rate:
                time.sleep(len(chunk) / rate)
        return sent

    def _status(self, path: str, range_header: str | None, status: int, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.log.add(Request(self.command, path, range_header, status, 0))


class SyntheticHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.root = Path(root).resolve()
        self.log = RequestLog()
        self.faults: dict[str, Fault] = {}
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def fault_for(self, path: str) -> Fault | None:
        for prefix, fault in list(self.faults.items()):
            if path.startswith(prefix):
                return fault
        return None

    def start(self) -> SyntheticHttpServer:
        self._thread = threading.Thread(target=self.serve_forever, name="synthetic-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SyntheticHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(root: Path, host: str = "127.0.0.1", port: int = 0) -> SyntheticHttpServer:
    """Start serving ``root`` in a background thread; call ``stop()`` when done."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"nothing to serve: {root} is not a directory")
    return SyntheticHttpServer(root, host, port).start()

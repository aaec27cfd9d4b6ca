"""Blocking HTTP/1.1 reads from one miner's store, under the same perimeter as every other request.

The verified store reads a forecast one chunk at a time from worker threads. Doing that through
httpx on an event loop cost about 7 ms of Python per 4 MB chunk (64 KB reads, each through
asyncio, anyio, httpcore and h11), all of it holding the GIL, on one loop thread shared by every
store of the process: the floor of a miner-lead and of a batch. Here a chunk is read by the calling
thread straight from the socket into one preallocated buffer (``recv_into``, GIL released), about
1.3 ms of CPU for the same bytes.

The rules are :mod:`perimeter`'s, checked in the same place (``check_response_head``,
``decode_content``, ``raise_for_status``): no redirects, the byte cap (declared and counted),
content encodings undone under that cap, one deadline ``timeout_s`` over connect, headers and body,
and ``deadline_s`` for the body after the headers (a slow drip is the miner's doing). Every blocking
socket call waits at most the time left, so no drip of bytes can stretch a request. Errors are
httpx's types, so the retry classification and ``with_reconnects`` treat both paths alike. Framing
is h11's (header limits, chunked bodies, read-until-close); a ``Content-Length`` body skips h11's
copies.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from urllib.parse import quote, urlsplit

import h11
import httpx

from weather_dagster.core.errors import SafetyViolation
from weather_dagster.core.tls import shared_tls_context
from weather_dagster.miners.decoding import decode_content
from weather_dagster.miners.perimeter import BoundedResponse, check_response_head, raise_for_status

MAX_HEADER_BYTES = 64 * 1024  # h11's bound on an incomplete header block (its default is 16 KB)
RECV_BYTES = 1024 * 1024  # one read of a chunked or unframed body
TARGET_SAFE = "/!$&'()*+,;=:@-._~%"  # RFC 3986 path characters, and escapes already made


class _Expired(Exception):
    """The time left for this request (or its body) ran out."""


class _NoResponse(Exception):
    """The connection ended before any byte of a response."""


class _Stale(Exception):
    """A reused keep-alive connection was already closed by the miner: nothing was answered on it."""


class _Deadline:
    """The request's deadline and, once the headers are in, the body's: every wait is bounded by both."""

    def __init__(self, timeout_s: float) -> None:
        self.request_end = time.monotonic() + timeout_s
        self.body_end: float | None = None

    def start_body(self, deadline_s: float) -> None:
        self.body_end = time.monotonic() + deadline_s

    def left(self) -> float:
        end = self.request_end if self.body_end is None else min(self.request_end, self.body_end)
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise _Expired
        return remaining

    def body_expired(self) -> bool:
        return self.body_end is not None and time.monotonic() >= self.body_end


class StoreHttp:
    """Keep-alive GETs to one store root (``scheme://host:port``), one request at a time.

    The caller serialises requests (the verified store holds its lock around each); ``close()`` may
    come from any thread and ends a read in flight.
    """

    def __init__(self, root_url: str) -> None:
        parts = urlsplit(root_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SafetyViolation(f"store URL scheme {parts.scheme!r} refused")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._host_header = parts.netloc.rsplit("@", 1)[-1]
        self._sock: socket.socket | None = None
        self._guard = threading.Lock()  # the socket's swap and close, never held while waiting on it
        self._closed = False

    def close(self) -> None:
        with self._guard:
            self._closed = True
            sock, self._sock = self._sock, None
        _shut(sock)

    def get(self, url: str, *, max_bytes: int, deadline_s: float, timeout_s: float, headers: dict[str, str]) -> bytes:
        """The decoded body of ``GET url`` (on this store's host), or the error the perimeter raises."""
        response = self.request(url, max_bytes=max_bytes, deadline_s=deadline_s, timeout_s=timeout_s, headers=headers)
        raise_for_status(response, "store file")
        return response.body

    def request(
        self, url: str, *, max_bytes: int, deadline_s: float, timeout_s: float, headers: dict[str, str]
    ) -> BoundedResponse:
        started = time.perf_counter()
        deadline = _Deadline(timeout_s)
        target = _target(url)
        fields = [("host", self._host_header), ("accept-encoding", "identity")]
        fields += [(k, v) for k, v in headers.items() if k.lower() not in ("host", "accept-encoding")]
        try:
            try:
                status, head, body, keep = self._exchange(target, fields, max_bytes, deadline_s, deadline)
            except _Stale:
                # An idle keep-alive connection the miner had closed: a GET is repeated once, fresh.
                self._drop()
                status, head, body, keep = self._exchange(target, fields, max_bytes, deadline_s, deadline)
        except _Expired:
            self._drop()
            if deadline.body_expired():
                message = f"response body not complete within {deadline_s:g} s (slow drip refused)"
                raise SafetyViolation(message) from None
            phase = "response headers" if deadline.body_end is None else "response"
            raise httpx.ReadTimeout(f"no complete {phase} within {timeout_s:g} s") from None
        except BaseException:
            self._drop()
            raise
        if not keep:
            self._drop()
        decoded = decode_content(body, _header_list(head, b"content-encoding"), max_bytes)
        content_type = next((v.decode("latin-1") for k, v in head if k == b"content-type"), "")
        return BoundedResponse(status, decoded, (time.perf_counter() - started) * 1000.0, content_type)

    # -- one exchange on one connection --------------------------------------------------------------

    def _exchange(
        self, target: bytes, fields: list[tuple[str, str]], max_bytes: int, deadline_s: float, deadline: _Deadline
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        sock, reused = self._connection(deadline)
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        try:
            data = conn.send(h11.Request(method="GET", target=target, headers=fields))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:  # e.g. a token from the miner that no header may hold
            raise httpx.LocalProtocolError(f"store request cannot be sent: {exc}") from None
        try:
            _send(sock, data, deadline)
            response = self._head(sock, conn, deadline)
        except (httpx.WriteError, httpx.ReadError, _NoResponse) as exc:
            if reused and not getattr(exc, "answered", False):
                raise _Stale from exc
            if isinstance(exc, _NoResponse):
                raise httpx.RemoteProtocolError("server disconnected without sending a response") from None
            raise
        status, head = response.status_code, list(response.headers)
        length = check_response_head(status, _header(head, b"content-length"), max_bytes)
        deadline.start_body(deadline_s)
        chunked = any(b"chunked" in v.lower() for v in _header_list_raw(head, b"transfer-encoding"))
        if length is not None and not chunked:
            body = _read_exactly(sock, conn.trailing_data[0], length, deadline)
            framed = True
        else:
            body, framed = _read_framed(sock, conn, max_bytes, deadline)
        close = any(b"close" in v.lower() for v in _header_list_raw(head, b"connection"))
        keep = framed and response.http_version == b"1.1" and not close
        return status, head, body, keep

    def _connection(self, deadline: _Deadline) -> tuple[socket.socket, bool]:
        """The open connection (reused: True) or a new one."""
        with self._guard:
            if self._closed:
                raise httpx.ConnectError("store connection closed")
            if self._sock is not None:
                return self._sock, True
        try:
            sock = socket.create_connection((self._host, self._port), timeout=deadline.left())
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls:
                sock.settimeout(deadline.left())
                sock = shared_tls_context().wrap_socket(sock, server_hostname=self._host)
        except TimeoutError:
            raise _Expired from None
        except ssl.SSLError:
            raise
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        with self._guard:
            if self._closed:
                _shut(sock)
                raise httpx.ConnectError("store connection closed")
            self._sock = sock
        return sock, False

    @staticmethod
    def _head(sock: socket.socket, conn: h11.Connection, deadline: _Deadline) -> h11.Response:
        received = 0
        while True:
            event = _next_event(conn, "response")
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                continue  # 1xx: the real answer follows
            if event is h11.NEED_DATA:
                try:
                    chunk = _recv(sock, RECV_BYTES, deadline)
                except httpx.ReadError as exc:
                    exc.answered = received > 0  # type: ignore[attr-defined]
                    raise
                if not chunk and not received:
                    raise _NoResponse
                received += len(chunk)
                conn.receive_data(chunk)
                continue
            raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} before the response")

    def _drop(self) -> None:
        with self._guard:
            sock, self._sock = self._sock, None
        _shut(sock)


# -- socket calls, each bounded by the time left ---------------------------------------------------


def _send(sock: socket.socket, data: bytes, deadline: _Deadline) -> None:
    try:
        sock.settimeout(deadline.left())
        sock.sendall(data)
    except TimeoutError:
        raise _Expired from None
    except OSError as exc:
        raise httpx.WriteError(f"store request not sent: {exc}") from exc


def _recv(sock: socket.socket, size: int, deadline: _Deadline) -> bytes:
    try:
        sock.settimeout(deadline.left())
        return sock.recv(size)
    except TimeoutError:
        raise _Expired from None
    except OSError as exc:
        raise httpx.ReadError(f"store read failed: {exc}") from exc


def _read_exactly(sock: socket.socket, start: bytes, length: int, deadline: _Deadline) -> bytes:
    """A ``Content-Length`` body into one buffer; bytes past ``length`` were never asked for."""
    if len(start) >= length:
        if len(start) > length:
            raise httpx.RemoteProtocolError("more bytes than the declared Content-Length")
        return start
    buffer = bytearray(length)
    view = memoryview(buffer)
    view[: len(start)] = start
    got = len(start)
    try:
        while got < length:
            sock.settimeout(deadline.left())
            count = sock.recv_into(view[got:], length - got)
            if count == 0:
                raise httpx.RemoteProtocolError(
                    f"peer closed connection without sending complete message body (received {got} of {length} bytes)"
                )
            got += count
    except TimeoutError:
        raise _Expired from None
    except OSError as exc:
        raise httpx.ReadError(f"store read failed: {exc}") from exc
    finally:
        view.release()
    return buffer  # type: ignore[return-value]  # bytes-like, never copied again


def _read_framed(sock: socket.socket, conn: h11.Connection, max_bytes: int, deadline: _Deadline) -> tuple[bytes, bool]:
    """A chunked or read-until-close body through h11, counted against the cap as it arrives."""
    parts: list[bytes] = []
    size = 0
    while True:
        event = _next_event(conn, "response body")
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_bytes:
                raise SafetyViolation(f"response exceeds the cap of {max_bytes} bytes")
            parts.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(parts), conn.their_state is h11.DONE
        elif event is h11.NEED_DATA:
            conn.receive_data(_recv(sock, RECV_BYTES, deadline))
        elif isinstance(event, h11.ConnectionClosed):
            return b"".join(parts), False
        else:
            raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} in the response body")


# -- small helpers ---------------------------------------------------------------------------------------


def _next_event(conn: h11.Connection, what: str):
    """h11's next event; a framing error is the miner's malformed ``what`` (an httpx error)."""
    try:
        return conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(f"malformed {what} from the miner: {exc}") from None


def _target(url: str) -> bytes:
    """The request target, percent-encoded where a path may not hold a character (as httpx does)."""
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe=TARGET_SAFE)
    return (path + (f"?{quote(parts.query, safe=TARGET_SAFE + '?')}" if parts.query else "")).encode("ascii")


def _header(head: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in head:
        if key == name:
            return value.decode("latin-1")
    return None


def _header_list_raw(head: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in head if key == name]


def _header_list(head: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [part.decode("latin-1") for value in _header_list_raw(head, name) for part in value.split(b",")]


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
    sock.close()

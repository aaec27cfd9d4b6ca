"""The verified store's blocking HTTP client against scripted raw-socket servers on 127.0.0.1.

Each server answers requests from a script (one function per request, in order), counts the
connections it accepted, and stops by itself when the test ends (every socket has a timeout).
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from weather_dagster.core.errors import SafetyViolation
from weather_dagster.core.retry import ErrorClass, classify
from weather_dagster.miners.perimeter import MinerHTTPError
from weather_dagster.miners.store_http import StoreHttp

CAP = 1 << 20
Reply = Callable[[socket.socket], bool]  # writes one response; False closes the connection after it


class ScriptedServer:
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.connections = 0
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        buffered = b""
        with conn:
            while self.replies and not self.stopped.is_set():
                try:
                    while b"\r\n\r\n" not in buffered:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffered += data
                except OSError:
                    return
                request, buffered = buffered.split(b"\r\n\r\n", 1)
                self.requests.append(request)
                try:
                    if not self.replies.pop(0)(conn):
                        return
                except OSError:
                    return

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()


@contextmanager
def scripted(*replies: Reply) -> Iterator[tuple[ScriptedServer, StoreHttp]]:
    server = ScriptedServer(list(replies))
    client = StoreHttp(server.root)
    try:
        yield server, client
    finally:
        client.close()
        server.stop()


def sized(body: bytes, *, extra: bytes = b"", keep: bool = True) -> Reply:
    def reply(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n" % (len(body), extra) + body)
        return keep

    return reply


def get(client: StoreHttp, server: ScriptedServer, *, deadline_s: float = 5.0, timeout_s: float = 5.0) -> bytes:
    url = f"{server.root}/forecasts/x.zarr/2t/0.0.0"
    return client.get(url, max_bytes=CAP, deadline_s=deadline_s, timeout_s=timeout_s, headers={"authorization": "t"})


def test_content_length_bodies_share_one_keep_alive_connection() -> None:
    first, second = bytes(range(256)) * 1000, b"x" * 70_000
    with scripted(sized(first), sized(second)) as (server, client):
        assert bytes(get(client, server)) == first
        assert bytes(get(client, server)) == second
    assert server.connections == 1
    assert server.requests[0].startswith(b"GET /forecasts/x.zarr/2t/0.0.0 HTTP/1.1\r\n")
    assert b"accept-encoding: identity" in server.requests[0] and b"authorization: t" in server.requests[0]


def test_chunked_and_read_until_close_bodies_are_framed_by_h11() -> None:
    def chunked(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        return True

    def until_close(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nno length at all")
        return False

    with scripted(chunked, until_close, sized(b"after")) as (server, client):
        assert get(client, server) == b"hello world"
        assert get(client, server) == b"no length at all"
        assert get(client, server) == b"after"  # the closed connection was replaced
    assert server.connections == 2


def test_an_idle_connection_the_miner_closed_is_replaced_once_without_a_pause() -> None:
    with scripted(sized(b"one", keep=False), sized(b"two")) as (server, client):
        assert get(client, server) == b"one"
        started = time.monotonic()
        assert get(client, server) == b"two"
        assert time.monotonic() - started < 1.0
    assert server.connections == 2


def test_redirects_caps_and_encoding_bombs_are_refused_as_the_miners_doing() -> None:
    def redirect(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 302 Found\r\nlocation: http://10.0.0.1/\r\ncontent-length: 0\r\n\r\n")
        return True

    def declared_too_large(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (CAP + 1))
        return True

    def chunked_too_large(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
        for _ in range(CAP // 65536 + 2):
            conn.sendall(piece)
        return False

    bomb = gzip.compress(b"\0" * (8 * CAP), compresslevel=1)
    for reply, message in (
        (redirect, "redirect \\(302\\) refused"),
        (declared_too_large, f"response of {CAP + 1} bytes exceeds the cap"),
        (chunked_too_large, f"response exceeds the cap of {CAP} bytes"),
        (sized(bomb, extra=b"content-encoding: gzip\r\n"), f"gzip response expands beyond the cap of {CAP}"),
    ):
        with scripted(reply) as (server, client), pytest.raises(SafetyViolation, match=message):
            get(client, server)


def test_a_body_dripped_past_its_deadline_is_a_safety_violation_within_the_deadline() -> None:
    def drip(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        for _ in range(100):  # 5 s at most
            conn.sendall(b"z")
            time.sleep(0.05)
        return False

    with scripted(drip) as (server, client):
        started = time.monotonic()
        with pytest.raises(SafetyViolation, match=r"not complete within 0.5 s \(slow drip refused\)"):
            get(client, server, deadline_s=0.5, timeout_s=10.0)
        assert time.monotonic() - started < 2.0


def test_silence_before_headers_is_a_timeout_and_a_cut_body_a_reconnectable_error() -> None:
    def silent(conn: socket.socket) -> bool:
        time.sleep(2.0)
        return False

    def cut(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n" + b"a" * 100)
        return False

    with scripted(silent) as (server, client), pytest.raises(httpx.ReadTimeout) as timeout:
        get(client, server, timeout_s=0.5)
    assert "no complete response headers within 0.5 s" in str(timeout.value)
    assert classify(timeout.value) is ErrorClass.TIMEOUT
    with scripted(cut) as (server, client), pytest.raises(httpx.RemoteProtocolError, match="received 100 of 5000"):
        get(client, server)


def test_error_statuses_keep_an_excerpt_and_the_retry_class() -> None:
    body = b"FETCH_ERROR: upstream gone"
    reply = sized(body)

    def unavailable(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        return True

    with scripted(unavailable, reply) as (server, client):
        with pytest.raises(MinerHTTPError, match="HTTP 503: FETCH_ERROR") as error:
            get(client, server)
        assert classify(error.value) is ErrorClass.SERVER
        assert get(client, server) == body  # the connection stays usable after an error status
    assert server.connections == 1


def test_close_from_another_thread_ends_a_read_in_flight() -> None:
    def stall(conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nab")
        time.sleep(3.0)
        return False

    with scripted(stall) as (server, client):
        threading.Timer(0.3, client.close).start()
        started = time.monotonic()
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            get(client, server, deadline_s=30.0, timeout_s=30.0)
        assert time.monotonic() - started < 2.0
        with pytest.raises(httpx.ConnectError, match="closed"):
            get(client, server)


def test_targets_are_percent_encoded_and_unsendable_headers_are_a_clear_error() -> None:
    with scripted(sized(b"ok")) as (server, client):
        url = f"{server.root}/forecasts/x.zarr/a b/é.0"
        assert client.get(url, max_bytes=CAP, deadline_s=5.0, timeout_s=5.0, headers={}) == b"ok"
        assert server.requests[0].startswith(b"GET /forecasts/x.zarr/a%20b/%C3%A9.0 HTTP/1.1\r\n")
        with pytest.raises(httpx.LocalProtocolError, match="cannot be sent"):
            get_with = {"authorization": "Bearer x\r\ninjected: 1"}
            client.get(url, max_bytes=CAP, deadline_s=5.0, timeout_s=5.0, headers=get_with)

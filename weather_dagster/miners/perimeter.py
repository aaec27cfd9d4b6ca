"""The safety perimeter around every byte the validator receives from a miner (SPEC section 6).

- A miner is contacted only at its registered ``ip:port``; a store URL must resolve to that same
  host and port (relative URLs are joined to it), under ``/forecasts/``, with no userinfo, query,
  fragment or ``..``.
- Loopback, private, link-local and other special addresses are refused unless
  ``settings.miners.allow_private_hosts`` names the host (tests and the demo say so explicitly).
  Host names are refused too unless allow-listed: the chain registers IP addresses.
- Redirects are never followed: a 3xx is a :class:`SafetyViolation`.
- Bodies are read in a stream under a byte cap and a deadline covering the whole request, so an
  oversized, compressed-bomb or drip-fed response (headers included) is cut off early instead of
  filling memory or holding a connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import posixpath
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from weather_dagster.core.errors import SafetyViolation
from weather_dagster.miners.decoding import decode_content
from weather_dagster.miners.protocol import FORECASTS_PREFIX
from weather_dagster.settings import Settings


def host_allowed(host: str, settings: Settings) -> bool:
    if host in settings.miners.allow_private_hosts:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name: only allow-listed names are contacted
    return address.is_global and not address.is_multicast


def miner_base_url(ip: str, port: int, settings: Settings) -> str:
    """``http://ip:port`` for a registered miner, or SafetyViolation when the address is not allowed."""
    if not ip or not 0 < int(port) < 65536:
        raise SafetyViolation("miner has no valid registered address")
    if not host_allowed(ip, settings):
        raise SafetyViolation(f"miner address {ip} is private, loopback or not an IP, and not allow-listed")
    host = f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip
    return f"http://{host}:{int(port)}"


def check_store_url(store_url: str, ip: str, port: int, settings: Settings) -> str:
    """The absolute store root URL (ending in ``/``) if ``store_url`` stays on the miner's address."""
    base = miner_base_url(ip, port, settings)
    absolute = urljoin(base + "/", store_url)
    parts = urlsplit(absolute)
    expected = urlsplit(base)
    if parts.scheme not in ("http", "https"):
        raise SafetyViolation(f"store URL scheme {parts.scheme!r} refused")
    if parts.username or parts.password:
        raise SafetyViolation("store URL with credentials refused")
    if (parts.hostname or "") != (expected.hostname or "") or (parts.port or 80) != (expected.port or 80):
        raise SafetyViolation(f"store URL host {parts.hostname}:{parts.port} is not the miner's registered address")
    if parts.query or parts.fragment:
        raise SafetyViolation("store URL with a query or fragment refused")
    path = parts.path
    if ".." in path.split("/") or posixpath.normpath(path).rstrip("/") != path.rstrip("/"):
        raise SafetyViolation("store URL path is not normalised")
    if not path.startswith(FORECASTS_PREFIX) or len(path.rstrip("/")) <= len(FORECASTS_PREFIX):
        raise SafetyViolation(f"store URL must be under {FORECASTS_PREFIX}")
    return f"{expected.scheme}://{expected.netloc}{path.rstrip('/')}/"


def check_store_key(key: str) -> str:
    """A store key is a relative path without traversal; anything else is refused before any request."""
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise SafetyViolation(f"store key {key[:80]!r} refused")
    if len(key) > 512 or not key.isprintable():
        raise SafetyViolation("store key too long or not printable")
    return key


@dataclass(frozen=True)
class BoundedResponse:
    status_code: int
    body: bytes
    elapsed_ms: float
    content_type: str = ""


def check_response_head(status_code: int, content_length: str | None, max_bytes: int) -> int | None:
    """Refuse a redirect or a declared body over the cap before any body byte is read; the length."""
    if 300 <= status_code < 400:
        raise SafetyViolation(f"redirect ({status_code}) refused: miners must serve directly")
    if content_length is None or not content_length.strip().isdigit():
        return None
    declared = int(content_length)
    if declared > max_bytes:
        raise SafetyViolation(f"response of {declared} bytes exceeds the cap of {max_bytes}")
    return declared


async def bounded_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int,
    deadline_s: float,
    timeout_s: float,
    **kwargs,
) -> BoundedResponse:
    """Send one request under one deadline and read at most ``max_bytes`` of decoded body.

    ``timeout_s`` bounds the whole request, connect, headers and body together (httpx's own
    timeouts are per socket operation, so a server dripping header bytes would never trip them);
    the body must also arrive within ``deadline_s`` of the headers. Missing ``timeout_s`` is a
    timeout (retried by policy: a busy miner looks the same); a body that is too large, drip-fed
    past ``deadline_s``, or encoded into more than ``max_bytes``, or a redirect, is a
    SafetyViolation (the miner's doing). Content encodings are undone here, bounded, never by httpx.
    """
    started = time.perf_counter()
    headers = {"accept-encoding": "identity", **kwargs.pop("headers", {})}
    request = client.build_request(method, url, timeout=timeout_s, headers=headers, **kwargs)
    response: httpx.Response | None = None
    body_timer: asyncio.Timeout | None = None
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                check_response_head(response.status_code, response.headers.get("content-length"), max_bytes)
                size = 0
                async with asyncio.timeout(deadline_s) as body_timer:
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                        if size > max_bytes:
                            raise SafetyViolation(f"response exceeds the cap of {max_bytes} bytes")
                        chunks.append(chunk)
            finally:
                await response.aclose()
    except TimeoutError:
        if body_timer is not None and body_timer.expired():
            raise SafetyViolation(f"response body not complete within {deadline_s:g} s (slow drip refused)") from None
        phase = "response headers" if response is None else "response"
        raise httpx.ReadTimeout(f"no complete {phase} within {timeout_s:g} s", request=request) from None
    body = decode_content(b"".join(chunks), response.headers.get_list("content-encoding", split_commas=True), max_bytes)
    return BoundedResponse(
        response.status_code,
        body,
        (time.perf_counter() - started) * 1000.0,
        response.headers.get("content-type", ""),
    )


BODY_EXCERPT_BYTES = 300


class MinerHTTPError(httpx.HTTPStatusError):
    """An HTTP error status from a miner, keeping the start of its body.

    Still an ``httpx.HTTPStatusError``, so the retry classification is unchanged; the excerpt lets
    an operator (and the poll step) see what a 5xx says, e.g. a reference miner's ``FETCH_ERROR``.
    """

    def __init__(self, message: str, *, request: httpx.Request, response: httpx.Response, body_excerpt: bytes) -> None:
        super().__init__(message, request=request, response=response)
        self.body_excerpt = body_excerpt


def raise_for_status(response: BoundedResponse, what: str) -> None:
    """Turn an HTTP error status into the httpx error the retry classifier understands."""
    if response.status_code >= 400:
        request = httpx.Request("GET", "http://miner.invalid/")
        excerpt = response.body[:BODY_EXCERPT_BYTES]
        shown = excerpt.decode("utf-8", errors="replace") if response.status_code >= 500 else ""
        raise MinerHTTPError(
            f"{what}: HTTP {response.status_code}" + (f": {shown}" if shown else ""),
            request=request,
            response=httpx.Response(response.status_code, request=request),
            body_excerpt=excerpt,
        )

"""Transport faults the demo miners commit on purpose, below aiohttp's normal response path.

Each writes to the raw transport, because a well-formed ``web.Response`` cannot express them: a body
cut off mid-way (a miner whose server exits), headers that never end (a slowloris miner), a body
dripped a few bytes at a time.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

DRIP_HEADERS_FOR_S = 120.0
DRIP_CHUNK_BYTES = 64


def reset_mid_body(request: web.Request, data: bytes) -> web.Response:
    """Headers and half the body, then the connection dropped."""
    transport = request.transport
    if transport is not None:
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len(data)}\r\n\r\n"
        transport.write(head.encode() + data[: len(data) // 2])
        transport.abort()
    return web.Response()


async def drip_headers(request: web.Request, interval_s: float) -> web.Response:
    """A status line, then one header line per interval, never the blank line that ends them."""
    transport = request.transport
    if transport is not None:
        transport.write(b"HTTP/1.1 200 OK\r\n")
        for index in range(int(DRIP_HEADERS_FOR_S / interval_s)):
            if transport.is_closing():
                break
            transport.write(f"x-drip-{index}: y\r\n".encode())
            await asyncio.sleep(interval_s)
        transport.close()
    return web.Response()


async def drip_body(request: web.Request, data: bytes, interval_s: float) -> web.StreamResponse:
    """The body in small pieces, one per interval, until done or the client goes away."""
    response = web.StreamResponse(headers={"content-type": "application/octet-stream"})
    await response.prepare(request)
    try:
        for start in range(0, len(data), DRIP_CHUNK_BYTES):
            await response.write(data[start : start + DRIP_CHUNK_BYTES])
            await asyncio.sleep(interval_s)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response

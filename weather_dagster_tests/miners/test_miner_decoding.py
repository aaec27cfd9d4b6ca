"""Bounded decoding of miner bytes, each decoder on its own, and the one-deadline rule on a raw socket."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import httpx
import numpy as np
import pytest
from numcodecs import BZ2, LZ4, LZMA, Blosc, GZip, Zlib, Zstd

from weather_dagster.core.errors import InvalidDataError, SafetyViolation
from weather_dagster.miners.decoding import (
    MAX_JSON_DEPTH,
    ChunkSpec,
    check_time_units,
    decode_chunk,
    decode_content,
    load_json,
)
from weather_dagster.miners.perimeter import bounded_request
from weather_dagster.miners.store_http import StoreHttp

FIELD = np.linspace(200.0, 300.0, 19 * 36, dtype="<f4").reshape(19, 36)
ZARRAY = {"dtype": "<f4", "chunks": [1, 19, 36], "fill_value": "NaN", "filters": None}
CAP = 1 << 20
CODECS = [Zlib(1), GZip(1), BZ2(1), LZMA(), Blosc("lz4", 5, Blosc.SHUFFLE), LZ4(), Zstd(1)]


def _spec(codec, filters=None) -> ChunkSpec:
    zarray = {**ZARRAY, "compressor": codec.get_config() if codec else None, "filters": filters}
    return ChunkSpec.from_zarray("2t", zarray, max_chunk_bytes=CAP)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.codec_id)
def test_each_codec_decodes_honest_chunks_and_refuses_bombs_and_lies(codec) -> None:
    honest = FIELD.tobytes()
    assert decode_chunk("2t/0.0.0", bytes(codec.encode(honest)), _spec(codec), max_chunk_bytes=CAP) == honest
    bomb = bytes(codec.encode(np.zeros(64 * len(honest), dtype=np.uint8)))  # 64 x the declared chunk
    with pytest.raises(InvalidDataError, match=rf"2t/0.0.0: {codec.codec_id} chunk expands beyond {len(honest)}"):
        decode_chunk("2t/0.0.0", bomb, _spec(codec), max_chunk_bytes=CAP)
    short = bytes(codec.encode(honest[:-4]))
    with pytest.raises(InvalidDataError, match=r"2t/0\.0\.0") as info:
        decode_chunk("2t/0.0.0", short, _spec(codec), max_chunk_bytes=CAP)
    assert info.value.category == "invalid_data"
    with pytest.raises(InvalidDataError, match=rf"2t/0.0.0: {codec.codec_id} chunk cannot be decoded"):
        decode_chunk("2t/0.0.0", bytes(codec.encode(honest))[:40] + b"\x00" * 40, _spec(codec), max_chunk_bytes=CAP)


def test_filters_decode_after_the_compressor_and_uncompressed_chunks_must_fit() -> None:
    honest = FIELD.tobytes()
    both = Blosc("zstd").encode(Zlib(1).encode(honest))
    spec = _spec(Blosc("zstd"), filters=[Zlib(1).get_config()])
    assert decode_chunk("2t/1.0.0", bytes(both), spec, max_chunk_bytes=CAP) == honest
    assert decode_chunk("2t/1.0.0", honest, _spec(None), max_chunk_bytes=CAP) == honest
    with pytest.raises(InvalidDataError, match="chunk decodes to 2732 bytes, the declared chunk shape needs 2736"):
        decode_chunk("2t/1.0.0", honest[:-4], _spec(None), max_chunk_bytes=CAP)
    frame = b"\x28\xb5\x2f\xfd\x00\x58" + b"\x00" * 16  # a zstd frame that hides its content size
    with pytest.raises(InvalidDataError, match="does not declare its content size"):
        decode_chunk("2t/1.0.0", frame, _spec(Zstd()), max_chunk_bytes=CAP)


@pytest.mark.parametrize(
    ("change", "problem", "error"),
    [
        ({"dtype": "|O"}, "not numeric", InvalidDataError),
        ({"dtype": "<U4"}, "not numeric", InvalidDataError),
        ({"dtype": "nonsense"}, "cannot be read", InvalidDataError),
        ({"fill_value": "nope"}, "fill_value 'nope' is not valid", InvalidDataError),
        ({"fill_value": True}, "fill_value", InvalidDataError),
        ({"dtype": "<i2", "fill_value": 1 << 40}, "fill_value", InvalidDataError),
        ({"chunks": [1, 1000, 1000]}, "chunk size cap", SafetyViolation),
    ],
)
def test_array_declarations_are_checked_before_any_chunk(change: dict, problem: str, error: type) -> None:
    with pytest.raises(error, match=problem):
        ChunkSpec.from_zarray("2t", {**ZARRAY, "compressor": None, **change}, max_chunk_bytes=CAP)
    with pytest.raises(InvalidDataError, match="time: time units 'fortnights since"):
        check_time_units("time", {"units": "fortnights since the flood"})
    check_time_units("time", {"units": "hours since 2026-11-20 00:00:00", "calendar": "proleptic_gregorian"})


def test_content_encodings_are_undone_within_the_cap() -> None:
    body = FIELD.tobytes()
    assert decode_content(gzip.compress(body), ["gzip"], CAP) == body
    assert decode_content(zlib.compress(body), ["deflate"], CAP) == body
    assert decode_content(gzip.compress(gzip.compress(body)), ["gzip", "gzip"], CAP) == body
    assert decode_content(body, ["identity"], CAP) == body
    bomb = gzip.compress(b"\x00" * (8 * CAP), compresslevel=1)
    for encodings, payload in ((["gzip"], bomb), (["gzip", "gzip"], gzip.compress(bomb))):
        with pytest.raises(SafetyViolation, match=f"gzip response expands beyond the cap of {CAP} bytes"):
            decode_content(payload, encodings, CAP)
    with pytest.raises(SafetyViolation, match="3 stacked content encodings"):
        decode_content(body, ["gzip", "gzip", "gzip"], CAP)
    with pytest.raises(SafetyViolation, match="'br' refused"):
        decode_content(body, ["br"], CAP)
    with pytest.raises(InvalidDataError, match="gzip response cannot be decoded"):
        decode_content(body, ["gzip"], CAP)


def test_json_depth_is_limited_without_recursion_errors() -> None:
    assert load_json(json.dumps({"a": [1, {"b": 2}]}), "answer") == {"a": [1, {"b": 2}]}
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert load_json(at_limit, "answer") is not None
    with pytest.raises(InvalidDataError, match=f"answer: JSON nested deeper than {MAX_JSON_DEPTH} levels"):
        load_json("[" + at_limit + "]", "answer")
    with pytest.raises(InvalidDataError, match="answer: JSON nested too deeply"):
        load_json("[" * 200_000 + "]" * 200_000, "answer")
    with pytest.raises(ValueError):
        load_json(b"not json", "answer")


class DripServer:
    """A raw loopback server that sends a status line, then one header line every 0.1 s, forever."""

    def __init__(self) -> None:
        self.closed_by_client = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for index in range(600):  # stops by itself after a minute at most
                writer.write(f"x-drip-{index}: y\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.1)
                if reader.at_eof():
                    break
        except ConnectionError:
            pass
        self.closed_by_client.set()
        writer.close()


def test_one_deadline_covers_headers_on_both_request_paths() -> None:
    async def scenario() -> None:
        drip = DripServer()
        server = await asyncio.start_server(drip.handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/forecasts/x.zarr/2t/0.0.0"
        async with server, httpx.AsyncClient() as client:
            # httpx's per-read timeout (1 s) never fires: a header line arrives every 0.1 s.
            with pytest.raises(httpx.ReadTimeout, match="no complete response headers within 1 s"):
                await bounded_request(client, "GET", url, max_bytes=CAP, deadline_s=30.0, timeout_s=1.0)
            await asyncio.wait_for(drip.closed_by_client.wait(), 10)
            blocking = StoreHttp(url)  # the verified store's path, from a worker thread
            try:
                with pytest.raises(httpx.ReadTimeout, match="no complete response headers within 1 s"):
                    await asyncio.to_thread(
                        blocking.get, url, max_bytes=CAP, deadline_s=30.0, timeout_s=1.0, headers={}
                    )
            finally:
                blocking.close()

    asyncio.run(scenario())

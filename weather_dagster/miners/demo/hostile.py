"""Hostile demo miners (issue 10): bombs, lies about sizes, deep JSON and extras the validator must ignore.

Each behaviour alters an otherwise honest store in one way. Bombs are real: a chunk or a response
body that decompresses to ``bomb_bytes`` (1 GiB by default) from a few megabytes, built once per
process from zero pages so the fleet itself stays small. The hostile data sits in ``2t``, the first
field the validator's probe reads; every other field is honest.
"""

from __future__ import annotations

import gzip
import zlib
from functools import lru_cache

import numpy as np

from weather_dagster.miners.demo.behaviours import Behaviour

B = Behaviour
HOSTILE_VARIABLE = "2t"
CODEC_BOMBS = {
    B.ZLIB_BOMB: {"id": "zlib", "level": 1},
    B.GZIP_BOMB: {"id": "gzip", "level": 1},
    B.ZSTD_BOMB: {"id": "zstd", "level": 1, "checksum": False},
    B.BLOSC_BOMB: {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 0, "blocksize": 0},
}
HTTP_ENCODINGS = {B.HTTP_GZIP_BOMB: "gzip", B.STACKED_ENCODING: "gzip, gzip"}
EXTRA_DIM = "member"  # a huge extra dimension coordinate nobody asked for
EXTRA_VARIABLE = "junk"
DEEP_JSON_LEVELS = 100_000


@lru_cache(maxsize=8)
def codec_bomb(codec_id: str, nbytes: int) -> bytes:
    """``nbytes`` of zeros encoded with a numcodecs codec (reads zero pages only: cheap to build)."""
    from numcodecs import Blosc, GZip, Zlib, Zstd

    codec = {"zlib": Zlib(1), "gzip": GZip(1), "zstd": Zstd(1), "blosc": Blosc("lz4", 5, Blosc.NOSHUFFLE)}[codec_id]
    return bytes(codec.encode(np.zeros(nbytes, dtype=np.uint8)))


@lru_cache(maxsize=4)
def http_bomb(encoding: str, nbytes: int) -> bytes:
    """A response body that undoes to ``nbytes`` zeros through the given Content-Encoding layers."""
    body = codec_bomb("gzip", nbytes)
    for _ in encoding.split(",")[1:]:
        body = gzip.compress(body, compresslevel=1)
    return body


def alter_metadata(behaviour: Behaviour, meta: dict, bomb_bytes: int) -> None:
    """Change the store's metadata in place the way ``behaviour`` lies."""
    zarray = meta[f"{HOSTILE_VARIABLE}/.zarray"]
    if behaviour in CODEC_BOMBS:
        zarray["compressor"] = CODEC_BOMBS[behaviour]
    elif behaviour is B.CORRUPT_CHUNK:
        zarray["compressor"] = {"id": "zlib", "level": 1}
    elif behaviour is B.BAD_FILL_VALUE:
        zarray["fill_value"] = "not-a-number"
    elif behaviour is B.BAD_TIME_UNITS:
        meta["time/.zattrs"]["units"] = "fortnights since the flood"
    elif behaviour is B.EXTRA_ARRAYS:
        size = bomb_bytes // 8
        meta[f"{EXTRA_DIM}/.zarray"] = {**meta["lat/.zarray"], "shape": [size], "chunks": [size], "dtype": "<f8"}
        meta[f"{EXTRA_DIM}/.zarray"]["compressor"] = {"id": "zlib", "level": 1}
        meta[f"{EXTRA_DIM}/.zattrs"] = {"_ARRAY_DIMENSIONS": [EXTRA_DIM], "units": "1"}
        meta[f"{EXTRA_VARIABLE}/.zarray"] = {**meta[f"{EXTRA_DIM}/.zarray"]}
        meta[f"{EXTRA_VARIABLE}/.zattrs"] = {"_ARRAY_DIMENSIONS": [EXTRA_DIM], "padding": "y" * 100_000}


def extra_keys(behaviour: Behaviour) -> list[str]:
    return [f"{EXTRA_DIM}/0", f"{EXTRA_VARIABLE}/0"] if behaviour is B.EXTRA_ARRAYS else []


def chunk(behaviour: Behaviour, key: str, honest: bytes | None, bomb_bytes: int) -> bytes | None:
    """The hostile form of one chunk file (``honest`` is what a good miner would serve)."""
    if key in extra_keys(behaviour):
        return codec_bomb("zlib", bomb_bytes)
    if honest is None or key.split("/", 1)[0] != HOSTILE_VARIABLE:
        return honest
    if behaviour in CODEC_BOMBS:
        return codec_bomb(CODEC_BOMBS[behaviour]["id"], bomb_bytes)
    if behaviour is B.SHORT_CHUNK:
        return honest[:-4]  # one float missing: the declared chunk shape is not what is served
    if behaviour is B.CORRUPT_CHUNK:
        return zlib.compress(honest)[: len(honest) // 50] + b"\x00garbage"
    return honest


def deep_json() -> bytes:
    """An answer nested far deeper than any parser's recursion limit."""
    nested = b"[" * DEEP_JSON_LEVELS + b"]" * DEEP_JSON_LEVELS
    return b'{"status": "fetch_accepted", "job_id": "deep", "x": ' + nested + b"}"

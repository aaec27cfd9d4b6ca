"""Bounded decoding of a miner's bytes: HTTP content encodings, Zarr chunk codecs and JSON.

A miner controls every byte it sends, so nothing here decompresses without an output bound fixed
*before* any allocation: the stdlib stream decoders (zlib, gzip, bz2, lzma) get ``max_length``;
the codecs whose C decoder allocates from a size in the frame header (blosc, lz4, zstd) have that
header checked first. A chunk must decode to exactly the bytes its array's declared chunk shape
needs; anything else is :class:`InvalidDataError` naming the key. JSON is parsed under a depth limit
so a deeply nested body is refused instead of raising ``RecursionError`` somewhere else.
"""

from __future__ import annotations

import bz2
import json
import lzma
import math
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from weather_dagster.core.errors import InvalidDataError, SafetyViolation, WeatherError

MAX_JSON_DEPTH = 64
MAX_CONTENT_ENCODINGS = 2  # e.g. "gzip, gzip" is tolerated; deeper stacks are refused
LZMA_MEMLIMIT = 64 * 1024 * 1024  # an .lzma header may ask for a 4 GiB dictionary
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_OR_GZIP_WBITS = 32 + zlib.MAX_WBITS
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _TooLarge(Exception):
    pass


# -- JSON ----------------------------------------------------------------------------------------------


def load_json(data: bytes | str, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` (InvalidDataError).

    Syntax errors stay ``ValueError`` so callers keep their own wording for "not JSON". The size
    limit is the caller's byte cap on the response, applied before the bytes reach this function.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise InvalidDataError(f"{what}: JSON nested too deeply (refused)") from None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # iterative: the check itself never recurses
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise InvalidDataError(f"{what}: JSON nested deeper than {max_depth} levels (refused)")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


# -- stream decoders with an output bound ------------------------------------------------------------------


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    out = decoder.decompress(data, limit + 1)
    if len(out) > limit or decoder.unconsumed_tail:
        raise _TooLarge
    if not decoder.eof:
        raise ValueError("truncated deflate stream")
    if decoder.unused_data:
        raise ValueError("data after the end of the deflate stream")
    return out


def _bounded_stream(decoder: Any, data: bytes, limit: int) -> bytes:
    out = decoder.decompress(data, max_length=limit + 1)
    if len(out) > limit or (not decoder.eof and not decoder.needs_input):
        raise _TooLarge
    if not decoder.eof:
        raise ValueError("truncated stream")
    if decoder.unused_data:
        raise ValueError("data after the end of the stream")
    return out


def _declared(size: int, limit: int, exact: int | None) -> None:
    """A frame header's decoded size, checked before the C decoder allocates it."""
    if size > limit or (exact is not None and size != exact):
        raise _TooLarge if size > limit else ValueError(f"frame declares {size} decoded bytes, expected {exact}")


def _zstd_content_size(data: bytes) -> int:
    if len(data) < 6 or data[:4] != _ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    descriptor = data[4]
    single_segment = (descriptor >> 5) & 1
    size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    if size_bytes == 0:
        raise ValueError("zstd frame does not declare its content size")
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    if len(data) < start + size_bytes:
        raise ValueError("truncated zstd frame header")
    size = int.from_bytes(data[start : start + size_bytes], "little")
    return size + 256 if size_bytes == 2 else size


def _decode_codec(codec: dict, data: bytes, limit: int, exact: int | None) -> bytes:
    name = codec.get("id")
    if name == "zlib":
        return _inflate(data, zlib.MAX_WBITS, limit)
    if name == "gzip":
        return _inflate(data, _GZIP_WBITS, limit)
    if name == "bz2":
        return _bounded_stream(bz2.BZ2Decompressor(), data, limit)
    if name == "lzma":
        if codec.get("format", lzma.FORMAT_XZ) not in (lzma.FORMAT_XZ, lzma.FORMAT_ALONE, lzma.FORMAT_AUTO):
            raise ValueError("raw lzma streams are not read")
        return _bounded_stream(lzma.LZMADecompressor(lzma.FORMAT_AUTO, memlimit=LZMA_MEMLIMIT), data, limit)
    if name == "blosc":
        from numcodecs import blosc

        if len(data) < 16:
            raise ValueError("truncated blosc header")
        _declared(int.from_bytes(data[4:8], "little"), limit, exact)
        if int.from_bytes(data[12:16], "little") != len(data):
            raise ValueError("blosc header size does not match the chunk")
        return bytes(blosc.decompress(data))
    if name == "lz4":
        from numcodecs import LZ4

        if len(data) < 4:
            raise ValueError("truncated lz4 header")
        _declared(int.from_bytes(data[:4], "little"), limit, exact)
        return bytes(LZ4().decode(data))
    if name == "zstd":
        from numcodecs import Zstd

        _declared(_zstd_content_size(data), limit, exact)
        return bytes(Zstd().decode(data))
    raise ValueError(f"codec {str(name)[:40]!r} is not read")


# -- Zarr chunks ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkSpec:
    """What one chunk of an array must decode to, from its (already checked) ``.zarray``."""

    name: str
    nbytes: int
    codecs: tuple[dict, ...]  # in decode order: the compressor, then the filters reversed

    @classmethod
    def from_zarray(cls, name: str, zarray: dict, *, max_chunk_bytes: int) -> ChunkSpec:
        try:
            dtype = np.dtype(zarray["dtype"])
            chunks = [int(c) for c in zarray["chunks"]]
        except (KeyError, TypeError, ValueError):
            raise InvalidDataError(f"{name}: dtype or chunks cannot be read") from None
        if dtype.kind not in "fiumM" or dtype.itemsize == 0:
            raise InvalidDataError(f"{name}: dtype {zarray['dtype']!r} is not numeric")
        nbytes = math.prod(chunks) * dtype.itemsize
        if nbytes > max_chunk_bytes:
            raise SafetyViolation(f"{name}: a chunk of {nbytes} bytes would exceed the chunk size cap")
        _check_fill_value(name, dtype, zarray.get("fill_value"))
        codecs = [zarray.get("compressor"), *reversed(zarray.get("filters") or [])]
        return cls(name, nbytes, tuple(c for c in codecs if c is not None))


def _check_fill_value(name: str, dtype: np.dtype, fill: Any) -> None:
    """Zarr would fail on a bad fill value at open time with a message naming nothing: check it here."""
    if fill is None:
        return
    ok = False
    if dtype.kind == "f":
        ok = fill in ("NaN", "Infinity", "-Infinity") or (isinstance(fill, int | float) and not isinstance(fill, bool))
    elif dtype.kind in "iumM":
        ok = isinstance(fill, int) and not isinstance(fill, bool)
        if ok and dtype.kind in "iu":
            info = np.iinfo(dtype)
            ok = info.min <= fill <= info.max
    if not ok:
        raise InvalidDataError(f"{name}: fill_value {str(fill)[:40]!r} is not valid for dtype {dtype.str}")


def check_time_units(name: str, zattrs: dict) -> None:
    """CF time units ("hours since ...") that no calendar decodes are refused naming the array.

    xarray would fail the whole open with a message that names no variable; decoding one zero
    under the stated units and calendar here gives the same verdict, attributed.
    """
    units = zattrs.get("units")
    if not isinstance(units, str) or " since " not in units:
        return
    from xarray.coding.times import decode_cf_datetime

    try:
        decode_cf_datetime(np.zeros(1, dtype=np.int64), units, zattrs.get("calendar"))
    except Exception as exc:
        raise InvalidDataError(f"{name}: time units {units[:60]!r} cannot be decoded ({str(exc)[:80]})") from None


def zarr_view(
    meta: dict, arrays: Iterable[str], *, max_chunk_bytes: int
) -> tuple[dict[str, ChunkSpec], dict[str, bytes]]:
    """The chunk specs of ``arrays`` and the metadata files Zarr is shown for them (codecs removed).

    Zarr then sees only those arrays and receives chunks already decoded by :func:`decode_chunk`,
    so none of its own decoders, nor any extra array or attribute of the store, is ever involved.
    """
    shown: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": {}}
    specs: dict[str, ChunkSpec] = {}
    for name in arrays:
        zarray, zattrs = meta.get(f"{name}/.zarray"), meta.get(f"{name}/.zattrs", {})
        if not isinstance(zarray, dict) or not isinstance(zattrs, dict):
            raise InvalidDataError(f"forecast has no array {name!r}")
        specs[name] = ChunkSpec.from_zarray(name, zarray, max_chunk_bytes=max_chunk_bytes)
        check_time_units(name, zattrs)
        shown[f"{name}/.zarray"] = {**zarray, "compressor": None, "filters": None}
        shown[f"{name}/.zattrs"] = zattrs
    served = {key: json.dumps(value).encode() for key, value in shown.items()}
    served[".zmetadata"] = json.dumps({"zarr_consolidated_format": 1, "metadata": shown}).encode()
    return specs, served


@contextmanager
def decoding(what: str) -> Iterator[None]:
    """Any failure to decode a miner's bytes inside is InvalidDataError naming ``what`` (never retried).

    Our own errors and transport errors pass through unchanged: those keep their retry class.
    """
    try:
        yield
    except (WeatherError, httpx.HTTPError, OSError):
        raise
    except Exception as exc:
        raise InvalidDataError(f"{what}: cannot be decoded ({type(exc).__name__}: {str(exc)[:160]})") from None


def decode_chunk(key: str, data: bytes, spec: ChunkSpec, *, max_chunk_bytes: int) -> bytes:
    """The chunk's raw array bytes, or InvalidDataError naming ``key``; output bounded at every step."""
    for position, codec in enumerate(spec.codecs):
        last = position == len(spec.codecs) - 1
        limit = spec.nbytes if last else max_chunk_bytes
        try:
            data = _decode_codec(codec, data, limit, spec.nbytes if last else None)
        except _TooLarge:
            raise InvalidDataError(
                f"{key}: {codec.get('id')} chunk expands beyond {limit} bytes (declared chunk size or cap): refused"
            ) from None
        except (ValueError, RuntimeError, TypeError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise InvalidDataError(f"{key}: {codec.get('id')} chunk cannot be decoded ({str(exc)[:120]})") from None
    if len(data) != spec.nbytes:
        raise InvalidDataError(
            f"{key}: chunk decodes to {len(data)} bytes, the declared chunk shape needs {spec.nbytes}"
        )
    return data


# -- HTTP Content-Encoding -----------------------------------------------------------------------------------


def decode_content(raw: bytes, encodings: list[str], max_bytes: int) -> bytes:
    """Undo ``Content-Encoding`` layers (last applied first), never producing more than ``max_bytes``."""
    layers = [e.strip().lower() for e in encodings if e.strip() and e.strip().lower() != "identity"]
    if len(layers) > MAX_CONTENT_ENCODINGS:
        raise SafetyViolation(f"{len(layers)} stacked content encodings refused")
    data = raw
    for encoding in reversed(layers):
        try:
            if encoding in ("gzip", "x-gzip"):
                data = _inflate(data, _GZIP_WBITS, max_bytes)
            elif encoding == "deflate":
                data = _inflate(data, _ZLIB_OR_GZIP_WBITS, max_bytes)
            else:
                raise SafetyViolation(f"content encoding {encoding[:30]!r} refused (identity was asked for)")
        except _TooLarge:
            raise SafetyViolation(f"{encoding} response expands beyond the cap of {max_bytes} bytes") from None
        except (ValueError, zlib.error) as exc:
            raise InvalidDataError(f"{encoding} response cannot be decoded ({str(exc)[:120]})") from None
    return data

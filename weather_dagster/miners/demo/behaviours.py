"""What a demo miner can be told to do (issue 4): one honest behaviour and every failure we defend against."""

from __future__ import annotations

from enum import StrEnum


class Behaviour(StrEnum):
    GOOD = "good"
    SLOW = "slow"  # every answer delayed, forecast ready later: still accepted
    OFFLINE = "offline"  # nothing listens on its port
    FLAKY_5XX = "flaky_5xx"  # every other encrypted call answers HTTP 500
    NEVER_COMPLETES = "never_completes"  # polls say "processing" forever
    FETCH_REJECTED = "fetch_rejected"  # refuses the job (hotkey mismatch answer)
    WRONG_SHAPES = "wrong_shapes"  # field rows do not match the latitude coordinate's size
    WRONG_UNITS = "wrong_units"  # 2t in degC
    NAN_INJECTION = "nan_injection"  # almost every value NaN
    EXTREME_VALUES = "extreme_values"  # cells of 1e15
    GFS_COPY = "gfs_copy"  # serves the GFS forecast as its own
    CHUNK_SWAPPED = "chunk_swapped_after_freeze"  # a chunk changes once the manifest was fetched
    BAD_SIGNATURE = "bad_signature"  # manifest.sig does not verify
    WRONG_SIGNER = "wrong_signer"  # manifest signed by another hotkey
    HASH_CHANGED = "hash_changed_later"  # reports a different manifest hash on later requests
    LATE = "late"  # completes after the manifest freeze window
    OVERSIZED_METADATA = "oversized_metadata"  # consolidated metadata of many megabytes
    REDIRECT = "redirect"  # /forecasts/ answers 302 to another host:port
    SLOW_DRIP = "slow_drip"  # store files trickle out a few bytes at a time
    # Answers the reference miner really gives (issue 10, protocol tolerance; their own round in tests).
    KERCHUNK_PROCESSING = "kerchunk_processing"  # kerchunk says "processing" (200, null URL) twice, then serves
    KERCHUNK_NOT_FOUND = "kerchunk_not_found"  # poll says completed, kerchunk then says "not_found"
    KERCHUNK_ERROR = "kerchunk_error"  # poll says completed, kerchunk then says "error"
    POLL_FETCH_ERROR = "poll_fetch_error"  # its job failed: poll answers HTTP 500 naming FETCH_ERROR
    DUPLICATE_JOB = "duplicate_job"  # answers with uid 0's job_id (one miner process behind two uids)
    STORE_RESETS = "store_resets"  # every third store read: connection dropped mid-body (server restarts)
    # Hostile miners (issue 10, see demo/hostile.py): each must be refused cheaply, classified, alone.
    HTTP_GZIP_BOMB = "http_gzip_bomb"  # chunk responses are a gzip Content-Encoding bomb
    STACKED_ENCODING = "stacked_encoding"  # Content-Encoding: gzip, gzip around a bomb
    ZLIB_BOMB = "zlib_bomb"  # 2t chunks decompress (zlib) to far more than the declared chunk
    GZIP_BOMB = "gzip_bomb"  # the same with the gzip codec
    ZSTD_BOMB = "zstd_bomb"  # the same with zstd
    BLOSC_BOMB = "blosc_bomb"  # the same with blosc
    SHORT_CHUNK = "short_chunk"  # a 2t chunk four bytes shorter than its declared shape
    CORRUPT_CHUNK = "corrupt_chunk"  # a 2t chunk that is not the zlib stream its metadata says
    EXTRA_ARRAYS = "extra_arrays"  # an extra variable and a huge extra coordinate (bombs): never read
    DEEP_JSON = "deep_json"  # initiate-fetch answers JSON nested 100 000 levels deep
    HEADER_DRIP = "header_drip"  # response headers trickle out forever
    BAD_FILL_VALUE = "bad_fill_value"  # 2t fill_value is not a number
    BAD_TIME_UNITS = "bad_time_units"  # time units no calendar can decode


ALL_BEHAVIOURS: tuple[Behaviour, ...] = tuple(Behaviour)
PROTOCOL_BEHAVIOURS: tuple[Behaviour, ...] = ALL_BEHAVIOURS[
    ALL_BEHAVIOURS.index(Behaviour.KERCHUNK_PROCESSING) : ALL_BEHAVIOURS.index(Behaviour.HTTP_GZIP_BOMB)
]
HOSTILE_BEHAVIOURS: tuple[Behaviour, ...] = ALL_BEHAVIOURS[ALL_BEHAVIOURS.index(Behaviour.HTTP_GZIP_BOMB) :]

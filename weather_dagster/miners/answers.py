"""What a miner's answers mean when they are not the happy path, as the reference miner really gives them.

The reference miner answers kerchunk-request with HTTP 200, a status and null URL, hash and token
while a job is not completed, and answers poll with HTTP 500 naming an undefined ``FETCH_ERROR``
once a job failed (gaia/miner/utils/subnet.py). Neither is bad data: one is a wait, the other the
miner's own failure, and both must say so in the recorded error.
"""

from __future__ import annotations

from weather_dagster.core.errors import MinerJobFailed, MinerNotReady
from weather_dagster.miners import protocol


class JobNotFound(MinerJobFailed):
    """The miner said the job was done, then that it does not know it (kerchunk ``not_found``)."""

    category = "job_not_found"


def check_kerchunk_ready(answer: protocol.KerchunkResponse) -> None:
    """Not completed yet is a retry; an unknown or failed job is the miner's failure; never invalid_data."""
    status = (answer.status or "").lower()
    said = f"{answer.status!r}" + (f" ({answer.message})" if answer.message else "")
    if status == protocol.KERCHUNK_NOT_FOUND:
        raise JobNotFound(f"kerchunk-request answered {said}: the miner no longer knows the job it completed")
    if status in protocol.KERCHUNK_FAILED:
        raise MinerJobFailed(f"kerchunk-request answered {said}: the miner reports its job failed")
    if not answer.ready:
        raise MinerNotReady(f"kerchunk-request answered {said} without URL, hash and token: not ready yet")


def unreachable_state(exc: BaseException) -> str:
    """The poll state of a failed request; a reference miner's FETCH_ERROR answer is its job's failure."""
    excerpt = getattr(exc, "body_excerpt", b"")
    if protocol.FETCH_ERROR_MARKER in excerpt:
        raise MinerJobFailed(f"miner reports FETCH_ERROR: its job failed (poll answered {exc})")
    return f"unreachable ({exc})"[:400] if excerpt else f"unreachable ({type(exc).__name__})"

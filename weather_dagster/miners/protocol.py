"""Request and response shapes of the subnet's miner endpoints (SPEC section 6).

Responses are parsed into strict, bounded models: unknown fields are ignored, every string has a
length cap, and nothing is evaluated. Status sets decide what the validator does next.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

PUBLIC_KEY_PATH = "/public-encryption-key"
EXCHANGE_KEY_PATH = "/exchange-symmetric-key"
INITIATE_FETCH_PATH = "/weather-initiate-fetch"
POLL_STATUS_PATH = "/weather-poll-job-status"
KERCHUNK_PATH = "/weather-kerchunk-request"
FORECASTS_PREFIX = "/forecasts/"

# initiate-fetch answers
FETCH_ACCEPTED = "fetch_accepted"
FETCH_COMPLETED = "completed"
FETCH_REJECTED = "fetch_rejected"
FETCH_ERROR = "error"

# poll answers
POLL_DONE = frozenset({"completed"})
POLL_RUNNING = frozenset({"processing", "received", "running", "running_inference", "processing_output"})
# The statuses the reference poll step fails on at once (its input hash checks included).
POLL_FAILED = frozenset(
    {"failed", "error", "fetch_error", "input_hash_mismatch", "input_hash_timeout", "input_poll_error"}
)

# kerchunk-request answers: the reference miner answers HTTP 200 with one of these and null URL, hash
# and token while the job is not completed (gaia/miner/utils/subnet.py), so none of them is bad data.
# Any other status without URL, hash and token ("processing", even "completed") means not ready yet.
KERCHUNK_NOT_FOUND = "not_found"
KERCHUNK_FAILED = frozenset({"error", "failed", "fetch_error"})
# A failed job on a reference miner makes its poll handler read an undefined ``FETCH_ERROR`` status
# constant: the answer is HTTP 500 naming it. The job failed for good; waiting 20 polls changes nothing.
FETCH_ERROR_MARKER = b"FETCH_ERROR"

NO_SYMMETRIC_KEY = "No symmetric key found"

ShortText = Annotated[str, StringConstraints(max_length=256)]
Message = Annotated[str, StringConstraints(max_length=2048)]
Hash = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InitiateFetchResponse(_Response):
    status: ShortText
    job_id: ShortText | None = None
    message: Message | None = None
    zarr_store_url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    verification_hash: Hash | None = None
    access_token: Annotated[str, StringConstraints(max_length=8192)] | None = Field(None, repr=False)


class PollResponse(_Response):
    status: ShortText
    job_id: ShortText | None = None
    message: Message | None = None


class KerchunkResponse(_Response):
    """URL, hash and token are null while the job is not completed; :attr:`ready` says whether all three came."""

    status: ShortText | None = None
    message: Message | None = None
    zarr_store_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    verification_hash: Hash | None = None
    access_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)] | None = Field(None, repr=False)

    @property
    def ready(self) -> bool:
        return bool(self.zarr_store_url and self.verification_hash and self.access_token)


def initiate_fetch_payload(
    forecast_start_time: datetime, previous_step_time: datetime, validator_hotkey: str, miner_hotkey: str
) -> dict:
    return {
        "data": {
            "forecast_start_time": forecast_start_time.isoformat(),
            "previous_step_time": previous_step_time.isoformat(),
            "validator_hotkey": validator_hotkey,
            "expected_miner_hotkey": miner_hotkey,
        }
    }


def job_payload(job_id: str) -> dict:
    return {"data": {"job_id": job_id}}

"""Signed forecast manifests: build (demo miners), verify, and freeze once (SPEC section 6).

A manifest lists ``sha256(path + NUL + bytes)`` for every file of a store; ``manifest.sig`` is the
miner's sr25519 signature over the manifest bytes, whose sha256 is the ``verification_hash`` the
miner claims. The validator verifies it once inside the freeze window and stores it; it is never
overwritten, and every later read is checked against it.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from weather_dagster.core.errors import ManifestError
from weather_dagster.db.schema import forecast_runs, miner_responses
from weather_dagster.db.types import utcnow
from weather_dagster.miners.decoding import load_json
from weather_dagster.miners.keys import verify_signature
from weather_dagster.miners.perimeter import check_store_key

MANIFEST_KEY = "manifest.json"
SIGNATURE_KEY = "manifest.sig"
SCHEMA_VERSION = "1.0"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class FreezeWindowClosed(ManifestError):
    """The forecast was not ready (or its manifest not fetched) before the freeze deadline."""

    category = "late"


def file_hash(path: str, data: bytes) -> str:
    # Incremental: hashing a 4 MB chunk must not first copy it behind its path.
    digest = hashlib.sha256(path.encode("utf-8") + b"\0")
    digest.update(data)
    return digest.hexdigest()


def manifest_hash(manifest_bytes: bytes) -> str:
    return hashlib.sha256(manifest_bytes).hexdigest()


def build_manifest(file_hashes: dict[str, str], signer_ss58: str, extra: dict[str, Any] | None = None) -> bytes:
    body = {
        "manifest_schema_version": SCHEMA_VERSION,
        "chunk_hash_algorithm": "sha256",
        "signer_hotkey_ss58": signer_ss58,
        "files": dict(sorted(file_hashes.items())),
        **(extra or {}),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _signature_hex(sig_bytes: bytes) -> str:
    if len(sig_bytes) == 64:
        return sig_bytes.hex()
    try:
        return sig_bytes.decode("ascii").strip().removeprefix("0x")
    except UnicodeDecodeError:
        raise ManifestError("manifest.sig is neither 64 raw bytes nor hex text") from None


def verify_manifest(
    manifest_bytes: bytes, signature_bytes: bytes, claimed_hash: str, miner_hotkey: str, *, max_keys: int
) -> dict[str, Any]:
    """The parsed manifest, or ManifestError naming the first rule it breaks."""
    if manifest_hash(manifest_bytes) != claimed_hash.lower():
        raise ManifestError("manifest hash does not match the claimed verification_hash")
    try:
        manifest = load_json(manifest_bytes, "manifest")
    except ValueError:
        raise ManifestError("manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise ManifestError("manifest is not a JSON object")
    if not manifest.get("manifest_schema_version"):
        raise ManifestError("manifest has no manifest_schema_version")
    if manifest.get("chunk_hash_algorithm") != "sha256":
        raise ManifestError("manifest chunk_hash_algorithm must be sha256")
    if manifest.get("signer_hotkey_ss58") != miner_hotkey:
        raise ManifestError("manifest signer is not the miner's hotkey (wrong signer)")
    if not verify_signature(miner_hotkey, manifest_bytes, _signature_hex(signature_bytes)):
        raise ManifestError("manifest signature does not verify against the miner's hotkey")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ManifestError("manifest has no files")
    if len(files) > max_keys:
        raise ManifestError(f"manifest lists {len(files)} files, more than the cap of {max_keys}")
    for path, digest in files.items():
        check_store_key(path)
        if not isinstance(digest, str) or not _HEX64.match(digest.lower()):
            raise ManifestError("manifest has a file hash that is not 64 hex characters")
        if path in (MANIFEST_KEY, SIGNATURE_KEY):
            raise ManifestError("manifest must not list itself or its signature")
    if ".zmetadata" not in files and "zarr.json" not in files:
        raise ManifestError("manifest lists no consolidated metadata")
    return manifest


def freeze_deadline(conn: sa.Connection, run_id: int, window_s: float) -> datetime:
    started = conn.execute(sa.select(forecast_runs.c.run_initiation_time).where(forecast_runs.c.id == run_id)).scalar()
    if started is None:
        raise ManifestError(f"round {run_id} does not exist")
    return started + timedelta(seconds=window_s)


def check_freeze_window(engine: sa.Engine, run_id: int, window_s: float, now: datetime | None = None) -> None:
    with engine.connect() as conn:
        deadline = freeze_deadline(conn, run_id, window_s)
    if (now or utcnow()) > deadline:
        raise FreezeWindowClosed("manifest freeze window closed before the forecast was ready (late)")


def freeze(
    engine: sa.Engine,
    *,
    run_id: int,
    miner_uid: int,
    miner_hotkey: str,
    manifest: dict[str, Any],
    verification_hash: str,
    store_url: str,
    window_s: float,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store the manifest once; a repeat with the same hash is a no-op, a different hash is refused."""
    now = now or utcnow()
    responses = miner_responses.c
    mine = sa.and_(responses.run_id == run_id, responses.miner_uid == miner_uid, responses.miner_hotkey == miner_hotkey)
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(responses.frozen_manifest, responses.verification_hash_claimed).where(mine)
        ).one_or_none()
        if row is None:
            raise ManifestError("no response row to freeze into")
        if row.frozen_manifest is not None:
            if row.verification_hash_claimed != verification_hash:
                raise ManifestError("miner now reports a different manifest hash than the frozen one")
            return row.frozen_manifest
        if now > freeze_deadline(conn, run_id, window_s):
            raise FreezeWindowClosed("manifest freeze window closed before the forecast was ready (late)")
        conn.execute(
            sa.update(miner_responses)
            .where(mine, responses.frozen_manifest.is_(None))
            .values(
                frozen_manifest=manifest,
                manifest_frozen_at=now,
                verification_hash_claimed=verification_hash,
                zarr_store_url=store_url,
                updated_at=now,
            )
        )
    return manifest


def check_same_hash(frozen_hash: str | None, reported_hash: str) -> None:
    if not frozen_hash or frozen_hash.lower() != reported_hash.lower():
        raise ManifestError("miner now reports a different manifest hash than the frozen one")

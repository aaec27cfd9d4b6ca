"""Signed score receipts: what one Day1 or ERA5-lead score was computed from, checkable by anyone.

A receipt is canonical JSON (sorted keys, no whitespace, ASCII, floats as Python's shortest
round-trip ``repr``, non-finite floats as ``null`` like the score tables) holding the round, the
miner, the lead, the frozen manifest hash (it covers every byte of the miner's store), a digest of
every truth, climatology and GFS field scoring read (after decoding: BLAKE3 over the C-contiguous
bytes, named beside it by source, variable, level, time, dtype and shape), the scoring
profile with the full scoring settings and their hash, the package version, the component metrics
and the score. The validator signs the canonical bytes with its sr25519 hotkey; the receipt, its
sha256 and the signature are stored in ``weather_score_receipts`` and ``replay`` recomputes it.

Field digests are collected by wrapping the sources handed to the scorers (``scoring.digests``),
so the scorers stay unaware of receipts; a cached field comes with the digest its cache entry
recorded, and any other field read once for many miners is hashed once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from substrateinterface import Keypair

import weather_dagster
from weather_dagster.db.schema import miner_responses, score_receipts
from weather_dagster.db.upsert import insert_for
from weather_dagster.miners.keys import keypair_from_seed, keypair_from_wallet_file, verify_signature
from weather_dagster.scoring.day1 import Day1Result
from weather_dagster.scoring.digests import DIGEST as DIGEST  # re-exported: replay and tests name it here
from weather_dagster.scoring.digests import RECEIPT_VERSION, FieldDigests, canonical_json, plain
from weather_dagster.scoring.era5 import LeadResult
from weather_dagster.scoring.store import ResponseKey, clean
from weather_dagster.settings import ScoringSettings, Settings

DAY1, ERA5 = "day1", "era5"
DAY1_LEAD = 0  # Day1 receipts sit at lead 0, like the Day1 aggregate score row
log = logging.getLogger(__name__)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- what a score consists of ------------------------------------------------------------------------


def settings_body(scoring: ScoringSettings) -> tuple[dict[str, Any], str]:
    """The scoring settings as recorded (JSON) and the sha256 of their canonical form."""
    return _settings_body(scoring.model_dump_json())


@functools.lru_cache(maxsize=16)
def _settings_body(dumped: str) -> tuple[dict[str, Any], str]:
    """Kept per distinct settings: every receipt of a process records the same ones."""
    body = json.loads(canonical_json(json.loads(dumped)))
    return body, sha256_hex(canonical_json(body))


def _metrics(m) -> dict[str, Any]:
    names = ("rmse", "mse", "acc", "skill", "bias", "mae", "pattern_correlation", "clone_distance")
    return {name: getattr(m, name) for name in names}


def day1_components(result: Day1Result) -> dict[str, Any]:
    """Flat name -> value of everything a Day1 score consists of (compared one by one by replay)."""
    out: dict[str, Any] = {
        "score": result.score,
        "passed": result.passed,
        "clamped": result.clamped,
        "mean_skill": result.mean_skill,
        "mean_acc": result.mean_acc,
    }
    for c in result.components:
        name = f"{c.variable}@{c.lead_hours}h"
        out[f"{name}.passed"] = c.passed
        out[f"{name}.skill_after_penalty"] = c.skill_after_penalty
        out[f"{name}.clone_penalty"] = c.clone_penalty
        for metric, value in (_metrics(c.metrics) if c.metrics else {}).items():
            out[f"{name}.{metric}"] = value
    return clean(out)


def era5_components(result: LeadResult) -> dict[str, Any]:
    """Flat name -> value of one ERA5 lead: status, score, per-variable and per-level metrics."""
    out: dict[str, Any] = {
        "status": result.status,
        "reason": result.reason,
        "score": result.score,
        "rmse_reference": result.rmse_reference,
    }
    for name, v in sorted(result.variables.items()):
        for metric in ("rmse", "acc", "skill", "climatology_rmse"):
            out[f"{name}.{metric}"] = getattr(v, metric)
        for comp in v.levels:
            label = name if comp.level is None else f"{name}{comp.level}"
            for metric, value in _metrics(comp.metrics).items():
                if metric != "clone_distance":
                    out[f"{label}.level.{metric}"] = value
    return clean(out)


def build_receipt(
    *,
    kind: str,
    key: ResponseKey,
    init_time: datetime,
    lead_hours: int,
    manifest_sha256: str | None,
    inputs: list[dict[str, Any]],
    scoring: ScoringSettings,
    components: dict[str, Any],
    score: float | None,
    scored_at: datetime,
    signer_ss58: str,
    signer_kind: str,
) -> dict[str, Any]:
    settings, settings_sha = settings_body(scoring)
    return {
        "receipt_version": RECEIPT_VERSION,
        "kind": kind,
        "round": {"run_id": key.run_id, "init_time": plain(init_time)},
        "miner": {"uid": key.miner_uid, "hotkey": key.miner_hotkey},
        "lead_hours": lead_hours,
        "manifest_sha256": manifest_sha256,
        "inputs": inputs,
        "scoring": {"profile": scoring.profile, "settings_sha256": settings_sha, "settings": settings},
        "package": {"name": "weather-dagster", "version": weather_dagster.__version__},
        "components": components,
        "score": score,
        "scored_at": plain(scored_at),
        "signer": {"ss58": signer_ss58, "kind": signer_kind},
    }


# -- signing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    keypair: Keypair
    kind: str  # chain_wallet | hotkey_file | dev_seed (demos and tests only)


def receipt_signer(settings: Settings) -> Signer | None:
    """The validator hotkey that signs receipts, from settings; ``None`` when none is configured.

    The chain wallet (``settings.chain``: <wallet_path>/<wallet_name>/hotkeys/<wallet_hotkey>) when
    the chain adapters are on, else the hotkey file the validator signs miner requests with, else
    the hex seed demos and tests set (``miners.hotkey_seed``): such receipts say ``dev_seed``.
    """
    chain = settings.chain
    if chain.metagraph_enabled or chain.weights_enabled:
        path = chain.wallet_path.expanduser() / chain.wallet_name / "hotkeys" / chain.wallet_hotkey
        return Signer(keypair_from_wallet_file(path), "chain_wallet")
    if settings.miners.hotkey_file is not None:
        return Signer(keypair_from_wallet_file(settings.miners.hotkey_file), "hotkey_file")
    if settings.miners.hotkey_seed:
        return Signer(keypair_from_seed(settings.miners.hotkey_seed), "dev_seed")
    return None


@dataclass(frozen=True)
class StoredReceipt:
    receipt_json: str
    receipt_sha256: str
    signature: str
    signer_ss58: str

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.receipt_json)

    def verify(self) -> bool:
        """The signature verifies for the signer, the hash matches, and the body names that signer."""
        data = self.receipt_json.encode()
        return (
            sha256_hex(data) == self.receipt_sha256
            and canonical_json(json.loads(data)) == data
            and self.body.get("signer", {}).get("ss58") == self.signer_ss58
            and verify_signature(self.signer_ss58, data, self.signature)
        )

    def export(self) -> dict[str, Any]:
        """The receipt as a file: body plus signature (what ``replay RECEIPT`` reads)."""
        return {
            "receipt": self.body,
            "receipt_sha256": self.receipt_sha256,
            "signature": self.signature,
            "signer_ss58": self.signer_ss58,
        }

    @classmethod
    def from_export(cls, data: Mapping[str, Any]) -> StoredReceipt:
        return cls(
            canonical_json(data["receipt"]).decode(), data["receipt_sha256"], data["signature"], data["signer_ss58"]
        )


def sign_receipt(body: dict[str, Any], signer: Signer) -> StoredReceipt:
    data = canonical_json(body)
    signature = signer.keypair.sign(data)
    return StoredReceipt(data.decode(), sha256_hex(data), "0x" + signature.hex(), signer.keypair.ss58_address)


# -- storage ----------------------------------------------------------------------------------------

_KEYS = ["run_id", "miner_uid", "kind", "lead_hours", "scoring_profile"]


def _manifest_hash(conn: sa.Connection, key: ResponseKey) -> str | None:
    return conn.execute(
        sa.select(miner_responses.c.verification_hash_claimed).where(miner_responses.c.id == key.response_id)
    ).scalar()


def store_receipt(conn: sa.Connection, body: dict[str, Any], signer: Signer, now: datetime) -> StoredReceipt:
    """Sign and upsert; an unchanged body keeps its row (and its first signature) untouched."""
    receipt = sign_receipt(body, signer)
    row = {
        "run_id": body["round"]["run_id"],
        "miner_uid": body["miner"]["uid"],
        "miner_hotkey": body["miner"]["hotkey"],
        "kind": body["kind"],
        "lead_hours": body["lead_hours"],
        "scoring_profile": body["scoring"]["profile"],
        "receipt_json": receipt.receipt_json,
        "receipt_sha256": receipt.receipt_sha256,
        "signature": receipt.signature,
        "signer_ss58": receipt.signer_ss58,
        "created_at": now,
    }
    stmt = insert_for(conn, score_receipts).values(**row)
    update = {c: stmt.excluded[c] for c in row if c not in _KEYS}
    changed = score_receipts.c.receipt_sha256.is_distinct_from(stmt.excluded.receipt_sha256)
    conn.execute(stmt.on_conflict_do_update(index_elements=_KEYS, set_=update, where=changed))
    return receipt


def write_score_receipt(
    conn: sa.Connection,
    settings: Settings,
    key: ResponseKey,
    init_time: datetime,
    result: Day1Result | LeadResult,
    digests: FieldDigests,
    now: datetime,
) -> StoredReceipt | None:
    """The receipt of one Day1 or ERA5-lead score, in the transaction that writes the score rows."""
    signer = receipt_signer(settings)
    if signer is None:
        log.warning("no validator hotkey configured: score of uid %s written without a receipt", key.miner_uid)
        return None
    if isinstance(result, Day1Result):
        kind, lead, components = DAY1, DAY1_LEAD, day1_components(result)
        score = result.score
    else:
        kind, lead, components = ERA5, result.lead_hours, era5_components(result)
        score = result.score if result.ok else None
    body = build_receipt(
        kind=kind,
        key=key,
        init_time=init_time,
        lead_hours=lead,
        manifest_sha256=_manifest_hash(conn, key),
        inputs=digests.entries,
        scoring=settings.scoring,
        components=components,
        score=score if score is None or math.isfinite(score) else None,
        scored_at=now,
        signer_ss58=signer.keypair.ss58_address,
        signer_kind=signer.kind,
    )
    return store_receipt(conn, body, signer, now)


def get_receipt(
    conn: sa.Connection, run_id: int, miner_uid: int, kind: str, lead_hours: int = DAY1_LEAD, profile: str | None = None
) -> StoredReceipt | None:
    """The receipt of one score (Day1: ``kind="day1"``, lead 0); the newest profile when not given."""
    r = score_receipts.c
    query = sa.select(r.receipt_json, r.receipt_sha256, r.signature, r.signer_ss58).where(
        r.run_id == run_id, r.miner_uid == miner_uid, r.kind == kind, r.lead_hours == lead_hours
    )
    if profile is not None:
        query = query.where(r.scoring_profile == profile)
    row = conn.execute(query.order_by(r.created_at.desc(), r.id.desc()).limit(1)).first()
    return StoredReceipt(*row) if row else None


def receipts_of(conn: sa.Connection, run_id: int, miner_uid: int) -> list[StoredReceipt]:
    """Every receipt of a miner in a round: Day1 first, then the leads in order."""
    r = score_receipts.c
    rows = conn.execute(
        sa.select(r.receipt_json, r.receipt_sha256, r.signature, r.signer_ss58)
        .where(r.run_id == run_id, r.miner_uid == miner_uid)
        .order_by(r.kind, r.lead_hours, r.scoring_profile)
    ).all()
    return [StoredReceipt(*row) for row in rows]

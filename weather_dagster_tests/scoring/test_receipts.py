"""Score receipts: canonical bytes, field digests anyone can recompute, signer choice, storage."""

from __future__ import annotations

import fcntl
import hashlib
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa
from blake3 import blake3

from weather_dagster.core.states import MinerForecastStatus
from weather_dagster.db.schema import miner_responses, miner_scores, score_receipts
from weather_dagster.miners.keys import derived_seed, keypair_from_seed, verify_signature, write_wallet_file
from weather_dagster.reference.cache import DIGESTS, PartitionCache
from weather_dagster.reference.canonical import cached_digest_of, canonical_dataset, field_of
from weather_dagster.reference.grid import Grid
from weather_dagster.scoring.era5 import score_era5_lead
from weather_dagster.scoring.receipts import (
    DAY1,
    ERA5,
    FieldDigests,
    canonical_json,
    get_receipt,
    receipt_signer,
    receipts_of,
    write_score_receipt,
)
from weather_dagster.scoring.service import run_day1, run_era5
from weather_dagster.scoring.store import ResponseKey
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.helpers import make_response, make_round, table_rows
from weather_dagster_tests.support.synthetic_scoring import MinerProfile, SyntheticScoringInputs

GRID = Grid(6.0)
INIT = datetime(2026, 1, 10, tzinfo=UTC)
SEED = derived_seed("tests", "receipts-validator")


def test_canonical_json_is_sorted_compact_and_round_trips_floats():
    value = {"b": [0.1, 1e-300, 2.0], "a": {"z": float("nan"), "y": np.float32(0.5), "x": True}}
    data = canonical_json(value)
    assert data == b'{"a":{"x":true,"y":0.5,"z":null},"b":[0.1,1e-300,2.0]}'
    assert canonical_json(json.loads(data)) == data


def test_field_digests_are_recomputable_from_the_array_and_kept_once():
    values = np.arange(12, dtype=np.float32).reshape(3, 4)

    class Source:
        grid = GRID

        def field(self, variable, level, when):
            return values

    digests = FieldDigests()
    source = digests.wrap(Source(), "era5")
    when = INIT + timedelta(hours=24)
    for _ in range(2):
        assert source.field("t", 500, when) is values
    source.field("t", 850, when)
    entries = digests.entries
    assert [e["level"] for e in entries] == [500, 850] and source.grid is GRID
    header = {"source": "era5", "variable": "t", "level": 500, "at": ["2026-01-11T00:00:00Z"]}
    header |= {"dtype": "<f4", "shape": [3, 4]}
    assert entries[0] == {**header, "blake3": blake3(values.tobytes()).hexdigest()}
    assert entries[1]["blake3"] == entries[0]["blake3"] and digests.hashed == 2  # same bytes, named apart
    # Version 1 receipts hashed the header first; replay recomputes them that way.
    v1 = FieldDigests(trust_cache=False, version=1)
    v1.wrap(Source(), "era5").field("t", 500, when)
    expected = blake3(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\0")
    expected.update(values.tobytes())
    assert v1.entries[0]["blake3"] == expected.hexdigest() != entries[0]["blake3"]


def _cached_entry(tmp_path):
    fields = {("2t", None): np.random.default_rng(1).random(GRID.shape, dtype=np.float32)}
    fields |= {("t", level): fields[("2t", None)] + level for level in (500, 850)}
    cache = PartitionCache(tmp_path)
    cache.get_or_create("era5", "k", lambda: (canonical_dataset(fields, ("2t", "t"), (500, 850), GRID), {}))
    return cache, fields


class _CachedSource:
    """A field source over one lazily read cache entry, shaped like ``reference.sources``."""

    grid = GRID

    def __init__(self, cache: PartitionCache) -> None:
        self.dataset = cache.read("era5", "k", load=False).dataset

    def field(self, variable, level, when):
        return field_of(self.dataset, variable, level)

    def cached_digest(self, variable, level, when):
        return cached_digest_of(self.dataset, variable, level)


def test_a_cached_field_comes_with_the_digest_its_cache_entry_recorded(tmp_path):
    cache, fields = _cached_entry(tmp_path)
    when = INIT + timedelta(hours=24)
    trusted, hashed = FieldDigests(), FieldDigests(trust_cache=False)
    for digests in (trusted, hashed):
        source = digests.wrap(_CachedSource(cache), "era5")
        for name, level in fields:
            source.field(name, level, when)
    # The recorded digests are those of the bytes read: receipts are the same, nothing was hashed.
    assert trusted.entries == hashed.entries and (trusted.hashed, hashed.hashed) == (0, 3)
    assert trusted.entries[1]["blake3"] == blake3(fields[("t", 500)].tobytes()).hexdigest()
    # A chunk rewritten after the entry was written (even with equal bytes) loses its recorded
    # digest: that field is hashed as read, the others still are not.
    altered = fields[("t", 850)] + np.float32(1)
    fresh = _CachedSource(cache)
    index = list(fresh.dataset["pressure_level"].values).index(850)
    (cache.path("era5", "k") / "t" / f"{index}.0.0").write_bytes(altered.tobytes())
    digests = FieldDigests()
    source = digests.wrap(fresh, "era5")
    for name, level in fields:
        source.field(name, level, when)
    assert digests.hashed == 1
    assert digests.entries[2]["blake3"] == blake3(altered.tobytes()).hexdigest()
    assert digests.entries[:2] == hashed.entries[:2]


def test_the_signer_comes_from_the_hotkey_file_then_the_dev_seed(tmp_path):
    assert receipt_signer(load_settings(data_dir=tmp_path)) is None
    dev = receipt_signer(load_settings(data_dir=tmp_path, miners={"hotkey_seed": SEED}))
    assert dev.kind == "dev_seed" and dev.keypair.ss58_address == keypair_from_seed(SEED).ss58_address
    path = tmp_path / "wallet" / "hotkeys" / "default"
    other = derived_seed("tests", "wallet")
    write_wallet_file(path, keypair_from_seed(other), other)
    wallet = receipt_signer(load_settings(data_dir=tmp_path, miners={"hotkey_seed": SEED, "hotkey_file": path}))
    assert wallet.kind == "hotkey_file" and wallet.keypair.ss58_address == keypair_from_seed(other).ss58_address
    chain = load_settings(
        data_dir=tmp_path, miners={"hotkey_seed": SEED}, chain={"metagraph_enabled": True, "wallet_path": tmp_path}
    )
    chain = chain.model_copy(update={"chain": chain.chain.model_copy(update={"wallet_name": "wallet"})})
    assert receipt_signer(chain).kind == "chain_wallet"


def _seed_round(engine: sa.Engine, inputs: SyntheticScoringInputs) -> int:
    run_id = make_round(engine, INIT)
    make_response(engine, run_id, 1, "hk1")
    inputs.register(run_id, 1, "hk1", INIT)
    with engine.begin() as conn:
        conn.execute(sa.update(miner_responses).values(status=MinerForecastStatus.FORECAST_READY.value))
    return run_id


def test_every_score_gets_one_signed_receipt_and_a_rerun_leaves_it_untouched(tmp_path, db_url, database, steps):
    settings = load_settings(
        data_dir=tmp_path / "d",
        database_url=db_url,
        test_mode=True,
        miners={"hotkey_seed": SEED},
        scoring={"era5_lead_hours": [24, 48]},
    )
    inputs = SyntheticScoringInputs(GRID, profiles={1: MinerProfile(phase_deg_per_day=1.0, seed=1)})
    engine = database.engine
    run_id = _seed_round(engine, inputs)
    assert run_day1(engine, steps, settings, inputs, run_id, 1, now=INIT + timedelta(hours=13)).status == "scored"
    run_era5(engine, steps, settings, inputs, run_id, 1, now=INIT + timedelta(days=3))
    rows = table_rows(engine, score_receipts)
    assert sorted((r["kind"], r["lead_hours"]) for r in rows) == [(DAY1, 0), (ERA5, 24), (ERA5, 48)]
    with engine.connect() as conn:
        receipt = get_receipt(conn, run_id, 1, ERA5, 48, profile="reference")
        score = conn.execute(
            sa.select(miner_scores.c.score).where(miner_scores.c.lead_hours == 48, miner_scores.c.variable == "")
        ).scalar_one()
        assert len(receipts_of(conn, run_id, 1)) == 3
    body = receipt.body
    assert body["score"] == score and body["components"]["score"] == score and body["lead_hours"] == 48
    assert body["package"]["version"] and len(body["scoring"]["settings_sha256"]) == 64
    assert body["manifest_sha256"] is None  # the synthetic miner has no frozen manifest
    # Anyone can check it with the signer's public key alone; an edited body does not verify.
    data = receipt.receipt_json.encode()
    assert verify_signature(receipt.signer_ss58, data, receipt.signature)
    assert hashlib.sha256(data).hexdigest() == receipt.receipt_sha256
    edited = data.replace(b'"lead_hours":48', b'"lead_hours":24')
    assert edited != data and not verify_signature(receipt.signer_ss58, edited, receipt.signature)
    # Writing the same score again (a re-materialization) leaves the receipt rows byte-identical.
    digests = FieldDigests()
    truth, clim = digests.wrap(inputs.truth("era5", INIT), "era5"), digests.wrap(inputs.climatology(), "climatology")
    result = score_era5_lead(inputs.forecast(run_id, 1, "hk1"), truth, clim, INIT, 48, settings.scoring)
    key = ResponseKey(receipt_response_id(engine), run_id, 1, "hk1")
    with engine.begin() as conn:
        again = write_score_receipt(conn, settings, key, INIT, result, digests, INIT + timedelta(days=3))
    assert again.receipt_sha256 == receipt.receipt_sha256 and again.signature != receipt.signature
    assert table_rows(engine, score_receipts) == rows  # unchanged body: the first signature stays


def receipt_response_id(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(miner_responses.c.id)).scalar_one()


def test_without_a_validator_hotkey_scores_are_written_without_receipts(tmp_path, db_url, database, steps):
    settings = load_settings(data_dir=tmp_path / "d", database_url=db_url, test_mode=True)
    inputs = SyntheticScoringInputs(GRID)
    run_id = _seed_round(database.engine, inputs)
    outcome = run_day1(database.engine, steps, settings, inputs, run_id, 1, now=INIT + timedelta(hours=13))
    assert outcome.status == "scored" and table_rows(database.engine, score_receipts) == []


def test_an_entry_cached_without_digests_gets_them_on_its_first_lazy_read(tmp_path):
    cache, fields = _cached_entry(tmp_path)
    entry = cache.path("era5", "k")
    (entry / DIGESTS).unlink()
    lock = entry.with_name(entry.name + ".lock")
    with open(lock, "a+") as held:  # someone holds the entry's lock: the read neither waits nor adds them
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert _CachedSource(cache).cached_digest("t", 500, INIT) is None
        assert not (entry / DIGESTS).exists()
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    source = _CachedSource(cache)
    assert source.cached_digest("t", 500, INIT) == blake3(fields[("t", 500)].tobytes()).hexdigest()
    assert len(json.loads((entry / DIGESTS).read_text())) == 3

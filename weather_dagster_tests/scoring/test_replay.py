"""Replay of the signed receipts of a scored round: real reference files, and one altered on disk.

The round's Day1 and ERA5 leads are scored by the service functions the Dagster assets call, with
the truth, GFS and climatology read through ``ReferenceData`` (GRIB2 / Zarr over loopback, into the
partition cache) and a synthetic miner forecast. Replay then re-reads the cache, re-hashes every
field and recomputes; after one ERA5 field is rewritten in the cache, replay names exactly it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import xarray as xr
import zarr

from weather_dagster.core.states import MinerForecastStatus
from weather_dagster.db.schema import miner_responses, miners, score_receipts
from weather_dagster.db.types import utcnow
from weather_dagster.miners.keys import keypair_from_seed
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.scoring.live_inputs import LiveScoringInputs
from weather_dagster.scoring.receipts import DAY1, ERA5, get_receipt, receipts_of
from weather_dagster.scoring.replay import (
    EXIT_BAD_SIGNATURE,
    EXIT_EQUAL,
    EXIT_INPUT_CHANGED,
    EXIT_NOT_FOUND,
    pretty,
    replay,
)
from weather_dagster.scoring.service import run_day1, run_era5
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.fixtures_reference import REFERENCE_GRID, REFERENCE_START
from weather_dagster_tests.support.helpers import make_response, make_round
from weather_dagster_tests.support.miners_support import VALIDATOR_SEED
from weather_dagster_tests.support.synthetic_scoring import MinerProfile, SyntheticScoringInputs

UID, HOTKEY = 7, "hk7"
MANIFEST = "ab" * 32
LEADS = (24, 48)


@dataclass
class RealTruthInputs:
    """Reference fields from the real adapters (cache first), the miner's forecast synthetic."""

    live: LiveScoringInputs
    miner: SyntheticScoringInputs

    def truth(self, kind, init_time):
        return self.live.truth(kind, init_time)

    def climatology(self):
        return self.live.climatology()

    def forecast(self, run_id, uid, hotkey):
        return self.miner.forecast(run_id, uid, hotkey)


@pytest.fixture
def scored(tmp_path: Path, db_url: str, database, steps, reference_urls):
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        test_mode=True,
        reference=reference_urls,
        miners={"hotkey_seed": VALIDATOR_SEED},
        scoring={"era5_lead_hours": list(LEADS)},
    )
    engine = database.engine
    init = REFERENCE_START
    run_id = make_round(engine, init)
    with engine.begin() as conn:
        conn.execute(sa.insert(miners).values(uid=UID, hotkey=HOTKEY, updated_at=utcnow()))
    make_response(engine, run_id, UID, HOTKEY)
    with engine.begin() as conn:
        conn.execute(
            sa.update(miner_responses).values(
                status=MinerForecastStatus.FORECAST_READY.value, verification_hash_claimed=MANIFEST
            )
        )
    synthetic = SyntheticScoringInputs(REFERENCE_GRID, profiles={UID: MinerProfile(phase_deg_per_day=1.0, seed=3)})
    synthetic.register(run_id, UID, HOTKEY, init)
    reference = ReferenceData(settings)
    inputs = RealTruthInputs(LiveScoringInputs(settings, database, reference), synthetic)
    assert run_day1(engine, steps, settings, inputs, run_id, UID, now=init + timedelta(hours=13)).status == "scored"
    outcome = run_era5(engine, steps, settings, inputs, run_id, UID, now=init + timedelta(days=30))
    assert outcome.leads == dict.fromkeys(LEADS, "done")
    reference.close()
    yield settings, run_id, synthetic


def fresh_inputs(settings, database, synthetic) -> RealTruthInputs:
    return RealTruthInputs(LiveScoringInputs(settings, database, ReferenceData(settings)), synthetic)


def test_receipts_of_a_scored_round_verify_and_replay_equal(scored, database, capsys):
    settings, run_id, synthetic = scored
    with database.engine.connect() as conn:
        stored = receipts_of(conn, run_id, UID)
        day1 = get_receipt(conn, run_id, UID, DAY1)
    assert [(r.body["kind"], r.body["lead_hours"]) for r in stored] == [(DAY1, 0), (ERA5, 24), (ERA5, 48)]
    signer = keypair_from_seed(VALIDATOR_SEED).ss58_address
    for receipt in stored:
        assert receipt.verify() and receipt.signer_ss58 == signer
        body = receipt.body
        assert body["manifest_sha256"] == MANIFEST and body["signer"] == {"ss58": signer, "kind": "dev_seed"}
        assert body["scoring"]["profile"] == "reference" and body["miner"] == {"uid": UID, "hotkey": HOTKEY}
        report = replay(receipt, fresh_inputs(settings, database, synthetic), database.engine)
        assert report.exit_code == EXIT_EQUAL, report.lines()
        assert report.components and all(c.equal for c in report.components)
    # Day1 read 5 variables of the GFS analysis, the GFS forecast and the climatology at lead 12 h.
    sources = [(e["source"], e["variable"], e["level"]) for e in day1.body["inputs"]]
    assert len(sources) == 15 and ("gfs_forecast", "z", 500) in sources
    assert day1.body["score"] == day1.body["components"]["score"] > 0
    era5 = stored[2].body
    assert len([e for e in era5["inputs"] if e["source"] == "era5"]) == 4 + 5 * 13
    # Every cached field's digest was recorded with its cache entry (replay, above, re-hashed them all).
    entry = settings.data_dir / "reference" / "era5" / "2025-06-03T00.zarr"
    recorded = {v[0] for v in json.loads((entry / "_digests.json").read_text()).values()}
    assert era5["receipt_version"] == 2 and len(recorded) == 69
    assert {e["blake3"] for e in era5["inputs"] if e["source"] == "era5"} <= recorded
    assert era5["inputs"][0]["at"] == ["2025-06-03T00:00:00Z"] and era5["score"] == era5["components"]["score"]
    print(pretty(day1))  # the pretty receipt (shown with -s)
    assert json.loads(capsys.readouterr().out)["signature"] == day1.signature


def test_an_altered_truth_file_is_caught_at_that_field(scored, database):
    settings, run_id, synthetic = scored
    valid = REFERENCE_START + timedelta(hours=48)
    store = settings.data_dir / "reference" / "era5" / f"{valid:%Y-%m-%dT%H}.zarr"
    levels = list(xr.open_zarr(store)["pressure_level"].values)
    array = zarr.open_group(str(store), mode="r+")["t"]
    dims = xr.open_zarr(store)["t"].dims
    index = [slice(None)] * array.ndim
    index[dims.index("pressure_level")] = levels.index(500)
    array[tuple(index)] = np.asarray(array[tuple(index)]) + np.float32(0.5)  # the truth file is altered
    with database.engine.connect() as conn:
        lead48, lead24 = (get_receipt(conn, run_id, UID, ERA5, lead) for lead in (48, 24))
    report = replay(lead48, fresh_inputs(settings, database, synthetic), database.engine)
    assert report.exit_code == EXIT_INPUT_CHANGED
    assert report.first_changed_input == "era5 t500 @ 2025-06-03T00:00:00Z"
    assert {c.name for c in report.components if not c.equal} >= {"t500.level.rmse", "t.rmse"}
    assert replay(lead24, fresh_inputs(settings, database, synthetic), database.engine).exit_code == EXIT_EQUAL
    # A frozen manifest that changed after scoring is named as such, before any field is read.
    with database.engine.begin() as conn:
        conn.execute(sa.update(miner_responses).values(verification_hash_claimed="cd" * 32))
    changed = replay(lead24, fresh_inputs(settings, database, synthetic), database.engine)
    assert (changed.exit_code, changed.first_changed_input) == (EXIT_INPUT_CHANGED, "frozen manifest")


def test_the_replay_command_exit_codes(scored, database, tmp_path):
    settings, run_id, _ = scored
    env = {**os.environ, "WEATHER_DATABASE_URL": settings.database_url, "WEATHER_DATA_DIR": str(settings.data_dir)}
    exe = [sys.executable, "-m", "weather_dagster.cli", "replay"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*exe, *args], env=env, capture_output=True, text=True, timeout=300, check=False)

    missing = run("--round", str(run_id), "--uid", "99")
    assert missing.returncode == EXIT_NOT_FOUND and "no such receipt" in missing.stderr
    with database.engine.connect() as conn:
        receipt = get_receipt(conn, run_id, UID, ERA5, 24)
        count = conn.execute(sa.select(sa.func.count()).select_from(score_receipts)).scalar_one()
    assert count == 3
    exported = receipt.export()
    exported["receipt"]["score"] = 1.0  # a receipt edited after signing
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(exported))
    result = run(str(forged))
    assert result.returncode == EXIT_BAD_SIGNATURE and "does not verify" in result.stdout

"""``weather-dagster replay`` end to end: a real frozen round, scored, replayed by the command.

The round of the scoring benchmark on a coarse grid: a loopback demo miner (its own process) frozen
through the real lifecycle, truth as GRIB2 / Zarr from the synthetic loopback server, Day1 and one
ERA5 lead scored with ``LiveScoringInputs``. The command re-opens the miner's store through the
verified reader (fresh token, manifest hash checked) and the reference cache, and says "equal".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from weather_dagster.db.engine import Database
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.sources import ReferenceData
from weather_dagster.reference.synthetic.server import serve
from weather_dagster.scoring.live_inputs import LiveScoringInputs
from weather_dagster.scoring.receipts import ERA5, get_receipt
from weather_dagster.scoring.replay import EXIT_EQUAL, EXIT_INPUT_CHANGED, pretty
from weather_dagster.scoring.service import run_day1, run_era5
from weather_dagster.settings import load_settings
from weather_dagster_tests.benchmarks import scoring_e2e as e2e

GRID = Grid(5.0)


def environment(overrides: dict) -> dict[str, str]:
    """The same settings as ``WEATHER_*`` variables (what an operator's shell would hold)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEATHER_")}
    for name, value in overrides.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in items:
            key = "WEATHER_" + name.upper() + (f"__{sub.upper()}" if sub else "")
            env[key] = item if isinstance(item, str) else json.dumps(item)
    return env


@pytest.fixture
def frozen_round(tmp_path: Path):
    tree = e2e.build_truth(tmp_path / "truth", GRID)
    server = serve(tree)
    fleet = e2e.start_fleet(tmp_path / "miner-files", tmp_path / "metagraph.json", GRID)
    try:
        reference = e2e.reference_overrides(server.base_url, GRID)
        overrides = e2e.settings_overrides(
            tmp_path, tmp_path / "metagraph.json", reference, tmp_path / "round.db", tmp_path / "data"
        )
        yield overrides, e2e.freeze_round(overrides)
    finally:
        e2e.stop_fleet(fleet)
        server.stop()


def test_the_command_replays_the_receipts_of_a_frozen_round(frozen_round, tmp_path: Path):
    overrides, run_id = frozen_round
    settings = load_settings(**overrides)
    database = Database(settings.resolved_database_url)
    reference = ReferenceData(settings)
    inputs = LiveScoringInputs(settings, database, reference)
    now = e2e.INIT + e2e.timedelta(days=30)
    try:
        assert run_day1(database.engine, _steps(settings, database), settings, inputs, run_id, 0, now=now)
        outcome = run_era5(database.engine, _steps(settings, database), settings, inputs, run_id, 0, now=now)
        assert outcome.leads == {e2e.LEAD: "done"}
        with database.engine.connect() as conn:
            receipt = get_receipt(conn, run_id, 0, ERA5, e2e.LEAD)
    finally:
        inputs.release()
        reference.close()
        database.dispose()
    assert receipt.verify() and len(receipt.body["manifest_sha256"]) == 64
    command = [sys.executable, "-m", "weather_dagster.cli", "replay"]
    env = environment(overrides)
    result = subprocess.run(
        [*command, "--round", str(run_id), "--uid", "0"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == EXIT_EQUAL, result.stdout + result.stderr[-3000:]
    assert result.stdout.count(": EQUAL") == 2 and "DIFFERENT" not in result.stdout
    # The same receipt as a file replays equal too.
    path = tmp_path / "receipt.json"
    path.write_text(pretty(receipt))
    again = subprocess.run([*command, str(path)], env=env, capture_output=True, text=True, check=False)
    assert again.returncode == EXIT_EQUAL, again.stdout + again.stderr[-3000:]
    print(pretty(receipt))  # the pretty receipt, shown with -s
    print(again.stdout)
    # The miner now serves other bytes for one chunk of the lead: the verified reader refuses the store.
    (chunk,) = (tmp_path / "miner-files").glob(f"*/2t/{e2e.STEPS - 1}.0.0")
    data = bytearray(chunk.read_bytes())
    data[:8] = bytes(8)
    chunk.write_bytes(bytes(data))
    lead = [*command, "--round", str(run_id), "--uid", "0", "--lead", str(e2e.LEAD)]
    changed = subprocess.run(lead, env=env, capture_output=True, text=True, check=False)
    assert changed.returncode == EXIT_INPUT_CHANGED, changed.stdout + changed.stderr[-3000:]
    assert "first input whose hash differs: miner store" in changed.stdout


def _steps(settings, database):
    from weather_dagster.core.retry import RetryPolicy
    from weather_dagster.db.steps import StepLog

    return StepLog(database.engine, RetryPolicy.from_settings(settings))

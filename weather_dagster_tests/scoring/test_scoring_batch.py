"""Field-major ERA5 batches (``scoring.batch``): the same rows as one miner at a time, truth read once
per field for the whole batch, one miner's broken store failing only that miner; the split rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import (
    component_scores,
    forecast_stats,
    forecast_steps,
    miner_responses,
    miner_scores,
    score_receipts,
)
from weather_dagster.db.steps import StepLog
from weather_dagster.miners.keys import derived_seed
from weather_dagster.orchestration.batching import split_evenly
from weather_dagster.scoring.batch import run_era5_batch
from weather_dagster.scoring.era5 import era5_fields
from weather_dagster.scoring.service import run_day1, run_era5
from weather_dagster.settings import load_settings
from weather_dagster_tests.scoring.test_scoring_dagster import GRID, PROFILES, scoring_settings, seed
from weather_dagster_tests.support.helpers import table_rows
from weather_dagster_tests.support.synthetic_scoring import SyntheticScoringInputs

__all__ = ["scoring_settings"]  # the fixture, re-used
INIT = datetime(2026, 1, 10, tzinfo=UTC)
# Wall-clock measurements and stamps, and surrogate ids, are the only columns allowed to differ.
# sr25519 signatures are randomised: the signed bytes (receipt_json, receipt_sha256) must still be equal.
VOLATILE = {"id", "latency_ms", "duration_ms", "calculation_duration_ms", "response_id", "signature"}


def _rows(engine) -> dict[str, list[dict]]:
    tables = (miner_scores, component_scores, forecast_stats, forecast_steps, miner_responses, score_receipts)
    out = {}
    for table in tables:
        rows = [
            {k: v for k, v in row.items() if k not in VOLATILE and not k.endswith("_at")}
            for row in table_rows(engine, table)
        ]
        out[table.name] = sorted(rows, key=repr)
    return out


class CountingInputs(SyntheticScoringInputs):
    """Counts truth and climatology field reads; can break one miner's store after some reads."""

    def __init__(self, *args, broken_uid: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.truth_reads = 0
        self.broken_uid = broken_uid

    def truth(self, kind, init_time):
        source, inputs = super().truth(kind, init_time), self

        class Counted:
            grid = source.grid

            def field(self, *args):
                inputs.truth_reads += 1
                return source.field(*args)

        return Counted()

    def forecast(self, run_id, uid, hotkey):
        source = super().forecast(run_id, uid, hotkey)
        if uid != self.broken_uid:
            return source

        class Broken:
            grid = source.grid
            reads = 0

            def field(self, *args):
                self.reads += 1
                if self.reads > 3:
                    raise ConnectionResetError("the miner went away mid-lead")
                return source.field(*args)

        return Broken()


def _score_day1(engine, steps, settings, inputs, run_id):
    for uid in PROFILES:
        run_day1(engine, steps, settings, inputs, run_id, uid, now=INIT + timedelta(hours=13))


def test_a_batch_writes_exactly_the_rows_of_one_miner_at_a_time_and_reads_truth_once(tmp_path):
    """Scores, steps, stats and the signed receipts (their inputs' digests included) are the same rows."""
    scoring_settings = load_settings(
        data_dir=tmp_path / "data", test_mode=True, miners={"hotkey_seed": derived_seed("tests", "batch-receipts")}
    )
    now = INIT + timedelta(days=3, hours=1)  # leads 24..72 h due, the rest pending
    results = {}
    for mode in ("one_at_a_time", "batch"):
        database = Database(f"sqlite:///{tmp_path / f'{mode}.db'}")
        engine, steps = database.engine, StepLog(database.engine, RetryPolicy.from_settings(scoring_settings))
        inputs = CountingInputs(GRID, profiles=PROFILES)
        run_id = seed(engine, INIT, inputs)
        _score_day1(engine, steps, scoring_settings, inputs, run_id)
        inputs.truth_reads = 0
        if mode == "batch":
            outcomes = run_era5_batch(engine, steps, scoring_settings, inputs, run_id, sorted(PROFILES), now=now)
        else:
            outcomes = {
                uid: run_era5(engine, steps, scoring_settings, inputs, run_id, uid, now=now) for uid in PROFILES
            }
        results[mode] = (_rows(engine), {uid: (o.status, o.leads) for uid, o in outcomes.items()}, inputs.truth_reads)
        database.dispose()
    (rows_one, outcomes_one, reads_one), (rows_batch, outcomes_batch, reads_batch) = results.values()
    assert outcomes_batch == outcomes_one
    assert {s for _, leads in outcomes_batch.values() for s in leads.values()} >= {"done", "not_due"}
    for table in rows_one:
        for a, b in zip(rows_batch[table], rows_one[table], strict=True):
            assert a == b, (table, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)})
    fields = len(era5_fields(scoring_settings.scoring))  # 4 surface + 5 x 13 levels
    assert reads_batch == 3 * fields  # leads 24, 48, 72: once per field for the whole batch
    receipts = rows_batch["weather_score_receipts"]
    assert len(receipts) == len(PROFILES) * 4  # Day1 and the three leads due, per miner
    assert reads_one > reads_batch


def test_a_broken_store_fails_only_its_own_miner(scoring_settings, database, steps):
    inputs = CountingInputs(GRID, profiles=PROFILES)
    engine = database.engine
    run_id = seed(engine, INIT, inputs)
    _score_day1(engine, steps, scoring_settings, inputs, run_id)
    inputs.broken_uid = 1  # from ERA5 on: uid 1's store fails after a few fields
    now = INIT + timedelta(days=1, hours=1)
    outcomes = run_era5_batch(engine, steps, scoring_settings, inputs, run_id, sorted(PROFILES), now=now)
    assert isinstance(outcomes[1], ConnectionResetError)
    assert outcomes[2].leads[24] == "done"  # the GFS clone is scored like any forecast
    rows = {
        (r["miner_uid"], r["lead_hours"]): r for r in table_rows(engine, forecast_steps) if r["step_name"] == "era5"
    }
    assert rows[(1, 24)]["status"] == "retry_scheduled" and "went away" in str(rows[(1, 24)]["error_json"])
    assert rows[(2, 24)]["status"] == "succeeded"


@pytest.mark.parametrize(
    ("n", "slots", "max_batch", "sizes"),
    [
        (0, 2, 128, []),
        (5, 1, 128, [5]),
        (255, 2, 128, [128, 127]),
        (255, 4, 128, [64, 64, 64, 63]),
        (255, 2, 50, [43, 43, 43, 42, 42, 42]),  # 6 batches: three waves of two slots
        (3, 8, 128, [1, 1, 1]),  # never an empty batch
    ],
)
def test_due_miners_split_evenly_over_the_pool_slots(n, slots, max_batch, sizes):
    uids = list(range(n, 0, -1))
    batches = split_evenly(uids, slots, max_batch)
    assert [len(b) for b in batches] == sizes
    assert [uid for batch in batches for uid in batch] == sorted(uids)

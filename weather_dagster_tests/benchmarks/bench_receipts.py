"""What score receipts cost a miner-lead: the scoring bench's in-memory lead with receipts on and off.

One full-resolution ERA5 lead (69 fields, truth and climatology in memory, so only scoring is timed),
in one run, alternating off / on, median of ``repeat``:
- off: ``score_era5_lead_many`` on the plain sources;
- on: the same with every truth and climatology field hashed as read (``FieldDigests``), then the
  receipt built, canonicalised, sr25519-signed and upserted into ``weather_score_receipts`` (SQLite).
Printed per case: ``receipts_<case>_off_s``, ``_on_s`` and ``_ratio`` (on / off), wall and ``_cpu``
(this process's CPU time, hashing thread included: robust to load from other processes). Cases: one miner
under each profile, and ``miners`` miners scored field-major (the truth is read, and hashed, once
for all of them). Part of ``bench_scoring --receipts``; also ``python -m ...bench_receipts``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from weather_dagster.db.schema import forecast_runs, miner_responses, score_receipts
from weather_dagster.reference.grid import FULL_RESOLUTION
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.scoring.day1 import climatology_slot
from weather_dagster.scoring.era5 import era5_fields, score_era5_lead_many
from weather_dagster.scoring.receipts import FieldDigests, write_score_receipt
from weather_dagster.scoring.store import ResponseKey
from weather_dagster.settings import load_settings
from weather_dagster_tests.benchmarks.bench_scoring import INIT, LEAD


class _Source:
    def __init__(self, data, grid):
        self.data, self.grid = data, grid

    def field(self, name, level, *_):
        return self.data[(name, level)]


def _database(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    for table in (forecast_runs, miner_responses, score_receipts):
        table.create(engine)
    now = INIT
    with engine.begin() as conn:
        conn.execute(
            sa.insert(forecast_runs).values(
                id=1, gfs_init_time_utc=INIT, previous_step_time_utc=INIT, run_initiation_time=now,
                status="created", created_at=now, updated_at=now,
            )
        )  # fmt: skip
    return engine


def bench_receipts(repeat: int = 5, miners: int = 8) -> dict[str, float]:
    grid = FULL_RESOLUTION
    atmosphere = SyntheticAtmosphere(grid)
    valid = INIT + timedelta(hours=LEAD)
    doy, hour = climatology_slot(valid)
    settings = load_settings(miners={"hotkey_seed": "11" * 32})
    fields = era5_fields(settings.scoring)
    truth = _Source({key: atmosphere.field(*key, valid) for key in fields}, grid)
    clim = _Source({key: atmosphere.climatology(*key, doy, hour) for key in fields}, grid)
    forecast = _Source({k: (v * 1.001 + 0.01).astype(np.float32) for k, v in truth.data.items()}, grid)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-receipts-") as tmp:
        engine = _database(Path(tmp) / "receipts.db")
        for case, profile, count in (
            ("reference", "reference", 1),
            ("corrected", "corrected", 1),
            (f"corrected_{miners}_miners", "corrected", miners),
        ):
            scoring = settings.scoring.model_copy(update={"profile": profile})
            run_settings = settings.model_copy(update={"scoring": scoring})
            sources = {uid: forecast for uid in range(count)}

            def off(scoring=scoring, sources=sources) -> None:
                score_era5_lead_many(sources, truth, clim, INIT, LEAD, scoring)

            def on(scoring=scoring, sources=sources, run_settings=run_settings) -> None:
                digests = FieldDigests()
                results = score_era5_lead_many(
                    sources, digests.wrap(truth, "era5"), digests.wrap(clim, "climatology"), INIT, LEAD, scoring
                )
                with engine.begin() as conn:
                    for uid, result in results.items():
                        key = ResponseKey(uid + 1, 1, uid, f"hk{uid}")
                        write_score_receipt(conn, run_settings, key, INIT, result, digests, INIT)

            off()
            on()  # warm: numba compiled, SQLite file created
            wall: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(repeat):
                for label, fn in (("off", off), ("on", on)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn()
                    wall[label].append(time.perf_counter() - t0)
                    cpu[label].append(time.process_time() - c0)
            for name, series in (("", wall), ("_cpu", cpu)):
                off_s, on_s = statistics.median(series["off"]), statistics.median(series["on"])
                out[f"receipts_{case}{name}_off_s"] = off_s
                out[f"receipts_{case}{name}_on_s"] = on_s
                out[f"receipts_{case}{name}_ratio"] = on_s / off_s
        engine.dispose()
    return out


def main() -> int:
    for name, value in bench_receipts().items():
        print(f"{name}: {value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

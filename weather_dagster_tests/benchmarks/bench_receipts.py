"""What score receipts cost a miner-lead: one full-resolution ERA5 lead with receipts on and off.

One full-resolution ERA5 lead (69 fields), in one run, alternating off / on (off first on even
turns, on first on odd), median of ``repeat``.
Truth and climatology are read the way production reads them: from partition-cache entries on disk
(``PartitionCache`` + ``field_of``, the page cache warm), so a field comes with the digest its entry
recorded when it was written. The miner's forecast is in memory, so only scoring is timed.
- off: ``score_era5_lead_many`` on the cached sources, then a one-row transaction committed (in
  production the lead's score rows and step commit either way, and the receipt joins them);
- on: the same through ``FieldDigests``, then the receipt built, canonicalised, sr25519-signed and
  upserted into ``weather_score_receipts`` in that same transaction (SQLite).
Printed per case: ``receipts_<case>_off_s``, ``_on_s`` and ``_ratio`` (on / off), wall and ``_cpu``
(this process's CPU time, hashing thread included: robust to load from other processes), and
``_best_ratio`` (fastest on / fastest off: on a noisy VM the least disturbed pair). Cases: one miner
under each profile, ``miners`` miners scored field-major, and ``uncached``: truth and climatology
in memory with no recorded digests, so every field is hashed as read (the fallback for a cache
entry written before digests were recorded). Part of ``bench_scoring --receipts``; also
``python -m weather_dagster_tests.benchmarks.bench_receipts``.
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
from weather_dagster.reference.cache import PartitionCache
from weather_dagster.reference.canonical import cached_digest_of, canonical_dataset, field_of
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


class _CachedSource:
    """One cache entry read lazily, as ``reference.sources`` reads it (raw chunk reads)."""

    def __init__(self, cache: PartitionCache, kind: str, fields: dict, settings, grid) -> None:
        scoring = settings.scoring
        variables = (*scoring.surface_variables, *scoring.atmospheric_variables)
        dataset = canonical_dataset(fields, variables, tuple(scoring.pressure_levels_hpa), grid)
        cache.get_or_create(kind, "bench", lambda: (dataset, {}))
        self.dataset, self.grid = cache.read(kind, "bench", load=False).dataset, grid

    def field(self, name, level, *_):
        return field_of(self.dataset, name, level)

    def cached_digest(self, name, level, *_):
        return cached_digest_of(self.dataset, name, level)


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


def _touch(conn: sa.Connection) -> None:
    conn.execute(sa.update(forecast_runs).where(forecast_runs.c.id == 1).values(updated_at=INIT))


def bench_receipts(repeat: int = 16, miners: int = 8) -> dict[str, float]:
    grid = FULL_RESOLUTION
    atmosphere = SyntheticAtmosphere(grid)
    valid = INIT + timedelta(hours=LEAD)
    doy, hour = climatology_slot(valid)
    settings = load_settings(miners={"hotkey_seed": "11" * 32})
    fields = era5_fields(settings.scoring)
    memory_truth = _Source({key: atmosphere.field(*key, valid) for key in fields}, grid)
    memory_clim = _Source({key: atmosphere.climatology(*key, doy, hour) for key in fields}, grid)
    forecast = _Source({k: (v * 1.001 + 0.01).astype(np.float32) for k, v in memory_truth.data.items()}, grid)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-receipts-") as tmp:
        engine = _database(Path(tmp) / "receipts.db")
        cache = PartitionCache(Path(tmp) / "reference")
        cached_truth = _CachedSource(cache, "era5", memory_truth.data, settings, grid)
        cached_clim = _CachedSource(cache, "climatology", memory_clim.data, settings, grid)
        for case, profile, count, (truth, clim) in (
            ("reference", "reference", 1, (cached_truth, cached_clim)),
            ("corrected", "corrected", 1, (cached_truth, cached_clim)),
            (f"corrected_{miners}_miners", "corrected", miners, (cached_truth, cached_clim)),
            ("uncached_corrected", "corrected", 1, (memory_truth, memory_clim)),
        ):
            scoring = settings.scoring.model_copy(update={"profile": profile})
            run_settings = settings.model_copy(update={"scoring": scoring})
            sources = {uid: forecast for uid in range(count)}

            def off(scoring=scoring, sources=sources, truth=truth, clim=clim) -> None:
                score_era5_lead_many(sources, truth, clim, INIT, LEAD, scoring)
                with engine.begin() as conn:  # the lead's own transaction (score rows, step) commits either way
                    _touch(conn)

            def on(scoring=scoring, sources=sources, run_settings=run_settings, truth=truth, clim=clim) -> None:
                digests = FieldDigests()
                results = score_era5_lead_many(
                    sources, digests.wrap(truth, "era5"), digests.wrap(clim, "climatology"), INIT, LEAD, scoring
                )
                with engine.begin() as conn:
                    _touch(conn)
                    for uid, result in results.items():
                        key = ResponseKey(uid + 1, 1, uid, f"hk{uid}")
                        write_score_receipt(conn, run_settings, key, INIT, result, digests, INIT)

            off()
            on()  # warm: numba compiled, SQLite file created
            wall: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for turn in range(repeat):  # off, on, then on, off: neither always runs second
                for label, fn in (("off", off), ("on", on))[:: 1 if turn % 2 == 0 else -1]:
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn()
                    wall[label].append(time.perf_counter() - t0)
                    cpu[label].append(time.process_time() - c0)
            for name, series in (("", wall), ("_cpu", cpu)):
                off_s, on_s = statistics.median(series["off"]), statistics.median(series["on"])
                out[f"receipts_{case}{name}_off_s"] = off_s
                out[f"receipts_{case}{name}_on_s"] = on_s
                out[f"receipts_{case}{name}_ratio"] = on_s / off_s
            # Best of each: the least disturbed run of either (a VM's noise only ever adds time).
            out[f"receipts_{case}_best_ratio"] = min(wall["on"]) / min(wall["off"])
        engine.dispose()
    return out


def main() -> int:
    for name, value in bench_receipts().items():
        print(f"{name}: {value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

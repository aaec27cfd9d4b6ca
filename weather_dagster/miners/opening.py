"""Open a frozen forecast for reading: the one entry point scoring uses (``open_verified_forecast``).

Opening asks the miner for a fresh access token (kerchunk-request; tokens last ~2 h, scoring runs
days later), refuses it if the miner now reports a different manifest hash than the frozen one,
checks the store URL against the perimeter again, then returns a :class:`VerifiedForecast` whose
every read is checked against the frozen manifest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from weather_dagster.core.errors import InvalidDataError, ManifestError
from weather_dagster.core.retry import with_reconnects
from weather_dagster.db.schema import forecast_runs, miner_responses, miners
from weather_dagster.miners.answers import check_kerchunk_ready
from weather_dagster.miners.fiber_client import FiberClient, MinerAddress
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.manifest import check_same_hash
from weather_dagster.miners.perimeter import check_store_url
from weather_dagster.miners.reader import ForecastLayout, VerifiedForecast, VerifiedStore
from weather_dagster.miners.store_http import StoreHttp
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.variables import VARIABLES
from weather_dagster.settings import Settings


@dataclass(frozen=True)
class FrozenForecast:
    run_id: int
    miner: MinerAddress
    job_id: str
    init_time: datetime
    verification_hash: str
    files: dict[str, str]


def load_frozen(engine: sa.Engine, run_id: int, miner_uid: int, miner_hotkey: str) -> FrozenForecast:
    r, m = miner_responses.c, miners.c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                r.job_id,
                r.frozen_manifest,
                r.verification_hash_claimed,
                forecast_runs.c.gfs_init_time_utc,
                m.ip,
                m.port,
            )
            .join(forecast_runs, forecast_runs.c.id == r.run_id)
            .join(miners, m.uid == r.miner_uid, isouter=True)
            .where(r.run_id == run_id, r.miner_uid == miner_uid, r.miner_hotkey == miner_hotkey)
        ).one_or_none()
    if row is None or row.frozen_manifest is None:
        raise ManifestError(f"no frozen manifest for run {run_id} uid {miner_uid}")
    address = MinerAddress(miner_uid, miner_hotkey, row.ip or "", row.port or 0)
    return FrozenForecast(
        run_id,
        address,
        row.job_id or "",
        row.gfs_init_time_utc,
        row.verification_hash_claimed or "",
        dict(row.frozen_manifest["files"]),
    )


async def open_frozen_async(
    settings: Settings, client: FiberClient, frozen: FrozenForecast, *, expected_grid: Grid | None = None
) -> VerifiedForecast:
    answer = await client.kerchunk(frozen.miner, frozen.job_id, settings.retry.kerchunk_timeout_s)
    check_kerchunk_ready(answer)  # after the freeze too: not_found is a clear failure, processing a wait
    check_same_hash(frozen.verification_hash, answer.verification_hash)
    root = check_store_url(answer.zarr_store_url, frozen.miner.ip, frozen.miner.port, settings)
    return await asyncio.to_thread(_open_blocking, settings, frozen, root, answer.access_token, expected_grid)


def _open_blocking(
    settings: Settings, frozen: FrozenForecast, root: str, token: str, expected_grid: Grid | None
) -> VerifiedForecast:
    http = StoreHttp(root)
    limits = settings.miners

    def fetch(key: str, max_bytes: int) -> bytes:
        return with_reconnects(
            lambda: http.get(
                root + key,
                max_bytes=max_bytes,
                deadline_s=limits.read_deadline_s,
                timeout_s=settings.retry.kerchunk_timeout_s,
                headers={"authorization": f"Bearer {token}"},
            ),
            settings.retry.store_read_reconnect_s,
        )

    store = VerifiedStore(
        frozen.files,
        fetch,
        max_metadata_bytes=limits.max_metadata_bytes,
        max_chunk_bytes=limits.max_chunk_bytes,
        on_close=http.close,
        read_ahead=limits.store_read_ahead_chunks,
    )
    try:
        return VerifiedForecast.open(
            store,
            ForecastLayout.from_settings(settings),
            frozen.init_time,
            expected_grid=expected_grid,
            max_chunk_bytes=limits.max_chunk_bytes,
        )
    except BaseException:
        http.close()
        raise


def open_verified_forecast(
    settings: Settings, engine: sa.Engine, run_id: int, miner_uid: int, miner_hotkey: str, **kwargs
) -> VerifiedForecast:
    """The scoring entry point: a ``ForecastSource`` over the frozen forecast (blocking; call ``close()``)."""
    frozen = load_frozen(engine, run_id, miner_uid, miner_hotkey)

    async def run() -> VerifiedForecast:
        async with FiberClient(settings, validator_keypair(settings)) as client:
            return await open_frozen_async(settings, client, frozen, **kwargs)

    return asyncio.run(run())


def probe(forecast: VerifiedForecast, settings: Settings) -> None:
    """Read the first lead's surface fields and refuse forecasts that are plainly unusable.

    The rules are the reference's whole-forecast rejections (SPEC section 8): any |value| above the
    extreme limit, or finite coverage below the reject threshold; plus a units sanity check (the
    median inside the variable's physical range). Finer checks belong to scoring.
    """
    lead = forecast.layout.lead_hours[0]
    for name in forecast.layout.surface:
        values = forecast.field(name, None, lead)
        finite = np.isfinite(values)
        coverage = float(finite.mean())
        if coverage < settings.scoring.min_finite_coverage_reject:
            raise InvalidDataError(f"{name} at {lead} h: finite coverage {coverage:.3f} (NaN injection)")
        if np.any(np.abs(values[finite]) > settings.scoring.extreme_value_limit):
            raise InvalidDataError(f"{name} at {lead} h: values beyond {settings.scoring.extreme_value_limit:g}")
        low, high = VARIABLES[name].plausible_range
        median = float(np.median(values[finite]))
        if not low <= median <= high:
            raise InvalidDataError(f"{name} at {lead} h: median {median:g} outside {low:g}..{high:g} (units?)")

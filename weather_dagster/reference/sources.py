"""The one facade scoring and the Dagster assets use for reference data.

``ReferenceData(settings)`` hands out field sources implementing the protocols of
:mod:`weather_dagster.reference.interfaces`. Every read goes through the partition cache: the first
caller of a partition downloads it (once, whatever the concurrency), everyone else reads the cache.

- ``gfs_analysis().field(var, level, valid_time)``        GFS f000 of the cycle at ``valid_time``
- ``gfs_forecast(init).field(var, level, lead_hours)``    GFS forecast of cycle ``init`` (Day1 leads)
- ``era5().field(var, level, valid_time)``                ERA5 (raises TruthNotAvailable until published)
- ``era5_available(valid_time)``                          the probe: published and finite?
- ``era5_truth_source(valid_time)``                       which source the cached ERA5 came from
- ``era5_lags()``                                          hours each ERA5 source runs behind the clock

ERA5 has an ordered list of sources (``reference.era5_sources``, e.g. ARCO then CDS): the first one is
always asked; a later one only once the earlier have not published the valid time
``era5_fallback_after_hours`` after it was due. Whichever has it fills the one cache entry.
- ``climatology().field(var, level, day_of_year, hour)``  WeatherBench 2 climatology slice
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import xarray as xr

from weather_dagster.core.errors import SourceError, TruthNotAvailable
from weather_dagster.orchestration.readiness import truth_due_time
from weather_dagster.reference.cache import CacheResult, PartitionCache
from weather_dagster.reference.canonical import REJECTED, cached_digest_of, field_of
from weather_dagster.reference.cds import CdsEra5
from weather_dagster.reference.climatology import ClimatologyStore, climatology_key, hours_in_use, load_slot
from weather_dagster.reference.era5 import Era5Store
from weather_dagster.reference.gfs import load_gfs
from weather_dagster.reference.grid import Grid
from weather_dagster.reference.http import HttpReader, Timeouts, make_client
from weather_dagster.settings import Settings

GFS_ANALYSIS, GFS_FORECAST, ERA5, CLIMATOLOGY = "gfs_analysis", "gfs_forecast", "era5", "climatology"
log = logging.getLogger(__name__)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def time_key(when: datetime) -> str:
    return _utc(when).strftime("%Y-%m-%dT%H")


class ReferenceData:
    def __init__(
        self,
        settings: Settings,
        client: httpx.Client | None = None,
        memo_size: int = 16,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        ref = settings.reference
        self.grid = Grid(ref.grid_resolution_deg)
        self.variables = settings.scoring.era5_variables
        self.levels = settings.scoring.pressure_levels_hpa
        self.cache = PartitionCache(settings.data_dir / "reference", ref.cache_lock_timeout_s)
        self._client = client
        self._client_lock = threading.Lock()
        self.timeouts = Timeouts.from_settings(ref)
        self.era5_store = Era5Store(ref.era5_zarr_url, self.grid, self.timeouts)
        self.cds = CdsEra5.from_settings(ref, self.grid) if "cds" in ref.era5_sources else None
        self.clock = clock or (lambda: datetime.now(UTC))
        self.climatology_store = ClimatologyStore(ref.climatology_zarr_url, self.grid, self.timeouts)
        self._memo: OrderedDict[tuple[str, str], xr.Dataset] = OrderedDict()
        self._memo_lock = threading.Lock()
        self._memo_size = memo_size

    # -- plumbing ------------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.timeouts)
            return self._client

    def _reader(self) -> HttpReader:
        ref = self.settings.reference
        return HttpReader(self.client, self.timeouts, retries=ref.http_blip_retries, backoff_s=ref.http_blip_backoff_s)

    def _dataset(self, kind: str, key: str, load) -> xr.Dataset:
        """A lazily opened cached partition (downloaded first if needed); fields are read on demand."""
        with self._memo_lock:
            if (kind, key) in self._memo:
                self._memo.move_to_end((kind, key))
                return self._memo[(kind, key)]
        result = load(False)
        if result.downloaded:  # the fresh copy is in memory: swap it for the lazy on-disk one
            result = self.cache.read(kind, key, load=False)
        with self._memo_lock:
            self._memo[(kind, key)] = result.dataset
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return result.dataset

    # -- partition loads (what the assets materialize) -----------------------------------------------

    def _gfs(self, init_time: datetime, leads: tuple[int, ...]) -> tuple[list[xr.Dataset], dict[str, Any]]:
        reader = self._reader()
        loads = [
            load_gfs(
                reader,
                self.settings.reference.gfs_base_url,
                init_time,
                lead,
                self.variables,
                self.levels,
                self.grid,
                self.settings.reference.max_grib_message_bytes,
            )
            for lead in leads
        ]
        info = {"source_urls": [x.url for x in loads], "bytes_read": reader.bytes_read, "requests": reader.requests}
        return [x.dataset for x in loads], info

    def load_gfs_analysis(self, valid_time: datetime, load: bool = True) -> CacheResult:
        valid_time = _utc(valid_time)
        if valid_time.hour % 6 or valid_time.minute:
            raise ValueError(f"GFS analyses exist at 00, 06, 12 and 18 UTC, not {valid_time.isoformat()}")

        def build() -> tuple[xr.Dataset, dict[str, Any]]:
            datasets, info = self._gfs(valid_time, (0,))
            ds = datasets[0]
            ds.attrs.update(valid_time=valid_time.isoformat(), source="gfs_analysis")
            return ds, info

        key = time_key(valid_time)
        return self.cache.get_or_create(GFS_ANALYSIS, key, build, load)

    def load_gfs_forecast(self, init_time: datetime, load: bool = True) -> CacheResult:
        init_time = _utc(init_time)
        leads = tuple(self.settings.scoring.day1_lead_hours)

        def build() -> tuple[xr.Dataset, dict[str, Any]]:
            datasets, info = self._gfs(init_time, leads)
            ds = xr.concat(datasets, dim="lead_hours", combine_attrs="override")
            ds = ds.assign_coords(lead_hours=("lead_hours", np.array(leads, dtype=np.int32)))
            rejected = {k: v for part in datasets for k, v in part.attrs.get(REJECTED, {}).items()}
            ds.attrs.update(init_time=init_time.isoformat(), source="gfs_forecast", **{REJECTED: rejected})
            return ds, info

        key = time_key(init_time)
        return self.cache.get_or_create(GFS_FORECAST, key, build, load)

    def era5_sources(self) -> dict[str, Any]:
        """Every configured ERA5 source adapter by name, in order of preference."""
        adapters = {"arco": self.era5_store, "cds": self.cds}
        return {name: adapters[name] for name in self.settings.reference.era5_sources}

    def era5_candidates(self, valid_time: datetime) -> dict[str, Any]:
        """The sources that may be asked for ``valid_time`` now: the first always, a later one only
        ``era5_fallback_after_hours`` after the truth was due."""
        fallback_at = truth_due_time(_utc(valid_time), self.settings) + timedelta(
            hours=self.settings.reference.era5_fallback_after_hours
        )
        sources = self.era5_sources()
        if self.clock() < fallback_at:
            first = next(iter(sources))
            return {first: sources[first]}
        return sources

    def _era5_source_with(self, valid_time: datetime) -> tuple[str, Any]:
        """The first candidate that has published ``valid_time`` (TruthNotAvailable if none has)."""
        errors: list[SourceError] = []
        for name, adapter in self.era5_candidates(valid_time).items():
            try:
                if adapter.available(valid_time):
                    return name, adapter
            except SourceError as exc:  # one source down: ask the next, say why if none has it
                log.warning("ERA5 source %s probe failed: %s", name, exc)
                errors.append(exc)
        if errors and len(errors) == len(self.era5_candidates(valid_time)):
            raise errors[0]
        raise TruthNotAvailable(f"no ERA5 source has published {valid_time.isoformat()} yet")

    def _load_from_first(self, valid_time: datetime) -> tuple[str, Any, xr.Dataset]:
        """Load from the first candidate that has ``valid_time`` (each load checks its own source's
        publication, so no extra probe read is made)."""
        candidates = self.era5_candidates(valid_time)
        errors: list[SourceError] = []
        for name, adapter in candidates.items():
            try:
                return name, adapter, adapter.load(valid_time, self.variables, self.levels)
            except TruthNotAvailable:
                continue
            except SourceError as exc:
                if len(candidates) == 1:
                    raise
                log.warning("ERA5 source %s failed, trying the next: %s", name, exc)
                errors.append(exc)
        if errors and len(errors) == len(candidates):
            raise errors[0]
        raise TruthNotAvailable(f"no ERA5 source has published {valid_time.isoformat()} yet")

    def load_era5(self, valid_time: datetime, load: bool = True) -> CacheResult:
        valid_time = _utc(valid_time)

        def build() -> tuple[xr.Dataset, dict[str, Any]]:
            name, adapter, ds = self._load_from_first(valid_time)
            ds.attrs.update(valid_time=valid_time.isoformat(), truth_source=name)
            return ds, {"source_urls": [adapter.url], "truth_source": name}

        key = time_key(valid_time)
        return self.cache.get_or_create(ERA5, key, build, load)

    def load_climatology(self, day_of_year: int, hour: int, load: bool = True) -> CacheResult:
        key = climatology_key(day_of_year, hour)

        def build() -> tuple[xr.Dataset, dict[str, Any]]:  # chunk-aligned: neighbours are cached on the way
            scoring = self.settings.scoring
            hours = hours_in_use(
                self.settings.round.gfs_cycle_hour_utc, scoring.era5_lead_hours + scoring.day1_lead_hours
            )
            slot = (day_of_year, hour)
            return load_slot(self.climatology_store, self.cache, slot, self.variables, self.levels, hours)

        return self.cache.get_or_create(CLIMATOLOGY, key, build, load)

    # -- field sources (what scoring calls) ----------------------------------------------------------

    def gfs_analysis(self) -> GfsAnalysisSource:
        return GfsAnalysisSource(self)

    def gfs_forecast(self, init_time: datetime) -> GfsForecastSource:
        return GfsForecastSource(self, _utc(init_time))

    def era5(self) -> Era5Source:
        return Era5Source(self)

    def era5_available(self, valid_time: datetime) -> bool:
        """The probe: has a source that may be asked now published ``valid_time``?"""
        if self.cache.is_valid(ERA5, time_key(valid_time)):
            return True
        try:
            self._era5_source_with(_utc(valid_time))
        except TruthNotAvailable:
            return False
        return True

    def era5_truth_source(self, valid_time: datetime) -> str | None:
        """The source the cached ERA5 at ``valid_time`` came from (None if not cached)."""
        key = time_key(valid_time)
        if not self.cache.is_valid(ERA5, key):
            return None
        return self.cache.info(ERA5, key).get("truth_source", "arco")

    def era5_published_until(self) -> dict[str, datetime | None]:
        """The newest valid time each source has published (None where its probe failed)."""
        stops: dict[str, datetime | None] = {}
        for name, adapter in self.era5_sources().items():
            try:
                stops[name] = adapter.era5t_stop() if name == "arco" else adapter.published_until()
            except SourceError as exc:
                log.warning("ERA5 source %s probe failed: %s", name, exc)
                stops[name] = None
        return stops

    def era5_lags(self) -> dict[str, float | None]:
        """Hours each source's newest published valid time is behind the clock (ARCO: its
        ``valid_time_stop_era5t``; CDS: its catalogue extent); None where the probe failed."""
        now = self.clock()
        return {
            name: None if stop is None else round((now - stop).total_seconds() / 3600, 2)
            for name, stop in self.era5_published_until().items()
        }

    def climatology(self) -> ClimatologyFieldSource:
        return ClimatologyFieldSource(self)

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


@dataclass
class GfsAnalysisSource:
    data: ReferenceData

    @property
    def grid(self) -> Grid:
        return self.data.grid

    def _ds(self, valid_time: datetime) -> xr.Dataset:
        return self.data._dataset(
            GFS_ANALYSIS, time_key(valid_time), lambda load: self.data.load_gfs_analysis(valid_time, load)
        )

    def field(self, variable: str, level_hpa: int | None, valid_time: datetime) -> np.ndarray:
        return field_of(self._ds(valid_time), variable, level_hpa)

    def cached_digest(self, variable: str, level_hpa: int | None, valid_time: datetime) -> str | None:
        return cached_digest_of(self._ds(valid_time), variable, level_hpa)


@dataclass
class GfsForecastSource:
    data: ReferenceData
    init_time: datetime

    @property
    def grid(self) -> Grid:
        return self.data.grid

    def _ds(self) -> xr.Dataset:
        return self.data._dataset(
            GFS_FORECAST, time_key(self.init_time), lambda load: self.data.load_gfs_forecast(self.init_time, load)
        )

    def field(self, variable: str, level_hpa: int | None, lead_hours: int) -> np.ndarray:
        ds = self._ds()
        if lead_hours not in ds["lead_hours"].values:
            raise KeyError(f"GFS forecast lead {lead_hours} h is not cached (day1_lead_hours setting)")
        return field_of(ds, variable, level_hpa, lead_hours=lead_hours)

    def cached_digest(self, variable: str, level_hpa: int | None, lead_hours: int) -> str | None:
        return cached_digest_of(self._ds(), variable, level_hpa, lead_hours=lead_hours)

    def valid_time(self, lead_hours: int) -> datetime:
        return self.init_time + timedelta(hours=lead_hours)


@dataclass
class Era5Source:
    data: ReferenceData

    @property
    def grid(self) -> Grid:
        return self.data.grid

    def _ds(self, valid_time: datetime) -> xr.Dataset:
        return self.data._dataset(ERA5, time_key(valid_time), lambda load: self.data.load_era5(valid_time, load))

    def field(self, variable: str, level_hpa: int | None, valid_time: datetime) -> np.ndarray:
        return field_of(self._ds(valid_time), variable, level_hpa)

    def cached_digest(self, variable: str, level_hpa: int | None, valid_time: datetime) -> str | None:
        return cached_digest_of(self._ds(valid_time), variable, level_hpa)

    def source_of(self, valid_time: datetime) -> str | None:
        """The ERA5 source this valid time's truth came from (recorded with each scored lead)."""
        return self.data.era5_truth_source(valid_time)


@dataclass
class ClimatologyFieldSource:
    data: ReferenceData

    @property
    def grid(self) -> Grid:
        return self.data.grid

    def _ds(self, day_of_year: int, hour: int) -> xr.Dataset:
        key = climatology_key(day_of_year, hour)
        return self.data._dataset(CLIMATOLOGY, key, lambda load: self.data.load_climatology(day_of_year, hour, load))

    def field(self, variable: str, level_hpa: int | None, day_of_year: int, hour: int) -> np.ndarray:
        return field_of(self._ds(day_of_year, hour), variable, level_hpa)

    def cached_digest(self, variable: str, level_hpa: int | None, day_of_year: int, hour: int) -> str | None:
        return cached_digest_of(self._ds(day_of_year, hour), variable, level_hpa)

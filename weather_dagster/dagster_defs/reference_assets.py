"""Dagster assets for reference data: GFS analysis, GFS forecast, ERA5 truth, ERA5 climatology.

Each asset materializes one partition into the local cache through :class:`ReferenceData` (so a
materialization *is* "this partition is cached and valid"), reports where it came from and what it
holds, and runs three checks on the cached data: grid, units ranges, no NaN. A sensor requests
``era5_truth`` partitions when the ERA5 probe says a valid date has arrived.
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    sensor,
)

from weather_dagster.core.errors import SourceError, TruthNotAvailable
from weather_dagster.dagster_defs.partitions import climatology_slices, era5_dates, gfs_analysis_times, round_dates
from weather_dagster.dagster_defs.resources import Lazy, ReferenceResource, SettingsResource
from weather_dagster.orchestration.batching import era5_truth_run_key
from weather_dagster.orchestration.calendar import init_time_of
from weather_dagster.settings import Settings

# check name -> the problem key of canonical.check_dataset
CHECKS = {"grid": "grid", "units_range": "units", "no_nan": "nan"}
GROUP = "reference"


def _check_specs(asset_name: str) -> list[AssetCheckSpec]:
    descriptions = {
        "grid": "canonical grid: latitude 90 -> -90, longitude from 0, configured resolution, float32",
        "units_range": "CF units and every value within the variable's plausible physical range",
        "no_nan": "no NaN or infinite value in any field",
    }
    return [AssetCheckSpec(name, asset=asset_name, description=descriptions[name]) for name in CHECKS]


def _result(result: Any, reference: Any, started: float) -> MaterializeResult:
    """Metadata and checks of a ``CacheResult`` (the reference modules load with the run, not the code)."""
    from weather_dagster.reference.canonical import REJECTED, check_dataset, summarize

    ds = result.dataset
    problems = check_dataset(ds, reference.grid)
    fields = sum(int(ds[name].size // (ds.sizes["lat"] * ds.sizes["lon"])) for name in ds.data_vars)
    info = result.info
    metadata: dict[str, Any] = {
        "source_url": MetadataValue.text(", ".join(info.get("source_urls", [])) or str(ds.attrs.get("source_url"))),
        "bytes_decoded": MetadataValue.int(int(ds.nbytes)),
        "fields": MetadataValue.int(fields),
        "variables": MetadataValue.json(summarize(ds)),
        "grid_deg": MetadataValue.float(reference.grid.resolution_deg),
        "downloaded": MetadataValue.bool(result.downloaded),
        "download_duration_s": MetadataValue.float(float(info.get("build_duration_s", 0.0))),
        "duration_s": MetadataValue.float(round(time.monotonic() - started, 3)),
        "cache_path": MetadataValue.path(str(result.path)),
        # Fields quarantined for an implausible value (stored as NaN; reading one raises, naming it).
        "rejected_fields": MetadataValue.json(dict(ds.attrs.get(REJECTED) or {})),
    }
    if "bytes_read" in info:  # measured for the GFS range reads (Zarr reads go through fsspec)
        metadata["bytes_read"] = MetadataValue.int(int(info["bytes_read"]))
        metadata["http_requests"] = MetadataValue.int(int(info.get("requests", 0)))
    for key in ("chunks_read", "chunk_bytes_decoded", "neighbour_slices_cached"):  # climatology block reads
        if key in info:
            metadata[key] = MetadataValue.int(int(info[key]))
    checks = [
        AssetCheckResult(
            check_name=name,
            passed=problem not in problems,
            severity=AssetCheckSeverity.ERROR,
            metadata={"problem": problems.get(problem, "")},
        )
        for name, problem in CHECKS.items()
    ]
    return MaterializeResult(metadata=metadata, check_results=checks)


def _run(load, reference: Any) -> MaterializeResult:
    started = time.monotonic()
    try:
        return _result(load(), reference, started)
    except TruthNotAvailable as exc:  # a wait, not a failure of the data: the sensor asks again later
        raise Failure(description=str(exc), allow_retries=False) from exc
    except SourceError as exc:
        raise Failure(description=str(exc), metadata={"url": exc.url, "problem": exc.problem}) from exc


@asset(partitions_def=gfs_analysis_times, check_specs=_check_specs("gfs_analysis"), group_name=GROUP)
def gfs_analysis(context: AssetExecutionContext, reference: ReferenceResource) -> MaterializeResult:
    """GFS f000 of the 6-hourly cycle at the partition's valid time, scored fields, cached."""
    valid_time = context.partition_time_window.start.astimezone(UTC)
    return _run(lambda: reference.load_gfs_analysis(valid_time), reference)


@asset(partitions_def=round_dates, check_specs=_check_specs("gfs_forecast"), group_name=GROUP)
def gfs_forecast(
    context: AssetExecutionContext, reference: ReferenceResource, settings: SettingsResource
) -> MaterializeResult:
    """The GFS forecast of the day's round cycle at the Day1 leads (the Day1 reference), cached."""
    init_time = init_time_of(context.partition_key, settings)
    return _run(lambda: reference.load_gfs_forecast(init_time), reference)


LAG_CHECK = AssetCheckSpec(
    "source_lag",
    asset="era5_truth",
    description="every configured ERA5 source publishes within reference.era5_lag_warn_hours of the clock",
)


def lag_check(reference: Any) -> tuple[dict[str, Any], AssetCheckResult]:
    """The lag of each ERA5 source as metadata, and a warning check when one exceeds the setting."""
    limit = reference.settings.reference.era5_lag_warn_hours
    lags = reference.era5_lags()
    late = {name: lag for name, lag in lags.items() if lag is None or lag > limit}
    metadata: dict[str, Any] = {
        f"lag_hours_{name}": MetadataValue.float(-1.0 if lag is None else lag) for name, lag in lags.items()
    }
    check = AssetCheckResult(
        check_name=LAG_CHECK.name,
        passed=not late,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "lag_hours": MetadataValue.json(lags),
            "warn_after_hours": MetadataValue.float(limit),
            "late_sources": MetadataValue.text(
                ", ".join(f"{n} ({'unreachable' if v is None else v})" for n, v in late.items())
            ),
        },
    )
    return metadata, check


@asset(
    partitions_def=era5_dates,
    check_specs=[*_check_specs("era5_truth"), LAG_CHECK],
    group_name=GROUP,
)
def era5_truth(context: AssetExecutionContext, reference: ReferenceResource) -> MaterializeResult:
    """ERA5 at 00Z of the partition date, all scored variables and levels, cached, from the first
    source in ``reference.era5_sources`` that has it; the metadata says which, and each source's lag."""
    valid_time = context.partition_time_window.start.astimezone(UTC)
    result = _run(lambda: reference.load_era5(valid_time), reference)
    lag_metadata, check = lag_check(reference)
    metadata = {
        **(result.metadata or {}),
        **lag_metadata,
        "truth_source": MetadataValue.text(reference.era5_truth_source(valid_time) or ""),
    }
    return MaterializeResult(metadata=metadata, check_results=[*(result.check_results or []), check])


@asset(partitions_def=climatology_slices, check_specs=_check_specs("era5_climatology"), group_name=GROUP)
def era5_climatology(context: AssetExecutionContext, reference: ReferenceResource) -> MaterializeResult:
    """The WeatherBench 2 climatology slice for one (day-of-year, hour), cached."""
    from weather_dagster.reference.climatology import parse_climatology_key

    day_of_year, hour = parse_climatology_key(context.partition_key)
    return _run(lambda: reference.load_climatology(day_of_year, hour), reference)


def era5_dates_to_request(
    reference: Any, now: datetime, lookback_days: int, materialized: set[str]
) -> tuple[list[str], str]:
    """Valid dates (``YYYY-MM-DD``) in the look-back window whose ERA5 has arrived and is not cached.

    Returns the dates and the ERA5T stop stamp (part of the run key, so a new publication lets a
    failed date be asked again while a repeated tick stays harmless).
    """
    stops = [x for x in reference.era5_published_until().values() if x is not None]
    if not stops:
        raise SourceError(", ".join(reference.settings.reference.era5_sources), "no ERA5 source answers its probe")
    stop = max(stops)
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    dates = []
    for back in range(lookback_days, -1, -1):
        valid = today - timedelta(days=back)
        key = valid.strftime("%Y-%m-%d")
        if key in materialized or valid > stop:
            continue
        if reference.era5_available(valid):
            dates.append(key)
    return dates, stop.strftime("%Y%m%dT%H")


def reference_resource(settings: Settings) -> Lazy:
    """The reference adapters (GFS, ERA5, climatology), built in the first run or tick that uses them."""

    def build() -> Any:
        from weather_dagster.reference.sources import ReferenceData

        return ReferenceData(settings)

    return Lazy(build, "reference")


def reference_definitions(settings: Settings, reference: Any = None) -> Definitions:
    """The reference domain: assets, the ERA5 sensor and the ``reference`` resource, from ``settings``."""
    ref_settings = settings.reference

    @sensor(
        name="era5_truth_sensor",
        asset_selection=[era5_truth],
        minimum_interval_seconds=ref_settings.era5_sensor_interval_s,
        description="Requests era5_truth partitions when the ERA5 probe says a valid date has arrived",
    )
    def era5_truth_sensor(context: SensorEvaluationContext, reference: ReferenceResource):
        # Hindcast (test mode only) shifts "now" back, as it shifts round init times.
        now = datetime.now(UTC) - timedelta(days=settings.hindcast_days)
        materialized = set(context.instance.get_materialized_partitions(AssetKey("era5_truth")))
        try:
            dates, stamp = era5_dates_to_request(reference, now, ref_settings.era5_sensor_lookback_days, materialized)
        except SourceError as exc:
            return SkipReason(f"ERA5 probe failed: {exc}")
        if not dates:
            return SkipReason("no new ERA5 valid date has arrived")
        return SensorResult(
            run_requests=[RunRequest(partition_key=d, run_key=era5_truth_run_key(d, stamp)) for d in dates]
        )

    return Definitions(
        assets=[gfs_analysis, gfs_forecast, era5_truth, era5_climatology],
        sensors=[era5_truth_sensor],
        resources={"reference": reference or reference_resource(settings)},
    )

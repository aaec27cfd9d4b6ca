"""ERA5 scoring of one lead (truth ERA5 at init + lead), field-major over one or more miners.

Streaming: for each of the 69 (variable, level) fields, the truth and climatology are read once,
then each miner's field is read, verified (``checks``), scored with the kernel and dropped. Memory is
a few fields whatever the number of miners; a miner's bad data only fails that miner.

Per level: RMSE, ACC and skill vs climatology (bias-corrected forecast, as everywhere in SPEC
section 8). Per variable: levels combined with layer-thickness weights. Lead score =
0.6 x mean(clamp(SS, 0, 1)) + 0.3 x mean((ACC + 1) / 2) + 0.1 x mean(1 / (1 + RMSE / ref)), clamped
to [0, 1]; ``ref`` is the middle of this miner's sorted per-variable RMSEs for the lead (index n // 2,
mixing units like the reference) or, with ``rmse_normalisation="climatology"``, each variable's
climatology RMSE (unit-consistent). A lead missing any variable, or with an undefined combined
metric, is not aggregated (status ``incomplete``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from weather_dagster.core.errors import InvalidDataError
from weather_dagster.reference.interfaces import ClimatologySource, FieldSource, ForecastSource
from weather_dagster.reference.variables import VARIABLES
from weather_dagster.scoring import era5_reference as ref
from weather_dagster.scoring.checks import LeadFailed, check_and_fill, scan
from weather_dagster.scoring.day1 import climatology_slot
from weather_dagster.scoring.fanout import MinerFanout
from weather_dagster.scoring.kernel import FieldMetrics, field_metrics, latitude_weights
from weather_dagster.scoring.levels import combine_levels, thickness_weights
from weather_dagster.scoring.regrid import same_points, to_grid, to_truth_grid
from weather_dagster.settings import ScoringSettings

SCORED = "scored"
FAILED = "failed"  # coverage below the lead threshold
REJECTED = "rejected"  # extreme values / almost no data: the forecast is invalid
INCOMPLETE = "incomplete"  # a variable could not be combined


@dataclass
class LevelComponent:
    variable: str
    level: int | None
    metrics: FieldMetrics
    weight: float
    coverage: float
    filled_points: int
    duration_ms: float


@dataclass
class VariableScore:
    variable: str
    rmse: float
    acc: float
    skill: float
    climatology_rmse: float
    levels: list[LevelComponent] = field(default_factory=list)


@dataclass
class LeadResult:
    lead_hours: int
    valid_time: datetime
    status: str = SCORED
    reason: str = ""
    score: float = math.nan
    rmse_reference: float = math.nan
    variables: dict[str, VariableScore] = field(default_factory=dict)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == SCORED and math.isfinite(self.score)

    def summary(self) -> dict:
        return {
            "lead_hours": self.lead_hours,
            "status": self.status,
            "reason": self.reason,
            "score": self.score,
            "rmse_reference": self.rmse_reference,
            "variables": {
                name: {"rmse": v.rmse, "acc": v.acc, "skill": v.skill} for name, v in sorted(self.variables.items())
            },
        }


def era5_fields(settings: ScoringSettings) -> list[tuple[str, int | None]]:
    fields: list[tuple[str, int | None]] = [(name, None) for name in settings.surface_variables]
    for name in settings.atmospheric_variables:
        fields.extend((name, level) for level in settings.pressure_levels_hpa)
    return fields


def lead_score(variables: Mapping[str, VariableScore], settings: ScoringSettings) -> tuple[float, float]:
    """(score, rmse reference) from the per-variable combined metrics.

    A metric that is undefined (NaN: e.g. a correlation of a field with no anomaly) is left out of
    its mean, as the reference filters non-finite values; a skill of ``-inf`` (perfect climatology,
    imperfect forecast) clamps to 0. NaN when no variable has a finite RMSE.
    """
    values = list(variables.values())
    finite_rmse = [v for v in values if math.isfinite(v.rmse)]
    if not values or not finite_rmse:
        return math.nan, math.nan
    skills = [min(1.0, max(0.0, v.skill)) for v in values if not math.isnan(v.skill)]
    accs = [(v.acc + 1.0) / 2.0 for v in values if math.isfinite(v.acc)]
    if settings.rmse_normalisation == "reference_median":
        rmses = sorted(v.rmse for v in finite_rmse)
        ref = rmses[len(rmses) // 2]
        pairs = [(v.rmse, ref) for v in finite_rmse]
    else:
        ref = math.nan
        pairs = [(v.rmse, v.climatology_rmse) for v in finite_rmse]
    # A zero reference makes every term 0.5, as the reference's aggregator (``e / ref`` taken as 1).
    rmse_terms = [1.0 / (1.0 + (rmse / r if r > 0 else 1.0)) for rmse, r in pairs]
    score = (
        settings.era5_skill_weight * (float(np.mean(skills)) if skills else 0.0)
        + settings.era5_acc_weight * (float(np.mean(accs)) if accs else 0.0)
        + settings.era5_rmse_weight * float(np.mean(rmse_terms))
    )
    return min(1.0, max(0.0, score)), ref


def score_era5_lead_many(
    forecasts: Mapping[Hashable, ForecastSource],
    truth: FieldSource,
    climatology: ClimatologySource,
    init_time: datetime,
    lead_hours: int,
    settings: ScoringSettings,
    *,
    deployed: bool = True,
    threads: int = 1,
) -> dict[Hashable, LeadResult]:
    """Score one lead for several miners, reading each truth and climatology field once.

    ``deployed`` only matters under the ``reference`` profile: the deployed validator opens miner
    stores lazily (dask), which decides whether pressure-level skill survives (see
    ``era5_reference``); ``False`` reproduces the reference run on in-memory arrays (golden tests).
    ``threads`` > 1 scores the miners of each field side by side (``fanout``); the results are the
    same, since every miner's work on a field is its own and fields stay in order.
    """
    with MinerFanout(threads, len(forecasts)) as fanout:
        if settings.profile == "reference":
            return _score_reference(forecasts, truth, climatology, init_time, lead_hours, settings, deployed, fanout)
        return _score_corrected(forecasts, truth, climatology, init_time, lead_hours, settings, fanout)


def _lead_setup(
    forecasts: Mapping[Hashable, ForecastSource],
    truth: FieldSource,
    init_time: datetime,
    lead_hours: int,
    settings: ScoringSettings,
) -> tuple[datetime, int, int, np.ndarray, dict[int, float], dict[Hashable, LeadResult]]:
    """What both profiles start from: valid time, climatology slot, weights and empty results."""
    valid = init_time + timedelta(hours=lead_hours)
    doy, hour = climatology_slot(valid)
    weights = latitude_weights(truth.grid.latitudes, settings.latitude_weighting)
    level_weights = thickness_weights(settings.pressure_levels_hpa)
    return valid, doy, hour, weights, level_weights, {key: LeadResult(lead_hours, valid) for key in forecasts}


def _score_corrected(
    forecasts: Mapping[Hashable, ForecastSource],
    truth: FieldSource,
    climatology: ClimatologySource,
    init_time: datetime,
    lead_hours: int,
    settings: ScoringSettings,
    fanout: MinerFanout,
) -> dict[Hashable, LeadResult]:
    valid, doy, hour, weights, level_weights, results = _lead_setup(forecasts, truth, init_time, lead_hours, settings)
    quirks = settings.quirks
    per_level: dict[Hashable, dict[str, list[LevelComponent]]] = {key: {} for key in forecasts}
    started = time.perf_counter()

    def score_miner(key: Hashable, name: str, level: int | None, o: np.ndarray, c: np.ndarray) -> None:
        result, source = results[key], forecasts[key]
        label = name if level is None else f"{name}{level}"
        t0 = time.perf_counter()
        try:
            raw = to_truth_grid(source.field(name, level, lead_hours), source.grid, truth.grid, quirks)
            f, check = check_and_fill(raw, c, f"{label} at {lead_hours}h", settings)
        except InvalidDataError as exc:
            result.status, result.reason = REJECTED, str(exc)
            return
        except LeadFailed as exc:
            result.status, result.reason = FAILED, str(exc)
            return
        metrics = field_metrics(f, o, weights, climatology=c, reference=c, acc_definition=settings.acc_definition)
        weight = 1.0 if level is None else level_weights[level]
        per_level[key].setdefault(name, []).append(
            LevelComponent(
                name, level, metrics, weight, check.coverage, check.filled_points, (time.perf_counter() - t0) * 1e3
            )
        )

    for name, level in era5_fields(settings):
        o = truth.field(name, level, valid)
        c = to_grid(climatology.field(name, level, doy, hour), climatology.grid, truth.grid)
        # A miner whose lead is already decided is not read any more.
        fanout.each(_still_scored(results), score_miner, name, level, o, c)
    for key, result in results.items():
        result.duration_ms = (time.perf_counter() - started) * 1e3
        if result.status != SCORED:
            continue
        for name, comps in per_level[key].items():
            if VARIABLES[name].atmospheric:

                def combined(attr: str, comps=comps) -> float:
                    return combine_levels({c.level: getattr(c.metrics, attr) for c in comps}, level_weights)

                # The variable's RMSE is the root of the thickness-weighted mean MSE (as the reference).
                mse = combined("mse")
                rmse = math.sqrt(mse) if math.isfinite(mse) else math.nan
                acc, skill = combined("acc"), combined("skill")
                clim_rmse = math.sqrt(combined("mse_reference"))
            else:
                m = comps[0].metrics
                rmse, acc, skill, clim_rmse = m.rmse, m.acc, m.skill, math.sqrt(m.mse_reference)
            result.variables[name] = VariableScore(name, rmse, acc, skill, clim_rmse, comps)
        _finish(result, settings)
    return results


def _still_scored(results: Mapping[Hashable, LeadResult]) -> list[Hashable]:
    return [key for key, result in results.items() if result.status == SCORED]


def _finish(result: LeadResult, settings: ScoringSettings) -> None:
    missing = set(settings.era5_variables) - set(result.variables)
    score, ref = lead_score(result.variables, settings)
    if missing or not math.isfinite(score):
        result.status = INCOMPLETE
        result.reason = f"missing variables {sorted(missing)}" if missing else "a combined metric is undefined"
        return
    result.score, result.rmse_reference = score, ref


def _score_reference(
    forecasts: Mapping[Hashable, ForecastSource],
    truth: FieldSource,
    climatology: ClimatologySource,
    init_time: datetime,
    lead_hours: int,
    settings: ScoringSettings,
    deployed: bool,
    fanout: MinerFanout,
) -> dict[Hashable, LeadResult]:
    """The deployed reference's rules (``era5_reference`` says which and where they come from)."""
    valid, doy, hour, weights, level_weights, results = _lead_setup(forecasts, truth, init_time, lead_hours, settings)
    quirks = settings.quirks
    limit = float(settings.extreme_value_limit)
    tallies: dict[Hashable, dict[str, ref.VariableTally]] = {key: {} for key in forecasts}
    fields = era5_fields(settings)
    last_level = {name: lvl for name, lvl in fields}
    started = time.perf_counter()

    def score_miner(key: Hashable, name: str, level: int | None, o: np.ndarray, c: np.ndarray, memos: dict) -> None:
        atmospheric = VARIABLES[name].atmospheric
        result, source = results[key], forecasts[key]
        t0 = time.perf_counter()
        tally = tallies[key].setdefault(name, ref.VariableTally())
        try:
            raw = source.field(name, level, lead_hours)
            # Counts do not depend on the cells' order: one scan of a float32 field that is only
            # reordered decides, and when it finds every value finite nothing below changes it.
            reordered = raw.dtype == np.float32 and raw.ndim == 2 and same_points(source.grid, truth.grid, quirks)
            scanned = scan(raw, limit) if reordered else None
            finite = scanned is not None and scanned[2] == 0
            f = to_truth_grid(raw, source.grid, truth.grid, quirks, finite=finite if scanned is not None else None)
        except InvalidDataError as exc:
            result.status, result.reason = REJECTED, str(exc)
            return
        if quirks.edge_seam_copies_neighbour and not finite:
            f, border = ref.salvage_edges(f)
            tally.border_nan |= border
        extreme, _interior, bad = scanned if finite else scan(np.ascontiguousarray(f, dtype=np.float32), limit)
        if extreme:
            tally.extreme += int(np.count_nonzero(np.isfinite(f) & (np.abs(f) > limit)))
        tally.finite += f.size - int(bad)
        tally.total += f.size
        filled = 0
        if bad and not (atmospheric and quirks.clim_fill_skips_pressure_levels):
            f = np.where(np.isfinite(f), f, c).astype(f.dtype)
            filled = int(bad)
        metrics = field_metrics(f, o, weights, climatology=c, reference=c, acc_definition=settings.acc_definition)
        skill = metrics.skill
        if metrics.masked:
            if "clim_mse" not in memos:
                memos["clim_mse"] = field_metrics(c, o, weights).mse
            skill = ref.skill_from_mse(metrics.mse_bias_corrected, memos["clim_mse"])
        acc = ref.reference_acc(metrics, f, o, c, memos)
        metrics = replace(metrics, skill=skill, acc=acc)
        weight = 1.0 if level is None else level_weights[level]
        coverage = (f.size - int(bad)) / f.size
        tally.levels.append(
            LevelComponent(name, level, metrics, weight, coverage, filled, (time.perf_counter() - t0) * 1e3)
        )
        if level == last_level[name]:
            _decide_variable(result, name, tally, settings)

    for name, level in fields:
        o = truth.field(name, level, valid)
        c = to_grid(climatology.field(name, level, doy, hour), climatology.grid, truth.grid)
        # Once per field for the whole batch, the same whichever miner's thread computes it: the
        # skill's reference MSE over every point when a field has gaps, the ACC rule's truth test.
        memos: dict = {}
        fanout.each(_still_scored(results), score_miner, name, level, o, c, memos)
    for key, result in results.items():
        result.duration_ms = (time.perf_counter() - started) * 1e3
        if result.status != SCORED:
            continue
        rmses: list[float] = []
        accs: list[float] = []
        skills: list[float] = []
        for name, tally in tallies[key].items():
            comps = tally.levels
            if VARIABLES[name].atmospheric:
                mse = ref.combine_atmospheric({c.level: c.metrics.mse for c in comps}, level_weights)
                rmse = math.sqrt(mse) if mse >= 0 else math.nan
                acc = ref.combine_atmospheric({c.level: c.metrics.acc for c in comps}, level_weights)
                if not math.isfinite(acc):
                    acc = skill = math.nan  # the recorded error drops the variable's ACC and skill
                elif quirks.pressure_level_skill_lost_on_dask and deployed and not tally.border_nan:
                    skill = 0.0
                    # The component rows get the variable's 0 too (the per-level map came back empty).
                    for comp in comps:
                        comp.metrics = replace(comp.metrics, skill=0.0)
                else:
                    skill = ref.nan_to_num_skill({c.level: c.metrics.skill for c in comps}, level_weights)
                clim_rmse = math.sqrt(
                    max(0.0, ref.combine_atmospheric({c.level: c.metrics.mse_reference for c in comps}, level_weights))
                )
            else:
                m = comps[0].metrics
                rmse, acc, skill, clim_rmse = m.rmse, m.acc, m.skill, math.sqrt(m.mse_reference)
            if not math.isfinite(skill):
                skill = math.nan  # only finite skills are stored, so only they are averaged
            result.variables[name] = VariableScore(name, rmse, acc, skill, clim_rmse, comps)
            rmses.append(rmse)
            if math.isfinite(acc):
                accs.append(acc)
            if math.isfinite(skill):
                skills.append(skill)
        missing = set(settings.era5_variables) - set(result.variables)
        if missing:
            result.status, result.reason = INCOMPLETE, f"missing variables {sorted(missing)}"
            continue
        result.score, result.rmse_reference = ref.reference_lead_score(rmses, accs, skills, settings)
    return results


def _decide_variable(result: LeadResult, name: str, tally: ref.VariableTally, settings: ScoringSettings) -> None:
    """The deployed per-variable gates, in its order: extremes (never effective as deployed), coverage, surface ACC."""
    where = f"{name} at {result.lead_hours}h"
    if tally.extreme and not settings.quirks.extreme_value_check_skipped:
        result.status, result.reason = (
            REJECTED,
            f"{where}: {tally.extreme} values beyond +-{settings.extreme_value_limit:g}",
        )
    elif tally.coverage < settings.min_finite_coverage_reject:
        result.status = REJECTED
        result.reason = f"{where}: finite coverage {tally.coverage:.4f} < {settings.min_finite_coverage_reject}"
    elif tally.coverage < settings.min_finite_coverage_lead:
        result.status = FAILED
        result.reason = f"{where}: finite coverage {tally.coverage:.6f} < {settings.min_finite_coverage_lead}"
    elif (
        settings.quirks.undefined_acc_fails_or_drops
        and not VARIABLES[name].atmospheric
        and not math.isfinite(tally.levels[0].metrics.acc)
    ):
        result.status, result.reason = FAILED, f"{where}: ACC is undefined (the reference fails the lead)"


def score_era5_lead(
    forecast: ForecastSource,
    truth: FieldSource,
    climatology: ClimatologySource,
    init_time: datetime,
    lead_hours: int,
    settings: ScoringSettings,
) -> LeadResult:
    return score_era5_lead_many({0: forecast}, truth, climatology, init_time, lead_hours, settings)[0]

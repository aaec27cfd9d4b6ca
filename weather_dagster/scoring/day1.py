"""Day1 scoring: the miner's short lead against the GFS analysis, with the GFS forecast as reference.

Two profiles (``settings.profile``; switches in ``settings/profile.py``). Both, per (variable, lead):

1. clone distance ``D = mse(f, gfs_forecast)`` and the penalty ``P = max(0, 1 - D / delta)`` when
   ``D < delta``, computed before the sanity checks;
2. sanity: climatology bounds (``corrected`` only), ``q >= 0``, and a pattern correlation with the
   GFS forecast of at least 0.3; a variable failing sanity is left out;
3. skill on the bias-corrected forecast (``f - unweighted mean(f - o)``) vs the GFS forecast, minus
   the penalty: ``SS - P``;
4. ACC of the raw forecast against climatology (centred, weighted).

Day1 = 0.6 x mean(max(0, SS - P)) + 0.4 x mean((ACC + 1) / 2), each mean over the finite values it
has (an empty mean is 0; nothing at all gives 0). Strict clamp: any clone penalty or ``D < 0.5
delta`` caps Day1 at 0.05. Pass = Day1 >= 0.1.

``corrected`` verifies the miner field as ERA5 does (``checks``: extreme values reject the
forecast, coverage below 0.9985 leaves the variable out, gaps are filled with climatology),
interpolates only when the grids differ (periodic), checks the bounds and clamps over every
variable with a clone distance. ``reference`` is deployed Gaia v2.9.96 (``day1_reference`` gives
the steps with their places in the reference): units guessed, ``interp_like`` always (NaN spreads),
no verification, NaN cells skipped by each metric on its own, no bounds, and only variables that
passed sanity enter the strict clamp.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from weather_dagster.reference.interfaces import ClimatologySource, FieldSource, ForecastSource
from weather_dagster.reference.variables import split_level_name
from weather_dagster.scoring import day1_reference as ref
from weather_dagster.scoring.checks import LeadFailed, check_and_fill, reject_extremes
from weather_dagster.scoring.kernel import FieldMetrics, field_metrics, latitude_weights
from weather_dagster.scoring.regrid import to_grid, to_truth_grid
from weather_dagster.settings import ScoringSettings


@dataclass
class Day1Component:
    variable: str  # e.g. "z500" or "2t"
    base_variable: str
    level: int | None
    lead_hours: int
    valid_time: datetime
    metrics: FieldMetrics | None = None
    clone_distance: float = math.nan
    clone_penalty: float = 0.0
    sanity: dict[str, bool | float | str] = field(default_factory=dict)
    passed: bool = False
    skill_after_penalty: float = math.nan
    duration_ms: float = 0.0


@dataclass
class Day1Result:
    score: float
    passed: bool
    clamped: bool
    components: list[Day1Component]
    mean_skill: float
    mean_acc: float
    profile: str = "reference"

    def summary(self) -> dict:
        return {
            "profile": self.profile,
            "score": self.score,
            "passed": self.passed,
            "clamped": self.clamped,
            "mean_skill": self.mean_skill,
            "mean_acc": self.mean_acc,
            "variables": {f"{c.variable}@{c.lead_hours}h": c.skill_after_penalty for c in self.components},
        }


def climatology_slot(valid_time: datetime) -> tuple[int, int]:
    """(day of year, hour rounded down to 6 h): how the reference picks the climatology slice."""
    return valid_time.timetuple().tm_yday, (valid_time.hour // 6) * 6


def sanity_checks(
    name: str, base: str, forecast: np.ndarray, metrics: FieldMetrics, settings: ScoringSettings
) -> dict[str, bool | float | str]:
    """Bounds (unless the profile has none), ``q >= 0`` and the pattern-correlation rule."""
    quirks = settings.quirks
    result: dict[str, bool | float | str] = {}
    lo_seen, hi_seen = ref.nan_min_max(forecast)
    result["min"], result["max"] = lo_seen, hi_seen
    bounds = None
    if not quirks.day1_no_climatology_bounds:
        bounds = settings.sanity_bounds.get(name) or settings.sanity_bounds.get(base)
    if bounds is not None:
        lo, hi = bounds
        result["climatology_passed"] = bool(lo_seen >= lo and hi_seen <= hi)  # NaN (no data) fails
    else:
        result["climatology_passed"] = True
    if base == "q":
        # reference: ``min < 0`` fails (a field with no value at all passes); corrected: min >= 0 passes
        negative = lo_seen < 0.0 if quirks.day1_no_climatology_bounds else not lo_seen >= 0.0
        result["climatology_passed"] = bool(result["climatology_passed"] and not negative)
    corr = metrics.pattern_correlation
    if lo_seen == hi_seen:
        # A constant field has no pattern: undefined (both profiles). The kernel's sums leave ~1e-8
        # of rounding and the reference's ~1e-14 or NaN; every one of them fails the 0.3 rule.
        corr = math.nan
    result["pattern_correlation"] = corr
    result["pattern_correlation_passed"] = bool(math.isfinite(corr) and corr >= settings.min_pattern_correlation)
    return result


def combine_day1(components: list[Day1Component], settings: ScoringSettings) -> Day1Result:
    skills = [max(0.0, c.skill_after_penalty) for c in components if c.passed and math.isfinite(c.skill_after_penalty)]
    accs = [
        (c.metrics.acc + 1.0) / 2.0
        for c in components
        if c.passed and c.metrics is not None and math.isfinite(c.metrics.acc)
    ]
    mean_skill = float(np.mean(skills)) if skills else 0.0
    mean_acc = float(np.mean(accs)) if accs else 0.0
    score = settings.day1_skill_weight * mean_skill + settings.day1_acc_weight * mean_acc if (skills or accs) else 0.0
    clamped = False
    for c in components:
        if settings.quirks.day1_failed_sanity_skips_strict_clamp and not c.passed:
            continue  # the reference keeps the clone distance of "success" variables only
        delta = settings.clone_delta.get(c.variable)
        if delta is None or not math.isfinite(c.clone_distance):
            continue
        if c.clone_penalty > 0.0 or c.clone_distance < settings.day1_strict_clone_factor * delta:
            clamped = True
    if clamped:
        score = min(score, settings.day1_clone_clamp)
    passed = score >= settings.day1_pass_threshold
    return Day1Result(score, passed, clamped, components, mean_skill, mean_acc, settings.profile)


def _prepare(
    raw: np.ndarray, clim: np.ndarray, label: str, settings: ScoringSettings
) -> tuple[np.ndarray, dict[str, bool | float | str]]:
    """The miner field ready for the metrics (on the truth grid) and what verification found."""
    quirks = settings.quirks
    if quirks.day1_skips_nan:
        if not quirks.day1_no_extreme_check:
            reject_extremes(raw, label, settings)
        return raw, {}
    f, check = check_and_fill(raw, clim, label, settings)  # extreme values, coverage gate, gap fill
    return f, {"coverage": check.coverage, "filled_points": check.filled_points}


def score_day1(
    forecast: ForecastSource,
    analysis: FieldSource,
    gfs_forecast: FieldSource,
    climatology: ClimatologySource,
    init_time: datetime,
    settings: ScoringSettings,
) -> Day1Result:
    """Score one miner's Day1, one field at a time (truth, reference, climatology, forecast)."""
    quirks = settings.quirks
    reference = settings.profile == "reference"
    if reference:
        weights = ref.reference_row_weights(analysis.grid.latitudes)
    else:
        weights = latitude_weights(analysis.grid.latitudes, settings.latitude_weighting)

    def truth_side(values: np.ndarray, grid) -> np.ndarray:
        """GFS forecast and climatology onto the truth grid: ``interp_like`` too in the reference."""
        return to_truth_grid(values, grid, analysis.grid, quirks) if reference else to_grid(values, grid, analysis.grid)

    components: list[Day1Component] = []
    for lead in settings.day1_lead_hours:
        valid = init_time + timedelta(hours=lead)
        doy, hour = climatology_slot(valid)
        for name in settings.day1_variables:
            base, level = split_level_name(name)
            started = time.perf_counter()
            comp = Day1Component(name, base, level, lead, valid)
            label = f"{name} at {lead}h"
            truth = analysis.field(base, level, valid)
            gfs = truth_side(gfs_forecast.field(base, level, valid), gfs_forecast.grid)
            clim = truth_side(climatology.field(base, level, doy, hour), climatology.grid)
            stored = forecast.field(base, level, lead)
            converted = None
            if quirks.day1_unit_autoconversion:
                stored, converted = ref.autoconvert_units(base, stored, truth)
            raw = to_truth_grid(stored, forecast.grid, analysis.grid, quirks)
            try:
                f, verification = _prepare(raw, clim, label, settings)
            except LeadFailed as exc:
                comp.sanity = {"coverage_passed": False, "reason": str(exc)}
                components.append(comp)
                continue
            if reference:
                metrics = ref.reference_metrics(f, truth, gfs, clim, weights)
            else:
                metrics = field_metrics(
                    f,
                    truth,
                    weights,
                    climatology=clim,
                    reference=gfs,
                    pattern=gfs,
                    acc_definition=settings.acc_definition,
                )
            comp.metrics = metrics
            comp.clone_distance = metrics.clone_distance
            delta = settings.clone_delta.get(name)
            if delta is not None and metrics.clone_distance < delta:  # NaN never is
                comp.clone_penalty = max(0.0, 1.0 - metrics.clone_distance / delta)
            comp.sanity = {**verification, **sanity_checks(name, base, f, metrics, settings)}
            if converted:
                comp.sanity["unit_conversion"] = converted
            comp.passed = bool(comp.sanity["climatology_passed"] and comp.sanity["pattern_correlation_passed"])
            if comp.passed:
                comp.skill_after_penalty = metrics.skill - comp.clone_penalty
            comp.duration_ms = (time.perf_counter() - started) * 1e3
            components.append(comp)
    return combine_day1(components, settings)

"""Day1 scoring: the miner's short lead against the GFS analysis, with the GFS forecast as reference.

The order per (variable, lead) follows the reference (Nickel5-Inc/Gaia ``scoring/day1.py`` and
``weather_scoring_mechanism.py``, read, not copied):

1. clone distance ``D = mse(f, gfs_forecast)`` on the *raw* miner field and the penalty
   ``P = max(0, 1 - D / delta)`` when ``D < delta``; computed before the sanity checks, so a clone
   that also fails sanity still counts for the strict clamp;
2. sanity: every finite value inside the variable's climatology bounds, ``q >= 0``, and a pattern
   correlation with the GFS forecast of at least 0.3; a variable failing sanity is left out;
3. skill on the bias-corrected forecast vs the GFS forecast, minus the penalty: ``SS - P``;
4. ACC of the raw forecast against climatology.

Day1 = 0.6 x mean(max(0, SS - P)) + 0.4 x mean((ACC + 1) / 2), each mean over the finite values it
has (an empty mean is 0; nothing at all gives 0). Strict clamp: any clone penalty or ``D < 0.5
delta`` caps Day1 at 0.05. Pass = Day1 >= 0.1.

Non-finite miner values and extreme values follow the same verification as ERA5 (``checks``), so
NaN injection fails here too instead of being silently skipped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from weather_dagster.reference.interfaces import ClimatologySource, FieldSource, ForecastSource
from weather_dagster.reference.variables import split_level_name
from weather_dagster.scoring.checks import LeadFailed, check_and_fill
from weather_dagster.scoring.kernel import FieldMetrics, field_metrics, latitude_weights
from weather_dagster.scoring.regrid import to_grid
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

    def summary(self) -> dict:
        return {
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
    result: dict[str, bool | float | str] = {}
    bounds = settings.sanity_bounds.get(name) or settings.sanity_bounds.get(base)
    if bounds is not None:
        lo, hi = bounds
        finite = forecast[np.isfinite(forecast)]
        result["climatology_passed"] = bool(finite.size and finite.min() >= lo and finite.max() <= hi)
    else:
        result["climatology_passed"] = True
    if base == "q":
        result["climatology_passed"] = bool(result["climatology_passed"] and np.nanmin(forecast) >= 0.0)
    corr = metrics.pattern_correlation
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
        delta = settings.clone_delta.get(c.variable)
        if delta is None or not math.isfinite(c.clone_distance):
            continue
        if c.clone_penalty > 0.0 or c.clone_distance < settings.day1_strict_clone_factor * delta:
            clamped = True
    if clamped:
        score = min(score, settings.day1_clone_clamp)
    return Day1Result(score, score >= settings.day1_pass_threshold, clamped, components, mean_skill, mean_acc)


def score_day1(
    forecast: ForecastSource,
    analysis: FieldSource,
    gfs_forecast: FieldSource,
    climatology: ClimatologySource,
    init_time: datetime,
    settings: ScoringSettings,
) -> Day1Result:
    """Score one miner's Day1, one field at a time (truth, reference, climatology, forecast)."""
    weights = latitude_weights(analysis.grid.latitudes, settings.latitude_weighting)
    components: list[Day1Component] = []
    for lead in settings.day1_lead_hours:
        valid = init_time + timedelta(hours=lead)
        doy, hour = climatology_slot(valid)
        for name in settings.day1_variables:
            base, level = split_level_name(name)
            started = time.perf_counter()
            comp = Day1Component(name, base, level, lead, valid)
            truth = analysis.field(base, level, valid)
            ref = to_grid(gfs_forecast.field(base, level, valid), gfs_forecast.grid, analysis.grid)
            clim = to_grid(climatology.field(base, level, doy, hour), climatology.grid, analysis.grid)
            raw = to_grid(forecast.field(base, level, lead), forecast.grid, analysis.grid)
            try:
                f, _check = check_and_fill(raw, clim, f"{name} at {lead}h", settings)
            except LeadFailed as exc:
                comp.sanity = {"coverage_passed": False, "reason": str(exc)}
                components.append(comp)
                continue
            metrics = field_metrics(
                f,
                truth,
                weights,
                climatology=clim,
                reference=ref,
                pattern=ref,
                acc_definition=settings.acc_definition,
            )
            comp.metrics = metrics
            comp.clone_distance = metrics.clone_distance
            delta = settings.clone_delta.get(name)
            if delta is not None and math.isfinite(metrics.clone_distance) and metrics.clone_distance < delta:
                comp.clone_penalty = max(0.0, 1.0 - metrics.clone_distance / delta)
            comp.sanity = sanity_checks(name, base, f, metrics, settings)
            comp.passed = bool(comp.sanity["climatology_passed"] and comp.sanity["pattern_correlation_passed"])
            if comp.passed:
                comp.skill_after_penalty = metrics.skill - comp.clone_penalty
            comp.duration_ms = (time.perf_counter() - started) * 1e3
            components.append(comp)
    return combine_day1(components, settings)

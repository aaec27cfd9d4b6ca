"""Day1 rules of the ``reference`` profile: what deployed Gaia v2.9.96 computes for one variable.

Read from ``WT/weather_scoring_mechanism.py`` (``_process_single_variable_parallel_preloaded``
~1904-2385, the path every pre-loaded miner variable takes) and ``WT/weather_scoring/metrics.py``
(``WT`` = ``gaia/tasks/defined_tasks/weather``); the deployed Day1 config is
``WT/pipeline/steps/day1_step.py`` ~195-207 with the defaults of ``WT/weather_task.py`` ~385-502.
Per (variable, lead), in the reference's order:

1. unit guess on the miner field as stored (~2038-2078), see :func:`autoconvert_units`;
2. ``interp_like(truth, method="linear")`` of the miner field, the GFS forecast and the climatology
   onto the truth grid (~2228, ~2234, ~2328), even when the grids are identical
   (``regrid.to_truth_grid``: each NaN spreads to the next node along each axis);
3. no extreme-value check, no coverage gate and no gap fill: NaN cells stay NaN;
4. clone distance ``D = xs.mse(f, r, weights, skipna=True)`` (~2274) over the cells where both the
   miner field ``f`` and the GFS forecast ``r`` are not NaN; penalty ``P = max(0, 1 - D / delta)``
   when ``D < delta`` (gamma = 1);
5. sanity (``metrics.perform_sanity_checks`` ~567): no bounds (the deployed config has none);
   ``q*`` variables need ``nanmin(f) >= 0``; pattern correlation ``xs.pearson_r(f, r, weights,
   skipna=True) >= 0.3`` (NaN fails). A failure ends the variable with status "skipped": no
   skill, no ACC, and its D is not kept, so the strict clamp never sees it (~3211);
6. bias correction (``metrics.calculate_bias_corrected_forecast`` ~83): ``m`` = plain (unweighted)
   ``nanmean(f - o)``, ``f_bc = f - m``;
7. skill (``metrics.calculate_mse_skill_score`` ~195): ``1 - mse(f_bc, o) / mse(r, o)``, each
   ``xs.mse`` over its own pair's non-NaN cells; NaN if either MSE is not finite; with ``mse(r, o)
   == 0`` it is 1 when ``mse(f_bc, o) == 0`` and ``-inf`` otherwise; the stored value is ``SS - P``;
8. ACC (``metrics.calculate_acc`` ~500): ``xs.pearson_r(f - c, o - c, weights, skipna=True)``; NaN
   when the unweighted ``np.std`` of either anomaly is below 1e-12 (``np.std`` of an array holding
   NaN is NaN, so a field with gaps never trips that guard).

Weights are ``cos(lat)`` as the reference computes them (``metrics._calculate_latitude_weights``:
the pole rows keep cos(90 deg) = 6e-17); xskillscore's ``_match_nans`` drops the weight of every
skipped cell, so each mean is renormalised over the cells it keeps. The interpolated arrays are
float64 in the reference; here they are the float32 values the regrid returns, which on an
identical grid are the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from weather_dagster.scoring.era5_reference import reference_acc, skill_from_mse
from weather_dagster.scoring.kernel import FieldMetrics, field_metrics
from weather_dagster.scoring.regrid import _may_have_nan

GRAVITY = 9.80665  # the reference's g for geopotential height -> geopotential


def reference_row_weights(latitudes: np.ndarray) -> np.ndarray:
    """``cos(lat)`` per row exactly as the reference (no zeroing of the pole rows)."""
    return np.cos(np.deg2rad(np.asarray(latitudes, dtype=np.float64)))


def _nanmean(values: np.ndarray) -> float:
    mean = float(np.mean(values, dtype=np.float64))
    if not math.isnan(mean):
        return mean  # no NaN (the common case): one pass, no mask
    with np.errstate(all="ignore"):
        return float(np.nanmean(values, dtype=np.float64)) if (~np.isnan(values)).any() else math.nan


def autoconvert_units(base: str, forecast: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The reference's unit guess (``weather_scoring_mechanism.py`` ~2038-2078), in its order.

    ``z`` with mean < 1e4 while the truth's mean is > 4e4 is taken as geopotential height and
    multiplied by 9.80665; ``2t``/``t`` with mean < 100 (truth > 200) as Celsius (+273.15);
    ``msl`` with mean < 2000 (truth > 5e4) as hPa (x100). Means skip NaN; float32 arithmetic as the
    reference's float32 DataArray times a Python float. The reference takes the means over the whole
    stored variable (all its levels for ``z``); here over the scored level, which decides the same way
    for any field in either unit (z500 ~5.6e3 m or ~5.5e4 m2 s-2, all levels ~8e3 m or ~8e4).
    """
    if base not in ("z", "2t", "t", "msl"):
        return forecast, None
    miner_mean, truth_mean = _nanmean(forecast), _nanmean(truth)
    if base == "z" and miner_mean < 10000 and truth_mean > 40000:
        return (forecast * np.float32(GRAVITY)).astype(np.float32), "geopotential height x 9.80665"
    if base in ("2t", "t") and miner_mean < 100 and truth_mean > 200:
        return (forecast + np.float32(273.15)).astype(np.float32), "Celsius + 273.15"
    if base == "msl" and miner_mean < 2000 and truth_mean > 50000:
        return (forecast * np.float32(100.0)).astype(np.float32), "hPa x 100"
    return forecast, None


def nan_min_max(forecast: np.ndarray) -> tuple[float, float]:
    """xarray's ``min()``/``max()`` (NaN skipped; NaN when nothing is left)."""
    lo, hi = float(np.min(forecast)), float(np.max(forecast))
    if not (math.isnan(lo) or math.isnan(hi)):
        return lo, hi
    if np.isnan(forecast).all():
        return math.nan, math.nan
    return float(np.nanmin(forecast)), float(np.nanmax(forecast))


def gfs_mse(gfs_forecast: np.ndarray, truth: np.ndarray, row_weights: np.ndarray) -> float:
    """``xs.mse(r, o)``: the skill's reference MSE, over the cells both have (miner-independent)."""
    return field_metrics(gfs_forecast, truth, row_weights).mse


def reference_metrics(
    forecast: np.ndarray,
    truth: np.ndarray,
    gfs_forecast: np.ndarray,
    climatology: np.ndarray,
    row_weights: np.ndarray,
    mse_gfs: float | None = None,
) -> FieldMetrics:
    """Every Day1 metric as the reference computes it, each over its own pair's non-NaN cells.

    Without NaN anywhere one kernel pass gives them all (every pair keeps every cell). Otherwise
    the kernel runs once per pair - (f, r): clone distance and pattern correlation; (f, o): bias and
    bias-corrected MSE; (r, o): the GFS MSE; (f - c, o - c): ACC - because its masked pass would drop
    a cell from every metric when any one input lacks it. An infinity is not skipped by the
    reference (``_match_nans`` only looks for NaN): it makes ``D`` infinite and the pattern
    correlation NaN, which fails sanity.
    """
    if not _may_have_nan(forecast):
        full = field_metrics(
            forecast, truth, row_weights, climatology=climatology, reference=gfs_forecast, pattern=gfs_forecast
        )
        if not full.masked:
            return replace(full, acc=reference_acc(full, forecast, truth, climatology))
    pair_fr = field_metrics(forecast, gfs_forecast, row_weights)
    pair_fo = field_metrics(forecast, truth, row_weights)
    anomalies = field_metrics(forecast, truth, row_weights, climatology=climatology)
    if mse_gfs is None:
        mse_gfs = gfs_mse(gfs_forecast, truth, row_weights)
    clone, pattern = pair_fr.mse, pair_fr.pattern_correlation
    if np.isinf(forecast).any():
        clone, pattern = math.inf, math.nan
    return replace(
        pair_fo,
        mse_reference=mse_gfs,
        skill=skill_from_mse(pair_fo.mse_bias_corrected, mse_gfs),
        acc=reference_acc(anomalies, forecast, truth, climatology),
        pattern_correlation=pattern,
        clone_distance=clone,
        forecast_anomaly_variance=anomalies.forecast_anomaly_variance,
        truth_anomaly_variance=anomalies.truth_anomaly_variance,
    )

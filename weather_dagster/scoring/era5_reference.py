"""ERA5 per-lead rules of the ``reference`` profile: what deployed Gaia v2.9.96 computes.

Read from ``WT/processing/weather_logic.py`` (``calculate_era5_miner_score`` ~1742 and
``_calculate_and_store_aggregated_era5_score`` ~4292, ``WT`` = ``gaia/tasks/defined_tasks/weather``)
and ``WT/weather_scoring/metrics.py``. The deployed scorer handles one *variable* at a time, all
13 levels of an atmospheric variable in one array (config level ``"all"``), in the order 2t, 10u,
10v, msl, t, u, v, q, z; per variable:

1. ``interp_like`` onto the truth grid (``regrid.to_truth_grid``: NaN spreads, no wrap-around);
2. edge salvage (``WEATHER_ERA5_EDGE_SALVAGE`` defaults on, ~2969): NaN on the outer ring is
   replaced by the neighbouring row / column of the interpolated array (top, bottom, left, right,
   each from the unsalvaged array), and - the accident - when any border cell was NaN the array is
   rebuilt as numpy, otherwise it stays a lazy dask array;
3. any finite ``|value| > 1e12`` is meant to reject the forecast, but the check indexes a computed
   ``DataArray`` with a 2-D boolean mask, xarray raises, the error is logged at debug level and the
   check is skipped: extreme values are scored like any other (switch ``extreme_value_check_skipped``);
4. coverage = finite cells / cells over *all levels of the variable*: < 0.1 rejects the
   forecast, < ``era5_min_finite_coverage_ratio`` (0.9985) ends the scoring of the lead;
5. gap fill with climatology: works for surface variables; for atmospheric ones the climatology
   keeps its ``level`` dimension while the forecast was transposed to (lat, lon, pressure_level),
   ``np.where`` fails to broadcast, the error is swallowed and gaps stay NaN;
6. metrics with ``skipna=True`` (xskillscore): NaN points of the forecast are dropped and the
   weights renormalised over the rest; the climatology reference MSE keeps every point;
7. RMSE: per level ``xs.mse``; the variable's RMSE is ``sqrt(sum_l w_l mse_l)`` (thickness weights);
8. ACC: ``xs.pearson_r`` of anomalies, NaN when the unweighted ``np.std`` of either anomaly is
   below 1e-12. Surface: a non-finite ACC fails the miner's whole lead (~3828). Atmospheric:
   the thickness-weighted sum of level ACCs; any NaN level raises, the error is recorded and the
   variable keeps its RMSE but loses its ACC and skill (~3804);
9. skill vs climatology on the bias-corrected forecast: surface ``1 - mse_bc / mse_clim`` (kept only
   when finite). Atmospheric: ``calculate_mse_skill_score_by_pressure_level`` passes the dask
   arrays that ``interp_like`` chunked along latitude to ``xs.mse`` without rechunking; the
   ``apply_ufunc`` error is caught, ``{}`` comes back and ``np.nan_to_num`` makes every level 0
   (~4021). Only a salvaged (numpy) array escapes that. ``nan_to_num`` also turns a level's
   ``-inf`` into ``-1.8e308``;
10. lead score: ``0.6 mean(clamp(skill, 0, 1)) + 0.3 mean((acc + 1) / 2) + 0.1 mean(1 / (1 + rmse /
    ref))`` over the metrics present (fallbacks when a whole kind is missing), ``ref`` the middle
    of the sorted RMSEs; ``ref == 0`` makes every RMSE term 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from weather_dagster.scoring.kernel import FieldMetrics
from weather_dagster.settings import ScoringSettings

ACC_STD_EPSILON = 1e-12  # metrics.calculate_acc*: anomalies with np.std below this have no ACC


@dataclass
class VariableTally:
    """What the deployed scorer learns about one variable across its levels before deciding."""

    extreme: int = 0
    finite: int = 0
    total: int = 0
    border_nan: bool = False
    levels: list = field(default_factory=list)  # LevelComponent, kept by the caller's type

    @property
    def coverage(self) -> float:
        return self.finite / self.total if self.total else 0.0


def salvage_edges(field_2d: np.ndarray) -> tuple[np.ndarray, bool]:
    """The reference's edge salvage of one level: (field, whether any border cell was NaN)."""
    top, bottom = np.isnan(field_2d[0, :]), np.isnan(field_2d[-1, :])
    left, right = np.isnan(field_2d[:, 0]), np.isnan(field_2d[:, -1])
    if not (top.any() or bottom.any() or left.any() or right.any()):
        return field_2d, False
    out = field_2d.copy()
    out[0, top] = field_2d[1, top]
    out[-1, bottom] = field_2d[-2, bottom]
    out[left, 0] = field_2d[left, 1]
    out[right, -1] = field_2d[right, -2]
    return out, True


def anomaly_is_constant(forecast: np.ndarray, climatology: np.ndarray, weighted_variance: float) -> bool:
    """``np.std(f - c) < 1e-12``, computed exactly only when the kernel's variance says it may be.

    ``np.std`` of an array holding NaN is NaN and NaN < eps is False: a field with gaps never trips it.
    """
    if math.isfinite(weighted_variance) and weighted_variance > 1e-18:
        return False
    f, c = np.ascontiguousarray(forecast), np.ascontiguousarray(climatology)
    if f.ndim == 2 and f.shape == c.shape:
        # A compiled float64 two-pass std (no float64 copies of the fields) decides unless it lies
        # within 1e-6 relative of the threshold, where np.std's own rounding could tip it.
        std = _anomaly_std(f, c)
        if math.isnan(std):
            return False
        if abs(std - ACC_STD_EPSILON) > 1e-6 * ACC_STD_EPSILON:
            return std < ACC_STD_EPSILON
    return bool(np.std(forecast.astype(np.float64) - climatology.astype(np.float64)) < ACC_STD_EPSILON)


@numba.njit(cache=True, nogil=True)
def _anomaly_std(f, c):  # pragma: no cover - compiled
    """Population std of ``f - c`` in float64 (mean first, then squared deviations); NaN if any is."""
    nlat, nlon = f.shape
    total = 0.0
    for i in range(nlat):
        for j in range(nlon):
            total += np.float64(f[i, j]) - np.float64(c[i, j])
    n = nlat * nlon
    if n == 0 or not np.isfinite(total):
        return np.nan
    mean = total / n
    squares = 0.0
    for i in range(nlat):
        for j in range(nlon):
            d = np.float64(f[i, j]) - np.float64(c[i, j]) - mean
            squares += d * d
    return np.sqrt(squares / n)


def reference_acc(
    metrics: FieldMetrics, forecast: np.ndarray, truth: np.ndarray, clim: np.ndarray, truth_memo: dict | None = None
) -> float:
    """The ACC, NaN when either anomaly is constant (``np.std < 1e-12``, as deployed).

    ``truth_memo`` (one dict per field, shared by a batch's miners) keeps the truth's full-field
    test, which does not depend on the miner: it is computed once per field, not once per miner.
    """
    if anomaly_is_constant(forecast, clim, metrics.forecast_anomaly_variance):
        return math.nan
    variance = metrics.truth_anomaly_variance
    if math.isfinite(variance) and variance > 1e-18:
        return metrics.acc
    if truth_memo is None:
        constant = anomaly_is_constant(truth, clim, variance)
    else:
        if "constant" not in truth_memo:
            truth_memo["constant"] = anomaly_is_constant(truth, clim, math.nan)
        constant = truth_memo["constant"]
    return math.nan if constant else metrics.acc


def skill_from_mse(mse_forecast: float, mse_reference: float) -> float:
    if not (math.isfinite(mse_forecast) and math.isfinite(mse_reference)):
        return math.nan
    if mse_reference == 0.0:
        return 1.0 if mse_forecast == 0.0 else -math.inf
    return 1.0 - mse_forecast / mse_reference


def combine_atmospheric(values: dict[int, float], weights: dict[int, float]) -> float:
    """``sum_l w_l v_l`` over every configured level (NaN if one is missing or NaN)."""
    total = 0.0
    for level, weight in weights.items():
        value = values.get(level, math.nan)
        if not math.isfinite(value) and not math.isinf(value):
            return math.nan
        total += weight * value
    return total


def nan_to_num_skill(values: dict[int, float], weights: dict[int, float]) -> float:
    """The deployed skill combination: NaN -> 0, +-inf -> +-1.8e308, then the weighted sum."""
    skills = np.nan_to_num(np.array([values.get(level, math.nan) for level in weights], dtype=np.float64), nan=0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sum(np.array(list(weights.values())) * skills))


def reference_lead_score(
    rmses: list[float], accs: list[float], skills: list[float], settings: ScoringSettings
) -> tuple[float, float]:
    """(lead score, RMSE reference) exactly as the aggregator combines the stored rows."""
    ref = sorted(rmses)[len(rmses) // 2] if rmses else 1.0
    acc_norm = sum((a + 1.0) / 2.0 for a in accs) / len(accs) if accs else None
    skill_norm = sum(min(1.0, max(0.0, s)) for s in skills) / len(skills) if skills else None
    rmse_norm = sum(1.0 / (1.0 + (e / ref if ref > 0 else 1.0)) for e in rmses) / len(rmses) if rmses else None
    if skill_norm is not None and acc_norm is not None:
        if rmse_norm is None:
            score = settings.era5_skill_weight * skill_norm + (1.0 - settings.era5_skill_weight) * acc_norm
        else:
            score = (
                settings.era5_skill_weight * skill_norm
                + settings.era5_acc_weight * acc_norm
                + settings.era5_rmse_weight * rmse_norm
            )
    elif skill_norm is not None:
        score = skill_norm
    elif acc_norm is not None:
        score = acc_norm
    elif rmse_norm is not None:
        score = rmse_norm
    else:
        score = 0.0
    return min(1.0, max(0.0, float(score))), ref

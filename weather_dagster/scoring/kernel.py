"""The metric kernel: every latitude-weighted metric of one 2-D field pair in one pass over memory.

Scoring reads ~70 fields per miner-lead and up to 256 miners, so this is the hot path. One compiled
(numba) pass reads the forecast ``f``, truth ``o``, climatology ``c``, reference ``r`` and pattern
field ``p`` once and accumulates in float64 (WEATHER-NOTES: float32 accumulation of anomaly
products loses percents at day 1; we also form ``d = f - o`` directly rather than deriving MSE from
other moments). Each row is summed on its own and then multiplied by that row's weight, because the
weight only depends on latitude.

Definitions (SPEC section 8, defaults reproduce the reference subnet, checked against
Nickel5-Inc/Gaia ``weather_scoring/metrics.py``):

- weights ``w = cos(lat)`` (exactly 0 on the pole rows), normalised over the scored points;
- ``mse, rmse, bias = mean(f - o), mae = mean(|f - o|)`` (weighted);
- bias correction: ``f_bc = f - m`` with ``m`` the *unweighted* spatial mean of ``f - o`` (the
  reference takes a plain ``.mean()`` over lat/lon), so ``mse_bc = mse - 2 m bias + m^2`` exactly;
- skill ``1 - mse_bc / mse(r, o)``; when ``mse(r, o) == 0`` the reference returns 1 if the forecast
  error is 0 too and ``-inf`` otherwise, and so do we;
- ACC: the *centred* weighted Pearson correlation of ``f - c`` and ``o - c`` (xskillscore
  ``pearson_r`` with weights, as the reference); ``acc_definition="uncentred"`` gives WeatherBench 2's;
- pattern correlation: the centred weighted Pearson correlation of ``f`` and ``p`` (Day1 uses the GFS
  forecast as ``p``: its sanity rule; ERA5 uses the truth);
- clone distance: ``mean((f - r)^2)``.

NaN rules: the fast pass assumes finite inputs; if any sum comes out non-finite, a second, masked
pass skips every point where any input is non-finite (what the reference's ``skipna=True`` does) and
renormalises the weights over the points left. No point left: every metric is NaN. A zero variance
makes a correlation NaN (undefined), never 0 or 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numba
import numpy as np

_FASTMATH = {"reassoc", "contract", "arcp"}  # lets reductions vectorise but keeps NaN/inf semantics
N_SUMS = 18
# indices into the sums vector
(W, SD, SDD, SAD, SDU, NU, SA, SB, SAA, SBB, SAB, SEE, SX, SY, SXX, SYY, SXY, SFR) = range(N_SUMS)


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _sums_fast(f, o, c, r, p, wrow, shift):  # pragma: no cover - compiled
    out = np.zeros(N_SUMS)
    nlat, nlon = f.shape
    for i in range(nlat):
        sd = sdd = sad = sa = sb = saa = sbb = sab = see = sx = sy = sxx = syy = sxy = sfr = 0.0
        for j in range(nlon):
            fv = np.float64(f[i, j])
            ov = np.float64(o[i, j])
            cv = np.float64(c[i, j])
            d = fv - ov
            sd += d
            sdd += d * d
            sad += abs(d)
            a = fv - cv
            b = ov - cv
            sa += a
            sb += b
            saa += a * a
            sbb += b * b
            sab += a * b
            rv = np.float64(r[i, j])
            e = rv - ov
            see += e * e
            g = fv - rv
            sfr += g * g
            x = fv - shift
            y = np.float64(p[i, j]) - shift
            sx += x
            sy += y
            sxx += x * x
            syy += y * y
            sxy += x * y
        w = wrow[i]
        out[W] += w * nlon
        out[SD] += w * sd
        out[SDD] += w * sdd
        out[SAD] += w * sad
        out[SDU] += sd
        out[NU] += nlon
        out[SA] += w * sa
        out[SB] += w * sb
        out[SAA] += w * saa
        out[SBB] += w * sbb
        out[SAB] += w * sab
        out[SEE] += w * see
        out[SX] += w * sx
        out[SY] += w * sy
        out[SXX] += w * sxx
        out[SYY] += w * syy
        out[SXY] += w * sxy
        out[SFR] += w * sfr
    return out


@numba.njit(cache=True, nogil=True)
def _sums_masked(f, o, c, r, p, wrow, shift):  # pragma: no cover - compiled
    out = np.zeros(N_SUMS)
    nlat, nlon = f.shape
    for i in range(nlat):
        w = wrow[i]
        for j in range(nlon):
            fv = np.float64(f[i, j])
            ov = np.float64(o[i, j])
            cv = np.float64(c[i, j])
            rv = np.float64(r[i, j])
            pv = np.float64(p[i, j])
            if not (np.isfinite(fv) and np.isfinite(ov) and np.isfinite(cv) and np.isfinite(rv) and np.isfinite(pv)):
                continue
            d = fv - ov
            a = fv - cv
            b = ov - cv
            e = rv - ov
            g = fv - rv
            x = fv - shift
            y = pv - shift
            out[W] += w
            out[SD] += w * d
            out[SDD] += w * d * d
            out[SAD] += w * abs(d)
            out[SDU] += d
            out[NU] += 1.0
            out[SA] += w * a
            out[SB] += w * b
            out[SAA] += w * a * a
            out[SBB] += w * b * b
            out[SAB] += w * a * b
            out[SEE] += w * e * e
            out[SX] += w * x
            out[SY] += w * y
            out[SXX] += w * x * x
            out[SYY] += w * y * y
            out[SXY] += w * x * y
            out[SFR] += w * g * g
    return out


@dataclass(frozen=True)
class FieldMetrics:
    """All metrics of one field; NaN where undefined (see the module docstring)."""

    mse: float
    rmse: float
    bias: float
    mae: float
    mse_bias_corrected: float
    mse_reference: float
    skill: float
    acc: float
    pattern_correlation: float
    clone_distance: float
    n_points: int
    masked: bool  # True when non-finite points were skipped
    # Weighted variances of the forecast and truth anomalies (f - c, o - c): lets a scorer tell a
    # constant anomaly (undefined correlation) from a tiny but real one without another pass.
    forecast_anomaly_variance: float = math.nan
    truth_anomaly_variance: float = math.nan

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def latitude_weights(latitudes: np.ndarray, kind: Literal["cos_lat", "cell_area"] = "cos_lat") -> np.ndarray:
    """Per-row weights (float64, not normalised: the kernel normalises over the scored points).

    ``cos_lat`` is the reference's ``cos(lat)`` with the pole rows exactly 0 (cos(90 deg) is 6e-17 in
    floating point). ``cell_area`` is WeatherBench 2's: ``sin`` of the cell's upper minus lower edge,
    cells clipped at the poles, which differs by <= 1e-5 except on the pole rows.
    """
    lat = np.asarray(latitudes, dtype=np.float64)
    if kind == "cos_lat":
        weights = np.cos(np.deg2rad(lat))
        weights[np.isclose(np.abs(lat), 90.0)] = 0.0
        return np.clip(weights, 0.0, None)
    if kind == "cell_area":
        step = abs(float(lat[1] - lat[0])) if lat.size > 1 else 180.0
        upper = np.clip(lat + step / 2, -90.0, 90.0)
        lower = np.clip(lat - step / 2, -90.0, 90.0)
        return np.abs(np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower)))
    raise ValueError(f"unknown latitude weighting {kind!r}")


def _as_field(array: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    if array.shape != shape:
        raise ValueError(f"{name}: shape {array.shape} differs from the forecast's {shape}")
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def _corr(sx: float, sy: float, sxx: float, syy: float, sxy: float, w: float, centred: bool) -> float:
    if centred:
        mx, my = sx / w, sy / w
        cov = sxy / w - mx * my
        vx = sxx / w - mx * mx
        vy = syy / w - my * my
    else:
        cov, vx, vy = sxy / w, sxx / w, syy / w
    if not (vx > 0.0 and vy > 0.0):
        return math.nan
    return float(min(1.0, max(-1.0, cov / math.sqrt(vx * vy))))


ILL_CONDITIONED = 1e-10  # variance / mean square below this: float64 one-pass moments keep < 1e-6 of it


def _ill_conditioned(sxx: float, sx: float, w: float) -> bool:
    mean_square = sxx / w
    return mean_square > 0.0 and (mean_square - (sx / w) ** 2) <= ILL_CONDITIONED * mean_square


def _corr_two_pass(x: np.ndarray, y: np.ndarray, row_weights: np.ndarray, centred: bool) -> float:
    """Weighted Pearson correlation by the textbook two-pass formula, over the finite points.

    Only used when the one-pass moments cancel (a nearly constant field), so it may be slow. A
    field whose variance is exactly 0 has no correlation: NaN, never a rounding artefact.
    """
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    w = np.broadcast_to(row_weights[:, None], x.shape)
    ok = np.isfinite(x64) & np.isfinite(y64) & (w > 0)
    if not ok.any():
        return math.nan
    x64, y64, w = x64[ok], y64[ok], w[ok] / w[ok].sum()
    if centred and (x64.min() == x64.max() or y64.min() == y64.max()):
        return math.nan  # a constant field: its weighted mean may round, its variance is exactly 0
    if centred:
        x64, y64 = x64 - (w * x64).sum(), y64 - (w * y64).sum()
    vx, vy = (w * x64 * x64).sum(), (w * y64 * y64).sum()
    if not (vx > 0.0 and vy > 0.0):
        return math.nan
    return float(min(1.0, max(-1.0, (w * x64 * y64).sum() / math.sqrt(vx * vy))))


def skill_from_mse(mse_forecast: float, mse_reference: float) -> float:
    """``1 - mse_f / mse_ref`` with the reference's rule for a perfect reference."""
    if not (math.isfinite(mse_forecast) and math.isfinite(mse_reference)):
        return math.nan
    if mse_reference == 0.0:
        return 1.0 if mse_forecast == 0.0 else -math.inf
    return 1.0 - mse_forecast / mse_reference


def metrics_from_sums(
    s: np.ndarray, *, has_climatology: bool, has_reference: bool, centred_acc: bool, masked: bool
) -> FieldMetrics:
    w, n = float(s[W]), int(s[NU])
    if n == 0 or w <= 0.0:
        nan = math.nan
        return FieldMetrics(nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, n, masked, nan, nan)
    mse = max(0.0, s[SDD] / w)
    bias = s[SD] / w
    m = s[SDU] / n  # unweighted mean error: the reference's bias correction
    mse_bc = max(0.0, mse - 2.0 * m * bias + m * m)
    mse_ref = max(0.0, s[SEE] / w) if has_reference else math.nan
    skill = skill_from_mse(mse_bc, mse_ref) if has_reference else math.nan
    acc = _corr(s[SA], s[SB], s[SAA], s[SBB], s[SAB], w, centred_acc) if has_climatology else math.nan
    pattern = _corr(s[SX], s[SY], s[SXX], s[SYY], s[SXY], w, True)
    clone = max(0.0, s[SFR] / w) if has_reference else math.nan
    return FieldMetrics(
        mse=float(mse),
        rmse=math.sqrt(mse),
        bias=float(bias),
        mae=float(s[SAD] / w),
        mse_bias_corrected=float(mse_bc),
        mse_reference=float(mse_ref),
        skill=float(skill),
        acc=acc,
        pattern_correlation=pattern,
        clone_distance=float(clone),
        n_points=n,
        masked=masked,
        forecast_anomaly_variance=float(s[SAA] / w - (s[SA] / w) ** 2) if has_climatology else math.nan,
        truth_anomaly_variance=float(s[SBB] / w - (s[SB] / w) ** 2) if has_climatology else math.nan,
    )


def field_metrics(
    forecast: np.ndarray,
    truth: np.ndarray,
    row_weights: np.ndarray,
    *,
    climatology: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    pattern: np.ndarray | None = None,
    acc_definition: Literal["centred", "uncentred"] = "centred",
) -> FieldMetrics:
    """Every metric of ``forecast`` against ``truth`` on one grid (see the module docstring).

    ``row_weights`` comes from :func:`latitude_weights` (one per row). Without ``climatology`` the ACC
    is NaN; without ``reference`` the skill and clone distance are NaN; without ``pattern`` the
    pattern correlation is taken against the truth.
    """
    # float64 forecasts (an interpolated miner field, as the reference's interp_like returns) are
    # kept: rounding them to float32 would move RMSEs by ~1e-6 relative.
    f = np.ascontiguousarray(forecast)
    if f.dtype not in (np.float32, np.float64):
        f = f.astype(np.float32)
    if f.ndim != 2:
        raise ValueError(f"expected a 2-D field, got shape {f.shape}")
    o = _as_field(truth, f.shape, "truth")
    c = o if climatology is None else _as_field(climatology, f.shape, "climatology")
    r = o if reference is None else _as_field(reference, f.shape, "reference")
    p = o if pattern is None else _as_field(pattern, f.shape, "pattern")
    wrow = np.ascontiguousarray(row_weights, dtype=np.float64)
    if wrow.shape != (f.shape[0],):
        raise ValueError(f"row_weights: expected {f.shape[0]} values, got {wrow.shape}")
    # A shift near the data's level keeps the centred moments of large-valued fields (msl ~ 1e5 Pa)
    # far from cancellation; correlations do not depend on it.
    middle = p[p.shape[0] // 2]
    finite = middle[np.isfinite(middle)]
    shift = float(finite[0]) if finite.size else 0.0
    sums = _sums_fast(f, o, c, r, p, wrow, shift)
    masked = not np.all(np.isfinite(sums))
    if masked:
        sums = _sums_masked(f, o, c, r, p, wrow, shift)
    metrics = metrics_from_sums(
        sums,
        has_climatology=climatology is not None,
        has_reference=reference is not None,
        centred_acc=acc_definition == "centred",
        masked=masked,
    )
    w = float(sums[W])
    if w <= 0.0:
        return metrics
    centred = acc_definition == "centred"
    fixes = {}
    if climatology is not None and (
        _ill_conditioned(sums[SAA], sums[SA], w) or _ill_conditioned(sums[SBB], sums[SB], w)
    ):
        c64 = c.astype(np.float64)
        fixes["acc"] = _corr_two_pass(f.astype(np.float64) - c64, o.astype(np.float64) - c64, wrow, centred)
    if _ill_conditioned(sums[SXX], sums[SX], w) or _ill_conditioned(sums[SYY], sums[SY], w):
        fixes["pattern_correlation"] = _corr_two_pass(f, p, wrow, True)
    return replace(metrics, **fixes) if fixes else metrics


def warm_up() -> None:
    """Compile both passes once (numba caches to disk; the first call in a process still loads)."""
    tiny = np.ones((3, 4), dtype=np.float32)
    field_metrics(tiny, tiny, np.ones(3), climatology=tiny, reference=tiny)
    tiny_nan = tiny.copy()
    tiny_nan[0, 0] = np.nan
    field_metrics(tiny_nan, tiny, np.ones(3), climatology=tiny, reference=tiny)
    field_metrics(tiny_nan.astype(np.float64), tiny, np.ones(3), climatology=tiny, reference=tiny)
    # The other compiled passes of a miner-lead (finiteness before regridding, the ACC rule's std).
    from weather_dagster.scoring.era5_reference import _anomaly_std
    from weather_dagster.scoring.regrid import _has_non_finite

    for array in (tiny, tiny.astype(np.float64)):
        _has_non_finite(array)
        _anomaly_std(array, tiny)

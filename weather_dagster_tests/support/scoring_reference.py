"""Straightforward implementations of the SPEC section 8 formulas, to check the kernel against.

``xarray_metrics`` is what one would write with xarray's ``.weighted()`` (also the benchmark's
baseline); ``numpy_metrics`` is a direct float64 transcription that handles NaN by masking.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr


def xarray_metrics(f: np.ndarray, o: np.ndarray, c: np.ndarray, r: np.ndarray, lat: np.ndarray) -> dict[str, float]:
    dims = ("lat", "lon")
    fa, oa, ca, ra = (xr.DataArray(a, dims=dims, coords={"lat": lat}) for a in (f, o, c, r))
    w = xr.DataArray(np.clip(np.cos(np.deg2rad(lat)), 0, None), dims=("lat",), coords={"lat": lat})
    w = w.where(np.abs(w.lat) < 90, 0.0)
    d = fa - oa
    wd = d.weighted(w)
    mse = float((d**2).weighted(w).mean())
    bias = float(wd.mean())
    mae = float(abs(d).weighted(w).mean())
    fbc = fa - d.mean()
    mse_bc = float(((fbc - oa) ** 2).weighted(w).mean())
    mse_ref = float(((ra - oa) ** 2).weighted(w).mean())
    a, b = fa - ca, oa - ca
    am, bm = a.weighted(w).mean(), b.weighted(w).mean()
    cov = ((a - am) * (b - bm)).weighted(w).mean()
    acc = float(cov / np.sqrt(((a - am) ** 2).weighted(w).mean() * ((b - bm) ** 2).weighted(w).mean()))
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "bias": bias,
        "mae": mae,
        "mse_bias_corrected": mse_bc,
        "skill": 1 - mse_bc / mse_ref,
        "acc": acc,
    }


def numpy_metrics(f, o, c, r, row_weights) -> dict[str, float]:
    with np.errstate(all="ignore"):
        return _numpy_metrics(f, o, c, r, row_weights)


def _numpy_metrics(f, o, c, r, row_weights) -> dict[str, float]:
    f, o, c, r = (np.asarray(x, dtype=np.float64) for x in (f, o, c, r))
    w = np.broadcast_to(np.asarray(row_weights, dtype=np.float64)[:, None], f.shape)
    ok = np.isfinite(f) & np.isfinite(o) & np.isfinite(c) & np.isfinite(r)
    f, o, c, r, w = f[ok], o[ok], c[ok], r[ok], w[ok]
    wn = w / w.sum()
    d = f - o
    fbc = f - d.mean()
    a, b = f - c, o - c
    am, bm = (wn * a).sum(), (wn * b).sum()
    cov = (wn * (a - am) * (b - bm)).sum()
    acc = cov / np.sqrt((wn * (a - am) ** 2).sum() * (wn * (b - bm) ** 2).sum())
    mse = (wn * d**2).sum()
    mse_bc = (wn * (fbc - o) ** 2).sum()
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "bias": (wn * d).sum(),
        "mae": (wn * np.abs(d)).sum(),
        "mse_bias_corrected": mse_bc,
        "skill": 1 - mse_bc / (wn * (r - o) ** 2).sum(),
        "acc": acc,
        "clone_distance": (wn * (f - r) ** 2).sum(),
        "n_points": int(ok.sum()),
    }

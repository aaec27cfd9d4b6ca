"""Layer-thickness weights that combine a variable's pressure levels into one number (SPEC section 8).

Each level stands for the layer between the midpoints to its neighbours; the end levels use half the
gap to their one neighbour. For the 13 standard levels this gives 25 50 50 50 50 75 100 100 100 125
112.5 75 37.5 hPa, normalised to sum 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def layer_thickness(levels_hpa: Sequence[int]) -> np.ndarray:
    """Thickness in hPa of the layer each level represents (levels must be increasing)."""
    p = np.asarray(levels_hpa, dtype=np.float64)
    if p.size < 2 or np.any(np.diff(p) <= 0):
        raise ValueError("need at least 2 strictly increasing pressure levels")
    mid = (p[1:] + p[:-1]) / 2.0
    upper = np.concatenate([[p[0]], mid])  # top edge of each layer (lower pressure)
    lower = np.concatenate([mid, [p[-1]]])
    return lower - upper


def thickness_weights(levels_hpa: Sequence[int]) -> dict[int, float]:
    thickness = layer_thickness(levels_hpa)
    total = float(thickness.sum())
    return {int(level): float(t / total) for level, t in zip(levels_hpa, thickness, strict=True)}


def combine_levels(values: Mapping[int, float], weights: Mapping[int, float]) -> float:
    """Thickness-weighted mean of per-level values, renormalised over the defined ones (NaN if none).

    A level whose metric is undefined (NaN: e.g. a constant field gives no correlation) is left out
    rather than poisoning the variable, and the remaining weights are renormalised; an infinite value
    (a skill of -inf against a perfect reference) is kept and makes the combination infinite.
    """
    total = 0.0
    weight_sum = 0.0
    for level, value in values.items():
        if value is None or math.isnan(value):
            continue
        w = weights[level]
        total += w * value
        weight_sum += w
    return total / weight_sum if weight_sum > 0 else math.nan

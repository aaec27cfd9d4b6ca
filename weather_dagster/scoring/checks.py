"""Verification of one miner field before it is scored (SPEC section 8, ERA5 rules).

Order, per field:
1. any ``|value| > extreme_value_limit`` (inf included) rejects the whole forecast (InvalidDataError);
2. finite coverage below ``min_finite_coverage_reject`` (0.1) rejects the whole forecast;
3. coverage below ``min_finite_coverage_lead`` (0.9985) fails this lead only (:class:`LeadFailed`);
4. the remaining non-finite cells are filled with climatology.

The one-cell seam: non-finite cells on the outer ring of the grid (the two pole rows and the first
and last longitude columns, where regridding and wrap-around produce gaps) do not count against the
coverage; they are filled with climatology like any other gap. Coverage is therefore the finite
fraction of the interior cells. The SPEC leaves the exact seam open; this is the reading that
tolerates exactly one cell at every edge and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from weather_dagster.core.errors import InvalidDataError
from weather_dagster.settings import ScoringSettings


class LeadFailed(Exception):
    """This lead cannot be scored for this miner (coverage too low); earlier leads stand."""

    category = "coverage"


@dataclass(frozen=True)
class FieldCheck:
    coverage: float  # finite fraction of the interior cells
    filled_points: int  # cells (interior or seam) replaced by climatology


def scan(field: np.ndarray, limit: float) -> tuple[int, int, int]:
    """``_scan``'s counts; a field that is all finite and within +-limit (the common case) is told
    apart by one vectorised pass first, ~3x cheaper than the counting one."""
    return (0, 0, 0) if _clean(field, limit) else _scan(field, limit)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
def _clean(field, limit):  # pragma: no cover - compiled
    # ``v * 0`` is 0 for a finite v and NaN otherwise, so a row's sum of them is 0 exactly when the
    # row is finite (reassociation vectorises the sum; no nnan/ninf flag, so NaN stays NaN). The
    # limit is compared in float64, as in ``_scan``.
    nlat, nlon = field.shape
    zero = field.dtype.type(0)
    for i in range(nlat):
        acc = zero
        over = 0
        for j in range(nlon):
            v = field[i, j]
            acc += v * zero
            over += abs(np.float64(v)) > limit
        if acc != 0 or over:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _scan(field, limit):  # pragma: no cover - compiled
    """(values beyond +-limit incl. inf, non-finite interior cells, non-finite cells) in one pass."""
    extreme = 0
    interior = 0
    total = 0
    nlat, nlon = field.shape
    for i in range(nlat):
        edge_row = i == 0 or i == nlat - 1
        for j in range(nlon):
            v = field[i, j]
            if np.isfinite(v):
                if abs(v) > limit:
                    extreme += 1
            else:
                if np.isinf(v):
                    extreme += 1
                total += 1
                if not (edge_row or j == 0 or j == nlon - 1):
                    interior += 1
    return extreme, interior, total


def interior_coverage(field: np.ndarray) -> float:
    interior = field[1:-1, 1:-1]
    if interior.size == 0:
        return float(np.isfinite(field).mean())
    return float(np.count_nonzero(np.isfinite(interior)) / interior.size)


def reject_extremes(field: np.ndarray, label: str, settings: ScoringSettings) -> None:
    """Step 1 alone (InvalidDataError on any ``|value| > extreme_value_limit``, inf included)."""
    extreme, _interior, _bad = scan(np.ascontiguousarray(field, dtype=np.float32), float(settings.extreme_value_limit))
    if extreme:
        raise InvalidDataError(f"{label}: {extreme} values beyond +-{settings.extreme_value_limit:g}")


def check_and_fill(
    field: np.ndarray, climatology: np.ndarray, label: str, settings: ScoringSettings
) -> tuple[np.ndarray, FieldCheck]:
    """The field ready to score (gaps filled) and what was found; raises as the module describes."""
    field = np.ascontiguousarray(field, dtype=np.float32)
    extreme, bad_interior, bad = scan(field, float(settings.extreme_value_limit))
    if extreme:
        raise InvalidDataError(f"{label}: {extreme} values beyond +-{settings.extreme_value_limit:g}")
    if bad == 0:
        return field, FieldCheck(1.0, 0)
    n_interior = max(0, field.shape[0] - 2) * max(0, field.shape[1] - 2)
    coverage = 1.0 - bad_interior / n_interior if n_interior else interior_coverage(field)
    if coverage < settings.min_finite_coverage_reject:
        raise InvalidDataError(f"{label}: finite coverage {coverage:.4f} < {settings.min_finite_coverage_reject}")
    if coverage < settings.min_finite_coverage_lead:
        raise LeadFailed(f"{label}: finite coverage {coverage:.6f} < {settings.min_finite_coverage_lead}")
    filled = np.where(np.isfinite(field), field, climatology).astype(np.float32)
    return filled, FieldCheck(coverage, int(bad))

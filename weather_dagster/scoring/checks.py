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


def interior_coverage(field: np.ndarray) -> float:
    interior = field[1:-1, 1:-1]
    if interior.size == 0:
        return float(np.isfinite(field).mean())
    return float(np.count_nonzero(np.isfinite(interior)) / interior.size)


def check_and_fill(
    field: np.ndarray, climatology: np.ndarray, label: str, settings: ScoringSettings
) -> tuple[np.ndarray, FieldCheck]:
    """The field ready to score (gaps filled) and what was found; raises as the module describes."""
    with np.errstate(invalid="ignore"):
        extreme = np.abs(field) > settings.extreme_value_limit
    if np.any(extreme):
        raise InvalidDataError(
            f"{label}: {int(np.count_nonzero(extreme))} values beyond +-{settings.extreme_value_limit:g}"
        )
    finite = np.isfinite(field)
    if finite.all():
        return field, FieldCheck(1.0, 0)
    coverage = interior_coverage(field)
    if coverage < settings.min_finite_coverage_reject:
        raise InvalidDataError(f"{label}: finite coverage {coverage:.4f} < {settings.min_finite_coverage_reject}")
    if coverage < settings.min_finite_coverage_lead:
        raise LeadFailed(f"{label}: finite coverage {coverage:.6f} < {settings.min_finite_coverage_lead}")
    filled = np.where(finite, field, climatology).astype(np.float32)
    return filled, FieldCheck(coverage, int(finite.size - np.count_nonzero(finite)))

"""Scoring profiles: ``reference`` reproduces deployed Gaia v2.9.96, ``corrected`` scores as intended.

Validators of one subnet must compute the same numbers or lose consensus trust, so the default
(``reference``) reproduces what a validator running Nickel5-Inc/Gaia v2.9.96 (commit b3c98e0) with
its pinned packages computes today, accidents included. Each accident is one named switch below,
so an operator can read exactly what is reproduced; ``corrected`` turns every one of them off (the
formulas of SPEC section 8 as a mathematician would read them). The switches are not settable one
by one: a validator mixing them would agree with nobody.

Paths cited are in Gaia v2.9.96; ``WT`` = ``gaia/tasks/defined_tasks/weather``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

ProfileName = Literal["reference", "corrected"]


@dataclass(frozen=True)
class ScoringQuirks:
    """Deviations of the deployed reference from the clean formulas (True = reproduce it)."""

    # ERA5: ``calculate_mse_skill_score_by_pressure_level`` does not rechunk dask inputs that
    # ``interp_like`` split along latitude; the error is caught, ``{}`` returned and ``nan_to_num``
    # makes every level's skill 0 - unless edge salvage turned the arrays into numpy first.
    pressure_level_skill_lost_on_dask: bool = True
    # ERA5 and Day1: ``interp_like`` runs even when the grids are identical, so each NaN cell spreads
    # to its neighbours before the coverage check.
    interp_like_always: bool = True
    # ERA5: the climatology gap fill looks for dimension ``level`` on data that has ``pressure_level``
    # and silently does nothing: pressure-level gaps are skipped (NaN-skipping metrics), not filled.
    clim_fill_skips_pressure_levels: bool = True
    # ERA5: the edge seam is filled by copying the neighbouring row / column, not climatology.
    edge_seam_copies_neighbour: bool = True
    # Interpolation from a coarser grid does not wrap around in longitude.
    interp_not_periodic: bool = True
    # Day1: no gap fill and no coverage gate; NaN points are skipped by the metrics, each metric
    # over its own pair of inputs (``xs.mse``/``xs.pearson_r`` with ``skipna=True``,
    # ``WT/weather_scoring_mechanism.py`` ~2274, ``WT/weather_scoring/metrics.py``): the skill's GFS
    # MSE keeps every point the GFS forecast has, whatever the miner left out.
    day1_skips_nan: bool = True
    # Day1: no extreme-value check either: finite values of any size are scored; an infinity makes
    # the clone distance infinite and the pattern correlation undefined (NaN), so the variable fails
    # sanity and is left out instead of rejecting the forecast.
    day1_no_extreme_check: bool = True
    # Day1: the deployed config has no climatology bounds (``WT/pipeline/steps/day1_step.py``
    # ~195-207 never passes ``day1_climatology_bounds``), so no bounds check runs.
    day1_no_climatology_bounds: bool = True
    # Day1: variables that fail sanity do not enter the strict clone clamp (only variables scored
    # with status "success" keep their clone distance, ``weather_scoring_mechanism.py`` ~3211).
    day1_failed_sanity_skips_strict_clamp: bool = True
    # Day1: units are guessed before scoring (``weather_scoring_mechanism.py`` ~2038-2078): a miner
    # z with mean < 1e4 while the truth's is > 4e4 is multiplied by 9.80665, a 2t with mean < 100
    # (truth > 200) gets +273.15, an msl with mean < 2000 (truth > 5e4) is multiplied by 100.
    day1_unit_autoconversion: bool = True
    # ERA5: an undefined surface ACC fails the miner's whole lead; an ACC error on an atmospheric
    # variable drops that variable's ACC and skill.
    undefined_acc_fails_or_drops: bool = True
    # ERA5: the extreme-value guard (|value| > 1e12 -> verification failed, ~3262) boolean-indexes the
    # computed *DataArray* with a 2-D mask; xarray raises, the error is swallowed and the check never
    # runs. Extreme values are scored (their skill clamps to 0, their RMSE dominates the median).
    extreme_value_check_skipped: bool = True
    # Weights: the node query has no coldkey, so the coldkey down-weighting never applies.
    coldkey_penalty_inert: bool = True
    # Round vector: winner ties are exact float equality.
    exact_winner_ties: bool = True

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


REFERENCE = ScoringQuirks()
CORRECTED = ScoringQuirks(**{f.name: False for f in fields(ScoringQuirks)})
PROFILES: dict[str, ScoringQuirks] = {"reference": REFERENCE, "corrected": CORRECTED}

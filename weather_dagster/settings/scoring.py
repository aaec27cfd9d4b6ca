"""Scoring settings (SPEC section 8). Defaults reproduce the reference subnet's scoring exactly.

Changing any of these makes this validator score differently from the rest of the subnet, which
costs consensus trust: the switches exist for experiments and for a subnet-wide upgrade.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from weather_dagster.scored_fields import (
    ATMOSPHERIC_VARIABLES,
    DAY1_VARIABLES,
    PRESSURE_LEVELS_HPA,
    SURFACE_VARIABLES,
)
from weather_dagster.settings._base import SettingsSection
from weather_dagster.settings.profile import PROFILES, ProfileName, ScoringQuirks


class ScoringSettings(SettingsSection):
    # ``reference`` (default): what deployed Gaia v2.9.96 computes; ``corrected``: the intended formulas.
    profile: ProfileName = "reference"
    pressure_levels_hpa: tuple[int, ...] = PRESSURE_LEVELS_HPA
    surface_variables: tuple[str, ...] = SURFACE_VARIABLES
    atmospheric_variables: tuple[str, ...] = ATMOSPHERIC_VARIABLES

    # Day1 against the GFS analysis, with the GFS forecast as reference.
    day1_lead_hours: tuple[int, ...] = (12,)
    day1_variables: tuple[str, ...] = DAY1_VARIABLES
    clone_delta: dict[str, float] = Field(
        default_factory=lambda: {"2t": 0.0025, "msl": 400.0, "10u": 0.01, "10v": 0.01, "z500": 100.0}
    )
    sanity_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "2t": (180.0, 340.0),
            "msl": (90_000.0, 110_000.0),
            "z500": (45_000.0, 60_000.0),
        }
    )
    min_pattern_correlation: float = Field(0.3, ge=-1.0, le=1.0)
    day1_skill_weight: float = Field(0.6, ge=0.0, le=1.0)
    day1_acc_weight: float = Field(0.4, ge=0.0, le=1.0)
    day1_clone_clamp: float = Field(0.05, ge=0.0, le=1.0)
    day1_strict_clone_factor: float = Field(0.5, ge=0.0, le=1.0)
    day1_pass_threshold: float = Field(0.1, ge=0.0, le=1.0)

    # ERA5 per lead.
    era5_lead_hours: tuple[int, ...] = tuple(range(24, 241, 24))
    era5_truth_delay_hours: float = Field(5 * 24 + 6, ge=0.0, le=90 * 24)
    extreme_value_limit: float = Field(1e12, gt=0.0)
    min_finite_coverage_reject: float = Field(0.1, ge=0.0, le=1.0)
    min_finite_coverage_lead: float = Field(0.9985, ge=0.0, le=1.0)
    era5_skill_weight: float = Field(0.6, ge=0.0, le=1.0)
    era5_acc_weight: float = Field(0.3, ge=0.0, le=1.0)
    era5_rmse_weight: float = Field(0.1, ge=0.0, le=1.0)
    # "reference_median": the reference's per-miner middle RMSE (mixes units; default for consensus).
    # "climatology": RMSE normalised per variable by the climatology RMSE (unit-consistent).
    rmse_normalisation: Literal["reference_median", "climatology"] = "reference_median"
    # "cos_lat" (reference) or "cell_area" (WeatherBench 2); "centred" (reference) or "uncentred" ACC.
    latitude_weighting: Literal["cos_lat", "cell_area"] = "cos_lat"
    acc_definition: Literal["centred", "uncentred"] = "centred"

    # Round score.
    round_era5_weight: float = Field(0.95, ge=0.0, le=1.0)
    round_day1_weight: float = Field(0.05, ge=0.0, le=1.0)
    winner_bonus: float = Field(0.05, ge=0.0, le=1.0)
    winner_min_score: float = Field(0.7, ge=0.0, le=1.1)
    winner_max_ties: int = Field(2, ge=1, le=256)
    round_vector_clip: float = Field(1.1, ge=1.0, le=2.0)

    # Weights.
    weights_window_days: int = Field(15, ge=1, le=365)
    sigmoid_b: float = Field(70.0, gt=0.0)
    sigmoid_q: float = Field(8.0, gt=0.0)
    sigmoid_v: float = Field(0.3, gt=0.0)
    sigmoid_k: float = Field(0.98, gt=0.0)
    sigmoid_a: float = Field(0.0, ge=0.0)
    sigmoid_percentile: float = Field(80.0, ge=0.0, le=100.0)
    linear_norm_share: float = Field(0.01, ge=0.0, le=1.0)
    min_coefficient_of_variation: float = Field(0.03, ge=0.0, le=10.0)
    low_cv_exponent: float = Field(1.3, gt=0.0)
    # validator.py ~5455: with nothing positive, all weight goes to uid 252.
    fallback_uid: int = Field(252, ge=0, le=255)
    # The reference scales miners to 25% and gives 75% to the uid of a burn hotkey
    # (``gaia/validator/weights/burn.py``: BURN_MINER_EMISSION, BURN_RATE, BURN_HOTKEY defaults); on by default.
    burn_enabled: bool = True
    # The burn goes to the uid that holds this hotkey in the metagraph; ``burn_uid`` when none does.
    burn_hotkey: str = "5GmhjCqDTsRcKqPFw4FDig8tVBfFGNrwP8ywe5En5hnELwDQ"
    burn_uid: int = Field(0, ge=0, le=255)
    burn_share: float = Field(0.75, ge=0.0, le=1.0)
    # The reference down-weights coldkeys owning >= 3 hotkeys by 1 - (n - 3) * 0.8 / 7 (0 from 10).
    coldkey_penalty_enabled: bool = True
    coldkey_penalty_min_hotkeys: int = Field(3, ge=1, le=256)
    coldkey_penalty_zero_at: int = Field(10, ge=2, le=256)
    coldkey_penalty_max_reduction: float = Field(0.8, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> ScoringSettings:
        levels = list(self.pressure_levels_hpa)
        if levels != sorted(levels) or len(set(levels)) != len(levels) or len(levels) < 2:
            raise ValueError("pressure_levels_hpa: must be at least 2 distinct levels in increasing order")
        if any(lead <= 0 or lead % 6 for lead in self.era5_lead_hours + self.day1_lead_hours):
            raise ValueError("lead hours must be positive multiples of 6")
        for name in self.day1_variables:
            if name not in self.clone_delta:
                raise ValueError(f"clone_delta: missing a delta for Day1 variable {name!r}")
        if self.coldkey_penalty_zero_at <= self.coldkey_penalty_min_hotkeys:
            raise ValueError("coldkey_penalty_zero_at: must be greater than coldkey_penalty_min_hotkeys")
        return self

    @property
    def quirks(self) -> ScoringQuirks:
        """The switches of the profile in force (``settings.profile``)."""
        return PROFILES[self.profile]

    @property
    def era5_variables(self) -> tuple[str, ...]:
        return self.surface_variables + self.atmospheric_variables

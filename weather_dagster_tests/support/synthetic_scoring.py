"""Scoring inputs from the synthetic atmosphere, for tests and benchmarks (not shipped in the package).

Thin adapters over ``SyntheticAtmosphere`` implementing the field interfaces; a miner's forecast is
the truth with a phase shift and noise growing with lead (its skill), or a deliberate misbehaviour
(a clone of the GFS forecast, injected NaNs, extreme values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from weather_dagster.reference.grid import CoordinateGrid, Grid
from weather_dagster.reference.synthetic.atmosphere import SyntheticAtmosphere
from weather_dagster.scoring.day1 import Day1Result, score_day1
from weather_dagster.scoring.inputs import TruthKind
from weather_dagster.settings import ScoringSettings


@dataclass(frozen=True)
class SyntheticTruth:
    atmosphere: SyntheticAtmosphere

    @property
    def grid(self) -> Grid:
        return self.atmosphere.grid

    def field(self, variable: str, level_hpa: int | None, valid_time: datetime) -> np.ndarray:
        return self.atmosphere.field(variable, level_hpa, valid_time)


@dataclass(frozen=True)
class SyntheticGfsForecast:
    atmosphere: SyntheticAtmosphere
    init_time: datetime

    @property
    def grid(self) -> Grid:
        return self.atmosphere.grid

    def field(self, variable: str, level_hpa: int | None, valid_time: datetime) -> np.ndarray:
        lead = round((valid_time - self.init_time).total_seconds() / 3600)
        return self.atmosphere.gfs_forecast(variable, level_hpa, self.init_time, lead)


@dataclass(frozen=True)
class SyntheticClimatology:
    atmosphere: SyntheticAtmosphere

    @property
    def grid(self) -> Grid:
        return self.atmosphere.grid

    def field(self, variable: str, level_hpa: int | None, day_of_year: int, hour: int) -> np.ndarray:
        return self.atmosphere.climatology(variable, level_hpa, day_of_year, hour)


@dataclass(frozen=True)
class MinerProfile:
    """How a synthetic miner behaves: skill per day of lead, or one misbehaviour."""

    phase_deg_per_day: float = 1.0
    noise_per_day: float = 0.05
    mode: str = "skill"  # skill | gfs_clone | nan | extreme | truth
    nan_fraction: float = 0.0
    seed: int = 0
    # Serve Aurora's layout: the last (south-pole) latitude row cropped, as real miners' stores are.
    crop_south_row: bool = False


@dataclass(frozen=True)
class SyntheticForecast:
    atmosphere: SyntheticAtmosphere
    init_time: datetime
    profile: MinerProfile = MinerProfile()
    grid_override: Grid | None = None

    @property
    def grid(self) -> Grid | CoordinateGrid:
        grid = self.grid_override or self.atmosphere.grid
        if self.profile.crop_south_row:
            return CoordinateGrid(grid.latitudes[:-1].astype(np.float32), grid.longitudes)
        return grid

    def field(self, variable: str, level_hpa: int | None, lead_hours: int) -> np.ndarray:
        atmosphere = self.atmosphere if self.grid_override is None else SyntheticAtmosphere(self.grid_override)
        valid = self.init_time + timedelta(hours=lead_hours)
        p = self.profile
        if p.mode == "gfs_clone":
            values = atmosphere.gfs_forecast(variable, level_hpa, self.init_time, lead_hours)
        elif p.mode == "truth":
            values = atmosphere.field(variable, level_hpa, valid)
        else:
            days = lead_hours / 24.0
            values = atmosphere.field(
                variable,
                level_hpa,
                valid,
                phase_shift_deg=p.phase_deg_per_day * days,
                noise=p.noise_per_day * days,
                noise_seed=("miner", p.seed),
            )
        if p.mode == "nan" and p.nan_fraction > 0:
            values = values.copy()
            rng = np.random.default_rng(p.seed)
            values[rng.random(values.shape) < p.nan_fraction] = np.nan
        if p.mode == "extreme":
            values = values.copy()
            values[values.shape[0] // 2, values.shape[1] // 2] = 1e13
        return values[:-1] if p.crop_south_row else values


@dataclass
class SyntheticScoringInputs:
    """``ScoringInputs`` over one synthetic atmosphere; miners' behaviour chosen per uid."""

    grid: Grid
    profiles: Mapping[int, MinerProfile] = field(default_factory=dict)
    forecast_inits: dict[tuple[int, int, str], datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.atmosphere = SyntheticAtmosphere(self.grid)

    def truth(self, kind: TruthKind, init_time: datetime) -> SyntheticTruth | SyntheticGfsForecast:
        if kind == "gfs_forecast":
            return SyntheticGfsForecast(self.atmosphere, init_time)
        return SyntheticTruth(self.atmosphere)

    def climatology(self) -> SyntheticClimatology:
        return SyntheticClimatology(self.atmosphere)

    def day1(self, forecast: SyntheticForecast, init_time: datetime, settings: ScoringSettings) -> Day1Result:
        """Day1 of one forecast against this atmosphere's GFS analysis, GFS forecast and climatology."""
        return score_day1(
            forecast,
            self.truth("gfs_analysis", init_time),
            self.truth("gfs_forecast", init_time),
            self.climatology(),
            init_time,
            settings,
        )

    def register(self, run_id: int, uid: int, hotkey: str, init_time: datetime) -> None:
        self.forecast_inits[(run_id, uid, hotkey)] = init_time

    def forecast(self, run_id: int, uid: int, hotkey: str) -> SyntheticForecast:
        init = self.forecast_inits[(run_id, uid, hotkey)]
        return SyntheticForecast(self.atmosphere, init, self.profiles.get(uid, MinerProfile(seed=uid)))

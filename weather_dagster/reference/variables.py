"""The scored variables, their units and their names in each source; one table, used everywhere.

Plausible ranges are *source sanity* bounds: wide enough that no real weather ever leaves them, so a
value outside means broken data (wrong units, a decoding fault), never a storm. Reasoning per variable:

- temperatures 150..350 K: the coldest air anywhere (polar stratosphere, ~175 K) and the hottest
  surface (56.7 C = 330 K, Death Valley) with margin; ERA5 and GFS extrapolate below-ground levels
  from the surface with a standard lapse rate, which stays inside this too.
- winds +-150 m/s at 10 m and +-250 m/s aloft: jet cores reach ~110 m/s, surface gusts ~113 m/s.
- specific humidity -1e-4..0.05 kg/kg: saturation at a 35 C dew point is ~0.037; packing noise
  gives tiny negative values.
- mean sea level pressure 850..1120 hPa: records 870 hPa (Typhoon Tip) and 1084 hPa (Agata,
  reduced to sea level); reductions over high terrain (Tibet, Antarctica) run higher still.
- geopotential per pressure level, from the hypsometric equation z(p) = R_d * T * ln(p_s / p)
  with the sea-level pressure p_s anywhere in the msl range above and the mean layer temperature
  T anywhere in 170..330 K. A level below the surface (1000 hPa in a 930 hPa low: z ~ -6000 m2 s-2)
  is then allowed down to ~-15400 m2 s-2, which a fixed -5000 rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from weather_dagster.scored_fields import ATMOSPHERIC_VARIABLES, PRESSURE_LEVELS_HPA, SURFACE_VARIABLES

__all__ = [
    "ATMOSPHERIC_VARIABLES",
    "PRESSURE_LEVELS_HPA",
    "SURFACE_VARIABLES",
    "VARIABLES",
    "Variable",
    "geopotential_range",
    "plausible_range",
    "split_level_name",
]
GRAVITY = 9.80665  # z = gh x g, with g exactly this (not 9.81)
R_DRY = 287.05  # J kg-1 K-1, gas constant of dry air
MSL_RANGE_PA = (85_000.0, 112_000.0)
LAYER_TEMPERATURE_RANGE_K = (170.0, 330.0)


@dataclass(frozen=True)
class Variable:
    name: str  # canonical short name, as in miner forecasts
    units: str
    atmospheric: bool  # has a pressure_level dimension
    era5_name: str  # ARCO ERA5 / WeatherBench 2 climatology name
    grib_short_name: str  # name cfgrib gives the GFS message
    grib_type_of_level: str
    grib_level: int | None
    idx_name: str  # variable field of a GFS .idx line
    plausible_range: tuple[float, float]  # a loose physical range, for source sanity checks (all levels)


# One row per name of ``scored_fields`` (surface first, then atmospheric; test_settings checks it).
VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable("2t", "K", False, "2m_temperature", "t2m", "heightAboveGround", 2, "TMP", (150.0, 350.0)),
        Variable("10u", "m s-1", False, "10m_u_component_of_wind", "u10", "heightAboveGround", 10, "UGRD", (-150, 150)),
        Variable("10v", "m s-1", False, "10m_v_component_of_wind", "v10", "heightAboveGround", 10, "VGRD", (-150, 150)),
        Variable("msl", "Pa", False, "mean_sea_level_pressure", "prmsl", "meanSea", None, "PRMSL", MSL_RANGE_PA),
        Variable("t", "K", True, "temperature", "t", "isobaricInhPa", None, "TMP", (150.0, 350.0)),
        Variable("u", "m s-1", True, "u_component_of_wind", "u", "isobaricInhPa", None, "UGRD", (-250.0, 250.0)),
        Variable("v", "m s-1", True, "v_component_of_wind", "v", "isobaricInhPa", None, "VGRD", (-250.0, 250.0)),
        Variable("q", "kg kg-1", True, "specific_humidity", "q", "isobaricInhPa", None, "SPFH", (-1e-4, 0.05)),
        # GFS gives geopotential height (gh, gpm); canonical z is geopotential (m2 s-2).
        Variable(
            "z", "m2 s-2", True, "geopotential", "gh", "isobaricInhPa", None, "HGT", (-16000.0, 300000.0)
        ),  # union of geopotential_range
    )
}


def split_level_name(name: str) -> tuple[str, int | None]:
    """'z500' -> ('z', 500); '2t' -> ('2t', None). Used for Day1 variable lists."""
    if name in VARIABLES:
        return name, None
    for base in ATMOSPHERIC_VARIABLES:
        if name.startswith(base) and name[len(base) :].isdigit():
            return base, int(name[len(base) :])
    raise KeyError(f"unknown variable {name!r}")


def geopotential_range(level_hpa: float) -> tuple[float, float]:
    """Bounds of z (m2 s-2) at one pressure level, from the hypsometric equation (module docstring).

    Above the lowest possible surface (p < p_s) the thickness is positive and smallest for the cold
    extreme; below it (a level underground) it is negative and most negative for the warm extreme.
    """
    p = float(level_hpa) * 100.0
    (ps_low, ps_high), (t_cold, t_warm) = MSL_RANGE_PA, LAYER_TEMPERATURE_RANGE_K
    low_ratio, high_ratio = math.log(ps_low / p), math.log(ps_high / p)
    low = R_DRY * (t_cold if low_ratio > 0 else t_warm) * low_ratio
    high = R_DRY * (t_warm if high_ratio > 0 else t_cold) * high_ratio
    return low, high


def plausible_range(variable: str, level_hpa: int | None) -> tuple[float, float]:
    """The sanity bounds of one field: per level for geopotential, per variable for the rest."""
    if variable == "z" and level_hpa is not None:
        return geopotential_range(level_hpa)
    return VARIABLES[variable].plausible_range

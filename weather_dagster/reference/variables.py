"""The scored variables, their units and their names in each source; one table, used everywhere."""

from __future__ import annotations

from dataclasses import dataclass

PRESSURE_LEVELS_HPA: tuple[int, ...] = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
GRAVITY = 9.80665  # z = gh x g, with g exactly this (not 9.81)


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
    plausible_range: tuple[float, float]  # a loose physical range, for source sanity checks


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable("2t", "K", False, "2m_temperature", "t2m", "heightAboveGround", 2, "TMP", (150.0, 350.0)),
        Variable("10u", "m s-1", False, "10m_u_component_of_wind", "u10", "heightAboveGround", 10, "UGRD", (-150, 150)),
        Variable("10v", "m s-1", False, "10m_v_component_of_wind", "v10", "heightAboveGround", 10, "VGRD", (-150, 150)),
        Variable("msl", "Pa", False, "mean_sea_level_pressure", "prmsl", "meanSea", None, "PRMSL", (85000.0, 110000.0)),
        Variable("t", "K", True, "temperature", "t", "isobaricInhPa", None, "TMP", (150.0, 350.0)),
        Variable("u", "m s-1", True, "u_component_of_wind", "u", "isobaricInhPa", None, "UGRD", (-250.0, 250.0)),
        Variable("v", "m s-1", True, "v_component_of_wind", "v", "isobaricInhPa", None, "VGRD", (-250.0, 250.0)),
        Variable("q", "kg kg-1", True, "specific_humidity", "q", "isobaricInhPa", None, "SPFH", (-1e-4, 0.05)),
        # GFS gives geopotential height (gh, gpm); canonical z is geopotential (m2 s-2).
        Variable("z", "m2 s-2", True, "geopotential", "gh", "isobaricInhPa", None, "HGT", (-5000.0, 250000.0)),
    )
}
SURFACE_VARIABLES = tuple(n for n, v in VARIABLES.items() if not v.atmospheric)
ATMOSPHERIC_VARIABLES = tuple(n for n, v in VARIABLES.items() if v.atmospheric)


def split_level_name(name: str) -> tuple[str, int | None]:
    """'z500' -> ('z', 500); '2t' -> ('2t', None). Used for Day1 variable lists."""
    if name in VARIABLES:
        return name, None
    for base in ATMOSPHERIC_VARIABLES:
        if name.startswith(base) and name[len(base) :].isdigit():
            return base, int(name[len(base) :])
    raise KeyError(f"unknown variable {name!r}")

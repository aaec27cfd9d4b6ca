"""The names of the scored fields, written once: pressure levels and the variable sets.

A leaf module (no imports from the package) so that the settings (their defaults), the reference
data (its per-variable table in ``reference/variables.py``, the synthetic sources) and the demo
miners all read the same lists without importing each other. The scoring kernel never reads these
constants: it takes the lists from ``Settings.scoring``, whose defaults are these.
"""

from __future__ import annotations

# The 13 standard pressure levels of ERA5/WeatherBench 2 and of the reference validator, increasing.
PRESSURE_LEVELS_HPA: tuple[int, ...] = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
# Single-level fields, in the order miners' stores and the reference list them.
SURFACE_VARIABLES: tuple[str, ...] = ("2t", "10u", "10v", "msl")
# Fields with a pressure_level dimension.
ATMOSPHERIC_VARIABLES: tuple[str, ...] = ("t", "u", "v", "q", "z")
ERA5_VARIABLES: tuple[str, ...] = SURFACE_VARIABLES + ATMOSPHERIC_VARIABLES
# Day1 scores these against the GFS analysis (an atmospheric name carries its level: z500).
DAY1_VARIABLES: tuple[str, ...] = ("2t", "msl", "10u", "10v", "z500")

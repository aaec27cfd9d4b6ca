"""A deterministic synthetic atmosphere with plausible magnitudes, gradients and time evolution.

It is the truth behind every offline run: the synthetic GFS/ERA5/climatology files, and the demo
miners' forecasts (truth with a controllable, lead-growing error). Fields are analytic functions of
(latitude, longitude, pressure, time), so any grid, any valid time and any process agree exactly.

- climatology: a seasonal and diurnal mean state (what ``climatology`` returns);
- weather: travelling, slowly meandering waves added on top (what ``field`` returns);
- forecast error: a phase shift of the waves plus smooth deterministic noise, both chosen by the
  caller (demo miners grow them with lead; a GFS forecast uses a small one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import xarray as xr

from weather_dagster.reference.grid import Grid
from weather_dagster.reference.variables import GRAVITY, PRESSURE_LEVELS_HPA, VARIABLES

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_WAVES = ((3, 10.0, 1.0), (5, 13.0, 0.6), (7, 8.0, 0.35))  # (zonal wavenumber, speed deg/day, weight)
_WEATHER_AMPLITUDE = {"2t": 4.0, "msl": 1200.0, "10u": 5.0, "10v": 5.0, "t": 3.0, "z": 900.0, "u": 8.0, "v": 6.0}
_PHASE = {name: i * 0.7 for i, name in enumerate(VARIABLES)}


def _days(valid_time: datetime) -> float:
    return (valid_time - EPOCH).total_seconds() / 86400.0


def _stable_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


@dataclass(frozen=True)
class SyntheticAtmosphere:
    grid: Grid

    # -- geometry -----------------------------------------------------------------------------------

    def _mesh(self) -> tuple[np.ndarray, np.ndarray]:
        phi = np.deg2rad(self.grid.latitudes)[:, None]
        lam = np.deg2rad(self.grid.longitudes)[None, :]
        return phi, lam

    # -- the mean state -----------------------------------------------------------------------------

    def _climate(self, variable: str, level: int | None, doy: float, hour: float) -> np.ndarray:
        phi, lam = self._mesh()
        season = np.cos(2 * np.pi * (doy - 200.0) / 365.25)
        cos_phi = np.cos(phi)
        t_surface = (
            250.0
            + 50.0 * cos_phi**1.5
            + 10.0 * season * np.sin(phi)
            + 3.0 * np.cos(lam + 2 * np.pi * hour / 24.0 - np.pi) * cos_phi
            + 4.0 * np.sin(2 * lam) * np.cos(3 * phi)
        )
        u_surface = 7.0 * np.sin(3 * phi) ** 2 - 4.0 * cos_phi**4 + 0.0 * lam
        v_surface = 2.0 * np.sin(2 * phi) * np.cos(lam)
        if variable == "2t":
            return t_surface
        if variable == "msl":
            return 101325.0 + 800.0 * np.cos(2 * phi) + 500.0 * np.sin(lam) * cos_phi**2 - 300 * season * np.sin(phi)
        if variable == "10u":
            return u_surface
        if variable == "10v":
            return v_surface
        if level is None:
            raise ValueError(f"{variable} needs a pressure level")
        p = float(level)
        height_km = 7.0 * np.log(1013.25 / p)
        if variable == "t":
            return np.maximum(t_surface - 6.5 * height_km, 205.0 + 8.0 * cos_phi + 0.0 * lam)
        if variable == "z":
            scale_height = 7600.0 + 600.0 * cos_phi**2 + 40.0 * season * np.sin(phi)
            return GRAVITY * scale_height * np.log(1013.25 / p) + 0.0 * lam
        if variable == "u":
            jet = 25.0 * (
                np.exp(-(((np.rad2deg(phi) - 40.0) / 10.0) ** 2)) + np.exp(-(((np.rad2deg(phi) + 45.0) / 10.0) ** 2))
            )
            return u_surface * (1.0 + 2.0 * (1.0 - p / 1000.0)) + jet * np.exp(-(((p - 250.0) / 150.0) ** 2))
        if variable == "v":
            return v_surface * (1.0 + (1.0 - p / 1000.0))
        if variable == "q":
            return 0.018 * cos_phi**3 * (p / 1000.0) ** 3 + 1e-6 + 0.0 * lam
        raise KeyError(f"unknown variable {variable!r}")

    def _weather(self, variable: str, level: int | None, days: float, phase_shift_deg: float) -> np.ndarray:
        phi, lam = self._mesh()
        meander = 0.3 * np.sin(2 * np.pi * days / 17.0)
        envelope = np.sin(2 * phi) ** 2 + 0.2
        shift = np.deg2rad(phase_shift_deg)
        waves = sum(
            weight * np.cos(k * (lam - np.deg2rad(speed) * days - shift) + _PHASE[variable] + meander * k)
            for k, speed, weight in _WAVES
        )
        scale = 1.0 if level is None else 1.0 + (1.0 - level / 1000.0)
        return _WEATHER_AMPLITUDE.get(variable, 0.0) * scale * envelope * waves

    def _noise(self, variable: str, level: int | None, amplitude: float, seed: object) -> np.ndarray:
        phi, lam = self._mesh()
        rng = np.random.default_rng(_stable_seed(variable, level, seed))
        total = np.zeros(self.grid.shape)
        for _ in range(6):
            k, m = rng.integers(1, 12), rng.integers(1, 8)
            total = total + np.cos(k * lam + rng.uniform(0, 2 * np.pi)) * np.cos(m * phi + rng.uniform(0, 2 * np.pi))
        return amplitude * total / np.sqrt(6.0 / 4.0)

    # -- public -------------------------------------------------------------------------------------

    def climatology(self, variable: str, level_hpa: int | None, day_of_year: int, hour: int) -> np.ndarray:
        return self._finish(variable, self._climate(variable, level_hpa, float(day_of_year), float(hour)))

    def field(
        self,
        variable: str,
        level_hpa: int | None,
        valid_time: datetime,
        *,
        phase_shift_deg: float = 0.0,
        noise: float = 0.0,
        noise_seed: object = 0,
    ) -> np.ndarray:
        """Truth at ``valid_time``; ``phase_shift_deg`` and ``noise`` (in weather-amplitude units) make
        a forecast of chosen skill. Always float32 on the canonical grid."""
        doy = valid_time.timetuple().tm_yday
        hour = valid_time.hour + valid_time.minute / 60.0
        values = self._climate(variable, level_hpa, float(doy), hour) + self._weather(
            variable, level_hpa, _days(valid_time), phase_shift_deg
        )
        if noise:
            amplitude = noise * _WEATHER_AMPLITUDE.get(variable, 0.0)
            if variable == "q":
                amplitude = noise * 0.002 * (1.0 if level_hpa is None else level_hpa / 1000.0)
            values = values + self._noise(variable, level_hpa, amplitude, (noise_seed, valid_time.isoformat()))
        return self._finish(variable, values)

    def gfs_forecast(self, variable: str, level_hpa: int | None, init_time: datetime, lead_hours: int) -> np.ndarray:
        """The synthetic GFS forecast: truth at init + lead with a small error growing with lead.

        One definition serves the synthetic GRIB2 files and the demo miner that clones GFS, so a clone
        is exactly as close to the reference as a real copy would be.
        """
        return self.field(
            variable,
            level_hpa,
            init_time + timedelta(hours=lead_hours),
            phase_shift_deg=0.05 * lead_hours,
            noise=0.002 * lead_hours,
            noise_seed="gfs",
        )

    @staticmethod
    def _finish(variable: str, values: np.ndarray) -> np.ndarray:
        if variable == "q":
            values = np.maximum(values, 0.0)
        return np.ascontiguousarray(values, dtype=np.float32)

    def dataset(
        self,
        valid_time: datetime,
        variables: tuple[str, ...] = tuple(VARIABLES),
        levels: tuple[int, ...] = PRESSURE_LEVELS_HPA,
    ) -> xr.Dataset:
        """All fields at one valid time as a canonical dataset (dims pressure_level, lat, lon)."""
        data_vars = {}
        for name in variables:
            if VARIABLES[name].atmospheric:
                stack = np.stack([self.field(name, level, valid_time) for level in levels])
                data_vars[name] = (("pressure_level", "lat", "lon"), stack, {"units": VARIABLES[name].units})
            else:
                data_vars[name] = (("lat", "lon"), self.field(name, None, valid_time), {"units": VARIABLES[name].units})
        return xr.Dataset(
            data_vars,
            coords={
                "pressure_level": ("pressure_level", np.array(levels, dtype=np.int32)),
                "lat": ("lat", self.grid.latitudes),
                "lon": ("lon", self.grid.longitudes),
            },
            attrs={"valid_time": valid_time.isoformat(), "source": "synthetic"},
        )

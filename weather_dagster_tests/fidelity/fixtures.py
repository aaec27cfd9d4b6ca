"""Deterministic fixtures for the differential comparison with the reference validator (issue 9).

One generator feeds both sides: the harness that runs Gaia v2.9.96's own scoring functions in a
separate virtualenv (``HARNESS.md``), and ``test_fidelity_golden.py`` which runs this project's
scorers. Only numpy is used, so the module imports in either environment, and every array is
written as ``.npy`` with its sha256 in ``manifest.json``: the golden file records those hashes, and a
change to the generator (or to numpy's random streams) shows up as a hash mismatch, not as a silent
change of the expected numbers.

Generator: every field is ``base(variable, level, latitude) + amplitude x pattern``, with the pattern
a sum of a few low-order spherical-ish waves whose phases come from ``np.random.default_rng(seed)``
where ``seed = crc32(label)`` (stable across processes, unlike ``hash``). Truth = climatology +
anomaly; miner forecasts are derived from truth (or climatology, or the GFS fields for Day1).

Grid: 2.5 degree (73 x 144), the 13 pressure levels of the reference. Why that size: the reference's
path through ``interp_like`` does not depend on the grid size but on the miner store's chunking (one
chunk per pressure level, as Gaia miners write) - see HARNESS.md for the measured rule - so a small
grid takes the same code paths as 0.25 degree. What does depend on the size is the 0.9985 coverage
rule: NaN counts are therefore chosen relative to this grid (a whole NaN row is 1/73 of the field
here, 1/721 at 0.25 degree), and each NaN fixture says which side of the threshold it sits on.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESOLUTION = 2.5
COARSE_RESOLUTION = 5.0
LEVELS = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
SURFACE = ("2t", "10u", "10v", "msl")
ATMOSPHERIC = ("t", "u", "v", "q", "z")
INIT_TIME = "2025-01-01T00:00:00"  # day of year 1; valid times below stay in the first week
ERA5_LEADS = (24, 120)
LONG_LEAD_KINDS = ("clean", "noisy")  # the only kinds also scored at the longer lead (keeps generation fast)
DAY1_LEAD = 12
GRAVITY = 9.80665


def latitudes(resolution: float = RESOLUTION, drop_south_pole: bool = False) -> np.ndarray:
    n = round(180 / resolution) + 1
    lat = np.linspace(90.0, -90.0, n)
    return lat[:-1] if drop_south_pole else lat


def longitudes(resolution: float = RESOLUTION) -> np.ndarray:
    return np.arange(round(360 / resolution)) * resolution


def _rng(label: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(label.encode()))


def _pattern(label: str, lat: np.ndarray, lon: np.ndarray, waves: int = 4) -> np.ndarray:
    """A smooth global pattern of unit-ish amplitude, deterministic in ``label``."""
    rng = _rng(label)
    phi = np.deg2rad(lat)[:, None]
    lam = np.deg2rad(lon)[None, :]
    out = np.zeros((lat.size, lon.size))
    for k in range(1, waves + 1):
        a, b, p1, p2 = rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.8), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
        out += a * np.cos(k * lam + p1) * np.cos(phi) ** k + b * np.sin(k * phi + p2)
    return out / waves


def _base(var: str, level: int | None, lat: np.ndarray) -> tuple[np.ndarray, float]:
    """(zonal mean field of shape (nlat, 1), anomaly amplitude) for a variable and level."""
    s = np.sin(np.deg2rad(lat))[:, None]
    c = np.cos(np.deg2rad(lat))[:, None]
    if var == "2t":
        return 300.0 - 50.0 * s**2, 6.0
    if var == "msl":
        return 101325.0 + 800.0 * c, 900.0
    if var in ("10u", "10v"):
        return 3.0 * c, 5.0
    p = float(level)
    if var == "t":
        return 200.0 + 0.09 * p - 30.0 * s**2 * (p / 1000.0), 4.0
    if var in ("u", "v"):
        return 15.0 * c * (1.0 - p / 1500.0), 8.0
    if var == "q":
        return 1e-6 + 0.012 * (p / 1000.0) ** 3 * c**2, 1e-6 + 0.0015 * (p / 1000.0) ** 3
    if var == "z":
        return GRAVITY * 7000.0 * np.log(1013.0 / p) + 400.0 * c, 300.0 + p / 4.0
    raise KeyError(var)


def _field(var: str, level: int | None, label: str, lat: np.ndarray, lon: np.ndarray, scale: float) -> np.ndarray:
    base, amp = _base(var, level, lat)
    out = base + scale * amp * _pattern(f"{label}/{var}/{level}", lat, lon)
    if var == "q":
        out = np.maximum(out, 0.0)
    return out


def clim_field(var: str, level: int | None, slot: str, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return _field(var, level, f"clim/{slot}", lat, lon, 0.5)


def truth_field(var: str, level: int | None, valid: str, lat: np.ndarray, lon: np.ndarray, slot: str) -> np.ndarray:
    anomaly = _field(var, level, f"anom/{valid}", lat, lon, 1.0) - _base(var, level, lat)[0]
    out = clim_field(var, level, slot, lat, lon) + anomaly
    return np.maximum(out, 0.0) if var == "q" else out


def fields() -> list[tuple[str, int | None]]:
    return [(v, None) for v in SURFACE] + [(v, lev) for v in ATMOSPHERIC for lev in LEVELS]


def _noise(label: str, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth-ish noise: white noise averaged with its neighbours (not spatially flat)."""
    w = _rng(label).standard_normal(shape)
    return (w + np.roll(w, 1, -1) + np.roll(w, -1, -1) + np.roll(w, 1, -2) + np.roll(w, -1, -2)) / 5.0


@dataclass(frozen=True)
class ForecastKind:
    """How one miner forecast is derived; ``grid`` is 'truth', 'coarse' or 'no_south_pole'."""

    name: str
    base: str = "truth"  # truth | clim | constant | gfs_forecast (Day1)
    noise: float = 0.0  # multiple of the variable's anomaly amplitude
    bias: float = 0.0  # multiple of the anomaly amplitude, added everywhere
    grid: str = "truth"
    nan_cells: tuple[tuple[int, int], ...] = ()
    nan_border: str = ""  # north | south | west | east
    extreme: bool = False  # one cell at 1e13: the reference's "manipulation" limit is 1e12
    out_of_bounds: bool = False  # 2t at +60 K: outside the Day1 climatology bounds (180, 340)
    note: str = ""


ERA5_KINDS: tuple[ForecastKind, ...] = (
    ForecastKind("perfect", note="forecast = truth"),
    ForecastKind("clean", noise=0.15, note="truth + small smooth noise"),
    ForecastKind("biased", noise=0.15, bias=0.5),
    ForecastKind("noisy", noise=1.2),
    ForecastKind("climatology", base="clim", note="climatology as forecast"),
    ForecastKind("constant", base="constant", note="every field constant"),
    ForecastKind(
        "clim_atmos",
        base="clim_atmos",
        noise=0.15,
        note="surface: truth + noise; pressure levels: climatology (ACC undefined)",
    ),
    ForecastKind("nan_inside_few", noise=0.15, nan_cells=((30, 40),), note="1 NaN cell"),
    ForecastKind(
        "nan_inside_many", noise=0.15, nan_cells=((20, 10), (30, 40), (40, 70), (50, 100), (60, 130)), note="5 cells"
    ),
    ForecastKind("nan_north", noise=0.15, nan_border="north"),
    ForecastKind("nan_south", noise=0.15, nan_border="south"),
    # A whole NaN first column spreads to the second one through interp_like: 2 x 73 cells fail the
    # coverage rule here, but 2 x 721 of 1,038,240 pass it at 0.25 degree. ``nan_west_partial`` (6
    # rows) is the fixture that takes the 0.25-degree path; ``nan_west`` documents the threshold.
    ForecastKind("nan_west", noise=0.15, nan_border="west"),
    ForecastKind("nan_west_partial", noise=0.15, nan_border="west_partial"),
    ForecastKind("nan_east", noise=0.15, nan_border="east"),
    ForecastKind("out_of_range", noise=0.15, extreme=True),
    ForecastKind("coarse", noise=0.15, grid="coarse", note="5 degree miner grid, interpolated to 2.5"),
    ForecastKind("no_south_pole", noise=0.15, grid="no_south_pole", note="last latitude row dropped (Aurora crop)"),
)

DAY1_KINDS: tuple[ForecastKind, ...] = (
    ForecastKind("clean", noise=0.15),
    ForecastKind("noisy", noise=1.2),
    ForecastKind("clone", base="gfs_forecast", note="exact copy of the GFS f012 forecast"),
    ForecastKind("near_clone", base="gfs_forecast", noise=0.002, note="GFS f012 + tiny noise"),
    ForecastKind("climatology", base="clim"),
    ForecastKind("constant", base="constant"),
    ForecastKind("nan_inside_few", noise=0.15, nan_cells=((30, 40), (31, 41))),
    ForecastKind("nan_south", noise=0.15, nan_border="south"),
    ForecastKind("out_of_bounds", noise=0.15, out_of_bounds=True),
    ForecastKind("coarse", noise=0.15, grid="coarse"),
    ForecastKind("no_south_pole", noise=0.15, grid="no_south_pole"),
)


def valid_time(lead: int) -> str:
    day = 1 + lead // 24
    return f"2025-01-{day:02d}T{lead % 24:02d}:00:00"


def slot_of(lead: int) -> str:
    """The climatology slot (day of year, hour) the reference selects for this valid time."""
    return f"d{1 + lead // 24:03d}_h{(lead % 24) // 6 * 6:02d}"


def _miner_grid(kind: ForecastKind) -> tuple[np.ndarray, np.ndarray]:
    if kind.grid == "coarse":
        return latitudes(COARSE_RESOLUTION), longitudes(COARSE_RESOLUTION)
    return latitudes(drop_south_pole=kind.grid == "no_south_pole"), longitudes()


def _forecast(kind: ForecastKind, var: str, level: int | None, valid: str, slot: str, label: str) -> np.ndarray:
    lat, lon = _miner_grid(kind)
    climatology_here = kind.base == "clim" or (kind.base == "clim_atmos" and level is not None)
    if climatology_here:
        out = clim_field(var, level, slot, lat, lon)
    elif kind.base == "constant":
        out = np.full((lat.size, lon.size), float(np.mean(_base(var, level, lat)[0])))
    elif kind.base == "gfs_forecast":
        out = gfs_forecast_field(var, level, valid, lat, lon, slot)
    else:
        out = truth_field(var, level, valid, lat, lon, slot)
    amp = _base(var, level, lat)[1]
    if kind.noise and not climatology_here:
        out = out + kind.noise * amp * _noise(f"{label}/{var}/{level}", out.shape)
    if kind.bias:
        out = out + kind.bias * amp
    if var == "q":
        out = np.maximum(out, 0.0)
    if kind.out_of_bounds and var == "2t":
        out = out + 60.0
    out = out.astype(np.float32)
    for i, j in kind.nan_cells:
        out[i, j] = np.nan
    border = {
        "north": (0, slice(None)),
        "south": (-1, slice(None)),
        "west": (slice(None), 0),
        "east": (slice(None), -1),
        "west_partial": (slice(20, 26), 0),
    }
    if kind.nan_border:
        out[border[kind.nan_border]] = np.nan
    if kind.extreme and var == "msl":
        out[10, 10] = 1e13
    return out


def gfs_analysis_field(
    var: str, level: int | None, valid: str, lat: np.ndarray, lon: np.ndarray, slot: str
) -> np.ndarray:
    return truth_field(var, level, valid, lat, lon, slot)


def gfs_forecast_field(
    var: str, level: int | None, valid: str, lat: np.ndarray, lon: np.ndarray, slot: str
) -> np.ndarray:
    amp = _base(var, level, lat)[1]
    out = truth_field(var, level, valid, lat, lon, slot) + 0.3 * amp * _noise(
        f"gfs_f012/{var}/{level}", (lat.size, lon.size)
    )
    return np.maximum(out, 0.0) if var == "q" else out


DAY1_FIELDS: tuple[tuple[str, int | None], ...] = (
    ("2t", None),
    ("msl", None),
    ("10u", None),
    ("10v", None),
    ("z", 500),
)


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sha: dict[str, str] = {}

    def put(self, rel: str, array: np.ndarray) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.ascontiguousarray(array, dtype=np.float32)
        np.save(path, array, allow_pickle=False)
        self.sha[rel] = hashlib.sha256(array.tobytes()).hexdigest()


def _field_name(var: str, level: int | None) -> str:
    return var if level is None else f"{var}{level}"


def generate(root: str | Path) -> dict:
    """Write every fixture under ``root`` and return the manifest (also written as manifest.json)."""
    root = Path(root)
    w = _Writer(root)
    lat, lon = latitudes(), longitudes()
    slots = sorted({slot_of(lead) for lead in (*ERA5_LEADS, DAY1_LEAD)})
    for slot in slots:
        for var, level in fields():
            w.put(f"clim/{slot}/{_field_name(var, level)}.npy", clim_field(var, level, slot, lat, lon))
    for lead in ERA5_LEADS:
        valid, slot = valid_time(lead), slot_of(lead)
        for var, level in fields():
            w.put(f"era5_truth/L{lead}/{_field_name(var, level)}.npy", truth_field(var, level, valid, lat, lon, slot))
        for kind in ERA5_KINDS:
            if lead != ERA5_LEADS[0] and kind.name not in LONG_LEAD_KINDS:
                continue
            for var, level in fields():
                label = f"era5/{kind.name}/L{lead}"
                w.put(
                    f"era5_miner/{kind.name}/L{lead}/{_field_name(var, level)}.npy",
                    _forecast(kind, var, level, valid, slot, label),
                )
    valid, slot = valid_time(DAY1_LEAD), slot_of(DAY1_LEAD)
    for var, level in DAY1_FIELDS:
        name = _field_name(var, level)
        w.put(f"gfs_analysis/{name}.npy", gfs_analysis_field(var, level, valid, lat, lon, slot))
        w.put(f"gfs_f012/{name}.npy", gfs_forecast_field(var, level, valid, lat, lon, slot))
        for kind in DAY1_KINDS:
            w.put(f"day1_miner/{kind.name}/{name}.npy", _forecast(kind, var, level, valid, slot, f"day1/{kind.name}"))
    manifest = {
        "resolution": RESOLUTION,
        "coarse_resolution": COARSE_RESOLUTION,
        "levels": list(LEVELS),
        "surface": list(SURFACE),
        "atmospheric": list(ATMOSPHERIC),
        "init_time": INIT_TIME,
        "era5_leads": list(ERA5_LEADS),
        "day1_lead": DAY1_LEAD,
        "era5_kinds": {k.name: {"grid": k.grid, "note": k.note} for k in ERA5_KINDS},
        "day1_kinds": {k.name: {"grid": k.grid, "note": k.note} for k in DAY1_KINDS},
        "slots": slots,
        "sha256": w.sha,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def miner_grid(kind_name: str, day1: bool = False) -> tuple[np.ndarray, np.ndarray]:
    kinds = {k.name: k for k in (DAY1_KINDS if day1 else ERA5_KINDS)}
    return _miner_grid(kinds[kind_name])


def fixture_digest(manifest: dict, prefix: str) -> str:
    """One sha256 over the hashes of every array under ``prefix`` (a fixture's identity in the golden file)."""
    h = hashlib.sha256()
    for rel in sorted(r for r in manifest["sha256"] if r.startswith(prefix)):
        h.update(f"{rel}:{manifest['sha256'][rel]}\n".encode())
    return h.hexdigest()


if __name__ == "__main__":
    generate(sys.argv[1])

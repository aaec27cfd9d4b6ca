"""The ``reference`` profile reproduces deployed Gaia v2.9.96; ``corrected`` scores as intended.

Each test pins one accident of the deployed scorer (``scoring/era5_reference.py`` says where it
comes from) and shows the other profile does not have it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
import xarray as xr

from weather_dagster.reference.grid import CoordinateGrid, Grid
from weather_dagster.scoring.checks import _scan, scan
from weather_dagster.scoring.era5 import FAILED, SCORED, score_era5_lead_many
from weather_dagster.scoring.era5_reference import reference_lead_score, salvage_edges
from weather_dagster.scoring.regrid import _has_non_finite, to_truth_grid
from weather_dagster.scoring.round_score import RoundEntry, round_vector
from weather_dagster.settings import ScoringSettings
from weather_dagster.settings.profile import CORRECTED, REFERENCE

GRID = Grid(3.0)
INIT = datetime(2026, 11, 1, tzinfo=UTC)
LEAD = 24
REF = ScoringSettings()
COR = ScoringSettings(profile="corrected")


def _field(name: str, level: int | None, salt: int = 0) -> np.ndarray:
    lat = np.deg2rad(GRID.latitudes)[:, None]
    lon = np.deg2rad(GRID.longitudes)[None, :]
    k = (sum(map(ord, name)) + (level or 0) + salt) % 17
    return (np.sin(2 * lat + 0.1 * k) * np.cos(3 * lon + 0.2 * k) + 0.3 * k).astype(np.float32)


class Truth:
    grid = GRID

    def field(self, name, level, valid_time):
        return _field(name, level)


class Climatology:
    grid = GRID

    def field(self, name, level, doy, hour):
        return (0.7 * _field(name, level, 5)).astype(np.float32)


class Forecast:
    """Truth plus a smooth error, with optional edits to chosen fields."""

    def __init__(self, grid=GRID, edit=None, source=None):
        self.grid = grid
        self.edit = edit or (lambda name, level, f: f)
        self.source = source

    def field(self, name, level, lead_hours):
        base = self.source(name, level) if self.source else _field(name, level) + 0.1 * _field(name, level, 3)
        return self.edit(name, level, base.astype(np.float32).copy())


def score(forecasts, settings, deployed=True):
    return score_era5_lead_many(forecasts, Truth(), Climatology(), INIT, LEAD, settings, deployed=deployed)


def test_pressure_level_skill_is_lost_on_lazy_arrays_unless_a_border_cell_was_nan():
    clean = Forecast()
    border = Forecast(edit=lambda n, lvl, f: (f.__setitem__((-1, 3), np.nan), f)[1] if lvl == 500 else f)
    deployed = score({"clean": clean, "border": border}, REF)
    in_memory = score({"clean": clean}, REF, deployed=False)["clean"]
    assert deployed["clean"].status == SCORED and deployed["border"].status == SCORED
    for name in ("t", "u", "v", "q", "z"):
        assert deployed["clean"].variables[name].skill == 0.0  # every level's skill became 0
        assert deployed["border"].variables[name].skill > 0.5  # salvage made the arrays numpy
        assert in_memory.variables[name].skill == pytest.approx(deployed["border"].variables[name].skill, rel=1e-3)
    assert deployed["clean"].variables["2t"].skill > 0.5  # surface skill is unaffected
    assert deployed["clean"].score < in_memory.score
    corrected = score({"clean": clean}, COR)["clean"]
    assert corrected.variables["z"].skill == pytest.approx(in_memory.variables["z"].skill, rel=1e-6)


def test_interp_like_spreads_a_nan_so_a_few_cells_fail_coverage_only_under_reference():
    # 61 x 120 grid: 9 NaN cells in 2t are 0.12 % (passes 0.9985); spread to 4 cells each they fail.
    cells = [(10 + 3 * i, 20 + 7 * i) for i in range(9)]

    def holes(name, level, f):
        if name == "2t":
            for cell in cells:
                f[cell] = np.nan
        return f

    assert len(cells) / GRID.nlat / GRID.nlon < 1 - REF.min_finite_coverage_lead
    ref = score({1: Forecast(edit=holes)}, REF)[1]
    cor = score({1: Forecast(edit=holes)}, COR)[1]
    assert ref.status == FAILED and "finite coverage" in ref.reason and "2t" in ref.reason
    assert cor.status == SCORED


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_non_finite_test_that_gates_nan_spreading_finds_every_kind_anywhere(dtype):
    """The vectorised row test (``x * 0`` summed) says what ``np.isfinite`` says, huge values included."""
    field = np.random.default_rng(4).normal(size=(37, 72)).astype(dtype)
    field[5, 5] = np.finfo(dtype).max
    field[6, 6] = np.finfo(dtype).tiny / 2  # subnormal
    assert not _has_non_finite(field) and not _has_non_finite(field[::-1, ::-2])
    for bad in (np.nan, np.inf, -np.inf):
        for cell in ((0, 0), (36, 71), (20, 33)):
            broken = field.copy()
            broken[cell] = bad
            assert _has_non_finite(broken) and _has_non_finite(broken[::-1, ::-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_clean_field_pass_agrees_with_the_counting_scan(dtype):
    """``scan`` answers (0, 0, 0) through the vectorised pass only when ``_scan`` would count nothing."""
    limit = 1e12
    field = (np.random.default_rng(5).normal(size=(37, 72)) * 300).astype(dtype)
    field[3, 3] = limit  # at the limit is not beyond it
    assert scan(field, limit) == _scan(field, limit) == (0, 0, 0)
    for bad in (np.nan, np.inf, -np.inf, 2 * limit, -2 * limit, np.nextafter(limit, np.inf)):
        for cell in ((0, 0), (36, 71), (20, 33)):
            broken = field.copy()
            broken[cell] = bad
            if broken[cell] == limit:  # float32 cannot tell the next double after 1e12 from it
                continue
            assert scan(broken, limit) == _scan(broken, limit) != (0, 0, 0)


def test_regrid_matches_xarray_interp_like_for_every_layout():
    truth = xr.DataArray(
        np.zeros(GRID.shape), dims=("lat", "lon"), coords={"lat": GRID.latitudes, "lon": GRID.longitudes}
    )
    rng = np.random.default_rng(1)

    def xr_interp(field, lat, lon):
        da = xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
        if lon.min() < 0:
            da = da.assign_coords(lon=da["lon"] % 360).sortby("lon")
        return da.interp_like(truth, method="linear", kwargs={"fill_value": None}).values

    with_holes = rng.normal(size=GRID.shape)
    with_holes[5, 7] = with_holes[0, 0] = with_holes[-1, -1] = np.nan
    pm180 = np.where(GRID.longitudes >= 180, GRID.longitudes - 360, GRID.longitudes)
    order = np.argsort(pm180)
    coarse = Grid(6.0)
    layouts = [
        (with_holes, GRID.latitudes, GRID.longitudes),
        (with_holes[::-1], GRID.latitudes[::-1], GRID.longitudes),
        (rng.normal(size=(GRID.nlat - 1, GRID.nlon)), GRID.latitudes[:-1], GRID.longitudes),
        (rng.normal(size=GRID.shape)[:, order], GRID.latitudes, pm180[order]),
        (rng.normal(size=coarse.shape), coarse.latitudes, coarse.longitudes),
    ]
    for field, lat, lon in layouts:
        ours = to_truth_grid(field.astype(np.float32), CoordinateGrid(lat, lon), GRID, REFERENCE)
        theirs = xr_interp(field.astype(np.float32), lat, lon)
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        np.testing.assert_allclose(ours[np.isfinite(ours)], theirs[np.isfinite(theirs)], rtol=1e-6, atol=1e-6)


def test_coarser_grid_is_not_periodic_under_reference():
    coarse = Grid(12.0)  # last column 348: the truth's 351, 354, 357 lie past it

    def coarse_truth(name, level):
        lat = np.deg2rad(coarse.latitudes)[:, None]
        lon = np.deg2rad(coarse.longitudes)[None, :]
        k = (sum(map(ord, name)) + (level or 0)) % 17
        return np.sin(2 * lat + 0.1 * k) * np.cos(3 * lon + 0.2 * k) + 0.3 * k

    ref = score({1: Forecast(grid=coarse, source=coarse_truth)}, REF)[1]
    cor = score({1: Forecast(grid=coarse, source=coarse_truth)}, COR)[1]
    assert ref.status == FAILED and "finite coverage" in ref.reason
    assert cor.status == SCORED
    regridded = to_truth_grid(coarse_truth("2t", None), coarse, GRID, CORRECTED)
    assert np.isfinite(regridded).all()


def test_climatology_fill_skips_pressure_levels_under_reference():
    def gap(name, level, f):
        if level == 850 or name == "2t":
            f[20, 40] = np.nan
        return f

    ref = score({1: Forecast(edit=gap)}, REF)[1]
    t850 = next(c for c in ref.variables["t"].levels if c.level == 850)
    two_t = ref.variables["2t"].levels[0]
    assert t850.filled_points == 0 and t850.metrics.masked  # NaN points skipped, not filled
    assert two_t.filled_points > 0 and not two_t.metrics.masked
    cor = score({1: Forecast(edit=gap)}, COR)[1]
    assert next(c for c in cor.variables["t"].levels if c.level == 850).filled_points == 1


def test_undefined_surface_acc_fails_the_lead_and_atmospheric_acc_drops_acc_and_skill():
    clim = Climatology()

    def climatology_as(names):
        def edit(name, level, f):
            return clim.field(name, level, 0, 0).copy() if name in names else f

        return edit

    surface = score({1: Forecast(edit=climatology_as({"2t"}))}, REF)[1]
    assert surface.status == FAILED and "ACC is undefined" in surface.reason
    atmospheric = score({1: Forecast(edit=climatology_as({"q"}))}, REF)[1]
    assert atmospheric.status == SCORED
    q = atmospheric.variables["q"]
    assert math.isnan(q.acc) and math.isnan(q.skill) and math.isfinite(q.rmse)
    assert score({1: Forecast(edit=climatology_as({"2t"}))}, COR)[1].status == SCORED


def test_atmospheric_rmse_is_the_root_of_the_weighted_mse_in_both_profiles():
    for settings in (REF, COR):
        result = score({1: Forecast()}, settings)[1]
        z = result.variables["z"]
        mse = sum(c.weight * c.metrics.mse for c in z.levels)
        assert z.rmse == pytest.approx(math.sqrt(mse), rel=1e-9)
        assert z.rmse > sum(c.weight * c.metrics.rmse for c in z.levels)  # not the mean of RMSEs (Jensen)


def test_reference_lead_score_rules():
    # A zero middle RMSE makes every term 0.5; missing kinds fall back as the aggregator does.
    assert reference_lead_score([0.0] * 9, [1.0] * 9, [1.0] * 9, REF)[0] == pytest.approx(0.95)
    assert reference_lead_score([1.0], [], [0.5], REF)[0] == pytest.approx(0.5)
    assert reference_lead_score([], [0.0], [0.5], REF)[0] == pytest.approx(0.6 * 0.5 + 0.4 * 0.5)
    assert reference_lead_score([], [], [], REF)[0] == 0.0


def test_edge_salvage_copies_the_neighbour():
    f = np.arange(20, dtype=np.float32).reshape(4, 5)
    f[0, 2] = f[3, 1] = f[2, 0] = f[1, 4] = f[0, 0] = np.nan
    out, found = salvage_edges(f)
    assert found and out[0, 2] == f[1, 2] and out[3, 1] == f[2, 1] and out[2, 0] == f[2, 1] and out[1, 4] == f[1, 3]
    assert out[0, 0] == f[0, 1]  # a corner: the column rule, applied last, wins
    assert salvage_edges(np.ones((3, 3), np.float32))[1] is False


def test_round_vector_ties_are_exact_under_reference():
    entries = {1: RoundEntry(0.8, True), 2: RoundEntry(0.8 - 1e-13, True)}
    assert round_vector(entries, REF)[2][1] == 0.0 and round_vector(entries, REF)[1][1] == pytest.approx(0.05)
    assert round_vector(entries, COR)[2][1] == pytest.approx(0.025)


def test_profile_is_one_validated_setting():
    assert REF.quirks == REFERENCE and COR.quirks == CORRECTED
    assert not any(CORRECTED.as_dict().values()) and all(REFERENCE.as_dict().values())
    with pytest.raises(ValueError):
        ScoringSettings(profile="mine")


def test_extreme_values_are_scored_under_reference_and_rejected_under_corrected():
    def extreme(name, level, f):
        if name == "msl":
            f[10, 10] = 1e13
        return f

    ref = score({1: Forecast(edit=extreme)}, REF)[1]
    assert ref.status == SCORED and ref.variables["msl"].rmse > 1e9  # the deployed guard never runs
    cor = score({1: Forecast(edit=extreme)}, COR)[1]
    assert cor.status == "rejected" and "beyond" in cor.reason

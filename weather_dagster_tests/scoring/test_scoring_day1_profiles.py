"""Day1 under both scoring profiles: each accident of deployed Gaia v2.9.96 that ``reference``
reproduces (``scoring/day1_reference.py`` says where it comes from) and ``corrected`` does not,
plus hand-checkable numbers for every formula.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from weather_dagster.core.errors import InvalidDataError
from weather_dagster.reference.grid import Grid
from weather_dagster.scoring.day1 import Day1Component, combine_day1, score_day1
from weather_dagster.scoring.kernel import FieldMetrics
from weather_dagster.settings import ScoringSettings

INIT = datetime(2026, 11, 20, tzinfo=UTC)
REF = ScoringSettings()
COR = ScoringSettings(profile="corrected")
NAMES = {("2t", None): "2t", ("msl", None): "msl", ("10u", None): "10u", ("10v", None): "10v", ("z", 500): "z500"}
SCALE = {"2t": (285.0, 15.0), "msl": (101000.0, 900.0), "10u": (0.0, 6.0), "10v": (0.0, 5.0), "z500": (55000.0, 2500.0)}


class Fields:
    """A source of fixed fields on ``grid``, keyed by Day1 variable name (truth, GFS, clim, miner)."""

    def __init__(self, grid: Grid, fields: dict[str, np.ndarray]):
        self.grid = grid
        self.fields = fields

    def field(self, variable, level, *_):
        return self.fields[NAMES[(variable, level)]].astype(np.float32)


def smooth(grid: Grid, name: str, salt: int = 0) -> np.ndarray:
    lat = np.deg2rad(grid.latitudes)[:, None]
    lon = np.deg2rad(grid.longitudes)[None, :]
    mean, spread = SCALE[name]
    k = sum(map(ord, name)) % 7 + salt
    return (mean + spread * np.sin(2 * lat + 0.3 * k) * np.cos(3 * lon + 0.2 * k)).astype(np.float32)


def world(grid: Grid, edit=None, names=("2t", "msl", "10u", "10v", "z500")):
    """(miner, truth, gfs, clim): truth smooth; GFS and miner are truth plus different smooth errors."""
    truth, gfs, clim, miner = {}, {}, {}, {}
    for name in names:
        o = smooth(grid, name)
        spread = SCALE[name][1]
        truth[name] = o
        gfs[name] = o + 0.2 * (smooth(grid, name, 3) - SCALE[name][0])
        clim[name] = (o + 0.5 * (smooth(grid, name, 5) - SCALE[name][0])).astype(np.float32)
        f = (o + 0.1 * (smooth(grid, name, 1) - SCALE[name][0]) + 0.02 * spread).astype(np.float32)
        miner[name] = edit(name, f.copy()) if edit else f
    return Fields(grid, miner), Fields(grid, truth), Fields(grid, gfs), Fields(grid, clim)


def day1(sources, settings):
    miner, truth, gfs, clim = sources
    return score_day1(miner, truth, gfs, clim, INIT, settings)


def comp(result, name):
    return next(c for c in result.components if c.variable == name)


# -- hand-checkable formulas (both profiles agree on clean fields) --------------------------------


def _hand_world():
    """Grid(90): rows 90, 0, -90 (cos weights ~0, 1, ~0), columns 0, 90, 180, 270.

    Truth [1, 2, 3, 4] in every row; miner = truth + [2, 0, 2, 0] on the equator, + 4 on the poles;
    GFS = truth + [3, -3, 3, -3]; climatology 0.
    """
    grid = Grid(90.0)
    o = np.tile(np.array([1.0, 2.0, 3.0, 4.0]), (3, 1))
    f = o + 4.0
    f[1] = o[1] + np.array([2.0, 0.0, 2.0, 0.0])
    r = o + np.array([3.0, -3.0, 3.0, -3.0])
    c = np.zeros_like(o)
    sources = tuple(Fields(grid, {"10u": a}) for a in (f, o, r, c))
    return sources, {"day1_variables": ("10u",)}


@pytest.mark.parametrize("settings", [REF, COR], ids=["reference", "corrected"])
def test_day1_formulas_by_hand(settings):
    sources, update = _hand_world()
    result = day1(sources, settings.model_copy(update=update))
    c = comp(result, "10u")
    # clone distance: weighted mean of (f - r)^2 = mean([1, 9, 1, 9]) on the equator (poles weigh ~0)
    assert c.clone_distance == pytest.approx(5.0, rel=1e-12)
    assert c.clone_penalty == 0.0  # D = 5 >= delta 0.01
    # pattern correlation of f = [3, 2, 5, 4] with r = [4, -1, 6, 1]: 9 / sqrt(5 x 29)
    assert c.sanity["pattern_correlation"] == pytest.approx(9 / math.sqrt(145), rel=1e-9)
    # bias correction: the *unweighted* mean error over all 12 cells = (4 + 8 x 4) / 12 = 3, so the
    # equator error becomes [-1, -3, -1, -3]: mse_bc = 5; GFS mse = 9; skill = 1 - 5/9
    assert c.metrics.mse_bias_corrected == pytest.approx(5.0, rel=1e-12)
    assert c.metrics.mse_reference == pytest.approx(9.0, rel=1e-12)
    assert c.skill_after_penalty == pytest.approx(4 / 9, rel=1e-12)
    # ACC: centred weighted Pearson of f - c = f and o - c = o on the equator = 3 / 5
    assert c.metrics.acc == pytest.approx(0.6, rel=1e-9)
    # Day1 = 0.6 x mean(max(0, SS - P)) + 0.4 x mean((ACC + 1) / 2)
    assert result.score == pytest.approx(0.6 * 4 / 9 + 0.4 * 0.8, rel=1e-9)
    assert result.passed and not result.clamped
    assert result.summary()["profile"] == settings.profile


def test_clone_penalty_and_strict_clamp_by_hand():
    sources, update = _hand_world()
    miner, truth, gfs, clim = sources
    near = gfs.fields["10u"] + 0.05  # D = 0.0025 < delta 0.01: P = 1 - 0.25 = 0.75, and D < delta / 2
    for settings in (REF, COR):
        result = day1((Fields(miner.grid, {"10u": near}), truth, gfs, clim), settings.model_copy(update=update))
        c = comp(result, "10u")
        assert c.clone_distance == pytest.approx(0.0025, rel=1e-5)
        assert c.clone_penalty == pytest.approx(0.75, rel=1e-4)
        assert c.skill_after_penalty == pytest.approx(c.metrics.skill - c.clone_penalty)
        assert result.clamped and result.score <= settings.day1_clone_clamp and not result.passed


def test_profile_is_recorded_in_the_summary():
    sources = world(Grid(10.0))
    assert day1(sources, REF).summary()["profile"] == "reference"
    assert day1(sources, COR).summary()["profile"] == "corrected"


# -- accidents of the reference, one test each ---------------------------------------------------


GRID5 = Grid(5.0)  # 37 x 72: one NaN keeps the interior coverage above 0.9985


def _one_nan(name, f):
    if name == "2t":
        f[18, 30] = np.nan
    return f


def test_interp_like_spreads_one_nan_to_three_more_cells_and_skips_them():
    sources = world(GRID5, _one_nan)
    ref_t2 = comp(day1(sources, REF), "2t")
    cor_t2 = comp(day1(sources, COR), "2t")
    n = GRID5.nlat * GRID5.nlon
    # reference: interp_like on the identical grid spreads the NaN to the next latitude and the next
    # longitude (and their corner), and the metrics skip those 4 cells
    assert ref_t2.metrics.masked and ref_t2.metrics.n_points == n - 4
    # corrected: no interpolation on an identical grid; the one gap is filled with climatology
    assert cor_t2.sanity["filled_points"] == 1 and cor_t2.metrics.n_points == n


def test_nan_cells_are_skipped_per_metric_pair_not_gated():
    def many(name, f):
        if name == "2t":
            f[10:13, 20:26] = np.nan  # 18 cells: interior coverage ~0.99 < 0.9985
        return f

    sources = world(GRID5, many)
    ref_t2 = comp(day1(sources, REF), "2t")
    cor_t2 = comp(day1(sources, COR), "2t")
    assert cor_t2.metrics is None and cor_t2.sanity["coverage_passed"] is False  # corrected: left out
    assert ref_t2.passed and math.isfinite(ref_t2.skill_after_penalty)  # reference: scored on the rest
    # the reference's numbers, by their definitions (spread NaN = rows 9..12, columns 20..26)
    miner, truth, gfs, _clim = sources
    f = miner.fields["2t"].astype(np.float64)
    f[9:13, 20:27] = np.nan
    o, r = truth.fields["2t"].astype(np.float64), gfs.fields["2t"].astype(np.float64)
    w = np.broadcast_to(np.cos(np.deg2rad(GRID5.latitudes))[:, None], f.shape)
    keep = ~np.isnan(f)
    m = np.mean((f - o)[keep])  # unweighted
    mse_bc = np.sum((w * (f - m - o) ** 2)[keep]) / np.sum(w[keep])
    mse_gfs = np.sum(w * (r - o) ** 2) / np.sum(w)  # every cell: GFS and truth have no gap
    assert ref_t2.metrics.n_points == keep.sum()
    assert ref_t2.metrics.mse_reference == pytest.approx(mse_gfs, rel=1e-9)
    assert ref_t2.skill_after_penalty == pytest.approx(1 - mse_bc / mse_gfs, rel=1e-7)
    clone = np.sum((w * (f - r) ** 2)[keep]) / np.sum(w[keep])
    assert ref_t2.clone_distance == pytest.approx(clone, rel=1e-7)


def test_no_extreme_value_check_in_the_reference():
    def huge(name, f):
        if name == "msl":
            f[5, 5] = 1e13
        return f

    sources = world(Grid(10.0), huge)
    result = day1(sources, REF)  # scored, not rejected
    assert comp(result, "msl").metrics is not None
    with pytest.raises(InvalidDataError):
        day1(sources, COR)


def test_an_infinity_fails_sanity_in_the_reference_instead_of_rejecting():
    def inf(name, f):
        if name == "10v":
            f[8, 8] = np.inf
        return f

    sources = world(Grid(10.0), inf)
    v = comp(day1(sources, REF), "10v")
    assert v.clone_distance == math.inf and math.isnan(v.sanity["pattern_correlation"]) and not v.passed
    with pytest.raises(InvalidDataError):
        day1(sources, COR)


def test_no_climatology_bounds_in_the_reference():
    def hot(name, f):
        return f + 60.0 if name == "2t" else f  # max ~360 K: beyond the (180, 340) bound

    sources = world(Grid(10.0), hot)
    assert comp(day1(sources, REF), "2t").passed
    cor = comp(day1(sources, COR), "2t")
    assert not cor.passed and cor.sanity["climatology_passed"] is False


def _component(distance: float, penalty: float, passed: bool) -> Day1Component:
    metrics = FieldMetrics(*(math.nan,) * 6, 0.5, 0.5, 0.9, distance, 10, False)
    c = Day1Component("msl", "msl", None, 12, INIT, metrics=metrics)
    c.clone_distance, c.clone_penalty, c.passed = distance, penalty, passed
    c.skill_after_penalty = 0.5 - penalty if passed else math.nan
    return c


def test_a_clone_that_fails_sanity_escapes_the_strict_clamp_in_the_reference():
    delta = REF.clone_delta["msl"]
    clone_failing_sanity = _component(0.1 * delta, 0.9, passed=False)
    honest = _component(10 * delta, 0.0, passed=True)
    ref = combine_day1([clone_failing_sanity, honest], REF)
    cor = combine_day1([clone_failing_sanity, honest], COR)
    assert not ref.clamped and ref.score == pytest.approx(0.6 * 0.5 + 0.4 * 0.75)
    assert cor.clamped and cor.score == pytest.approx(COR.day1_clone_clamp)


def test_a_negative_humidity_clone_fails_sanity_and_is_not_clamped_in_the_reference():
    grid = Grid(10.0)
    settings_update = {"day1_variables": ("q850", "10u"), "clone_delta": {**REF.clone_delta, "q850": 1e-6}}
    q = (0.005 + 0.003 * np.cos(np.deg2rad(grid.latitudes))[:, None] * np.ones(grid.nlon)).astype(np.float32)
    q = q + 1e-4 * np.sin(np.deg2rad(grid.longitudes))[None, :].astype(np.float32)
    _miner, truth, gfs, clim = world(grid, names=("10u",))
    clone = q.copy()
    clone[3, 3] = -1e-6  # a GFS clone with one negative cell: q sanity fails
    names = {**NAMES, ("q", 850): "q850"}

    class QFields(Fields):
        def field(self, variable, level, *_):
            return self.fields[names[(variable, level)]].astype(np.float32)

    def src(base, qfield):
        return QFields(grid, {**base.fields, "q850": qfield})

    miner = src(_miner, clone)
    args = (miner, src(truth, q + 1e-4), src(gfs, q), src(clim, q * 0.9))
    ref = score_day1(*args, INIT, REF.model_copy(update=settings_update))
    cor = score_day1(*args, INIT, COR.model_copy(update=settings_update))
    for result in (ref, cor):
        qc = comp(result, "q850")
        assert not qc.passed and qc.clone_penalty > 0.9
    assert not ref.clamped and ref.score > 0.1
    assert cor.clamped and cor.score <= COR.day1_clone_clamp


def test_units_are_guessed_in_the_reference():
    def celsius(name, f):
        if name == "2t":
            return f - np.float32(273.15)
        if name == "z500":
            return f / np.float32(9.80665)
        return f

    kelvin = day1(world(Grid(10.0)), REF)
    guessed = day1(world(Grid(10.0), celsius), REF)
    for name in ("2t", "z500"):
        assert comp(guessed, name).sanity["unit_conversion"]
        expected = comp(kelvin, name).skill_after_penalty
        assert comp(guessed, name).skill_after_penalty == pytest.approx(expected, rel=1e-4)
    assert guessed.score == pytest.approx(kelvin.score, rel=1e-4)
    as_sent = day1(world(Grid(10.0), celsius), COR)
    assert not comp(as_sent, "2t").passed  # 12 "K" is outside the 2t bounds
    assert "unit_conversion" not in comp(as_sent, "2t").sanity


def test_a_constant_field_has_no_pattern_correlation():
    def flat(name, f):
        return np.full_like(f, SCALE[name][0] + 1.0) if name == "msl" else f

    for settings in (REF, COR):
        msl = comp(day1(world(Grid(10.0), flat), settings), "msl")
        assert math.isnan(msl.sanity["pattern_correlation"]) and not msl.passed


def test_climatology_as_forecast_has_no_acc_in_the_reference():
    sources = world(Grid(10.0))
    miner, truth, gfs, clim = sources
    as_clim = Fields(miner.grid, dict(clim.fields))
    result = day1((as_clim, truth, gfs, clim), REF)
    for c in result.components:
        assert c.metrics is not None and math.isnan(c.metrics.acc)  # np.std of a zero anomaly < 1e-12
    assert result.mean_acc == 0.0

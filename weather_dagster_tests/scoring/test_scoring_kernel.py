"""Golden tests of every kernel formula on hand-checkable fields, and cross-checks on random ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from weather_dagster.reference.grid import Grid
from weather_dagster.scoring.kernel import field_metrics, latitude_weights, skill_from_mse
from weather_dagster_tests.support.scoring_reference import numpy_metrics, xarray_metrics

W3 = np.array([0.5, 1.0, 0.5])  # cos(60), cos(0), cos(-60)


def a32(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_latitude_weights_cos_with_zero_poles_and_cell_area():
    w = latitude_weights(np.array([90.0, 60.0, 0.0, -60.0, -90.0]))
    assert w[0] == 0.0 and w[-1] == 0.0
    assert w[1] == pytest.approx(0.5) and w[2] == 1.0
    area = latitude_weights(Grid(1.0).latitudes, "cell_area")
    assert area.sum() == pytest.approx(2.0)  # integral of cos over [-pi/2, pi/2]
    assert area[0] > 0  # the polar cap cell has area
    with pytest.raises(ValueError):
        latitude_weights(np.array([0.0]), "bogus")


def test_mse_rmse_bias_mae_bias_corrected_skill_golden():
    # d = f - o is 1, 2, 3 by row; weights 0.5, 1, 0.5 over two columns: W = 4.
    o = np.zeros((3, 2), dtype=np.float32)
    f = a32([[1, 1], [2, 2], [3, 3]])
    r = np.ones((3, 2), dtype=np.float32)
    m = field_metrics(f, o, W3, reference=r)
    assert m.bias == pytest.approx(2.0)  # (0.5*1 + 1*2 + 0.5*3) * 2 / 4
    assert m.mse == pytest.approx(4.5)  # (0.5*1 + 1*4 + 0.5*9) * 2 / 4
    assert m.rmse == pytest.approx(math.sqrt(4.5))
    assert m.mae == pytest.approx(2.0)
    # unweighted mean error 2 -> f_bc errors -1, 0, 1 -> weighted mse (0.5 + 0 + 0.5) * 2 / 4
    assert m.mse_bias_corrected == pytest.approx(0.5)
    assert m.mse_reference == pytest.approx(1.0)
    assert m.skill == pytest.approx(0.5)
    assert m.clone_distance == pytest.approx((0.5 * 0 + 1 * 1 + 0.5 * 4) * 2 / 4)
    assert m.n_points == 6 and not m.masked
    assert math.isnan(m.acc)  # no climatology given


def test_bias_correction_uses_the_unweighted_mean():
    # Errors 0 on the equator row, 4 on the 60N row: weighted bias 1, unweighted mean 4/3.
    o = np.zeros((3, 1), dtype=np.float32)
    f = a32([[4], [0], [0]])
    m = field_metrics(f, o, W3, reference=np.ones_like(o))
    assert m.bias == pytest.approx(1.0)
    expected = (0.5 * (4 - 4 / 3) ** 2 + 1 * (4 / 3) ** 2 + 0.5 * (4 / 3) ** 2) / 2
    assert m.mse_bias_corrected == pytest.approx(expected)


def test_acc_centred_and_uncentred_golden():
    c = np.full((3, 2), 10.0, dtype=np.float32)
    o = a32([[11, 9], [12, 8], [10, 10]])  # anomalies 1 -1 2 -2 0 0
    f_pos = 10 + 2 * (o - 10) + 3  # anomaly 2b + 3: centred ACC exactly 1
    f_neg = 10 - (o - 10)
    assert field_metrics(f_pos, o, W3, climatology=c).acc == pytest.approx(1.0)
    assert field_metrics(f_neg, o, W3, climatology=c).acc == pytest.approx(-1.0)
    # uncentred: sum(w a b) / sqrt(sum(w a^2) sum(w b^2)); b has zero weighted mean, a = 2b + 3
    b = (o - 10).astype(np.float64)
    a = 2 * b + 3
    wb = np.broadcast_to(W3[:, None], b.shape)
    expected = (wb * a * b).sum() / math.sqrt((wb * a * a).sum() * (wb * b * b).sum())
    got = field_metrics(f_pos, o, W3, climatology=c, acc_definition="uncentred").acc
    assert got == pytest.approx(expected) and got < 1.0


def test_pattern_correlation_and_undefined_correlation():
    o = a32([[1, 2], [3, 4], [5, 6]])
    assert field_metrics(o * 3 + 1, o, W3).pattern_correlation == pytest.approx(1.0)
    assert field_metrics(-o, o, W3, pattern=o).pattern_correlation == pytest.approx(-1.0)
    constant = np.full_like(o, 7.0)
    assert math.isnan(field_metrics(constant, o, W3).pattern_correlation)


def test_skill_with_a_perfect_reference_follows_the_reference_rule():
    assert skill_from_mse(0.0, 0.0) == 1.0
    assert skill_from_mse(0.1, 0.0) == -math.inf
    assert math.isnan(skill_from_mse(math.nan, 1.0))
    o = a32([[1, 2], [3, 4], [5, 6]])
    assert field_metrics(o + 1, o, W3, reference=o).skill == 1.0  # bias correction removes a constant error
    assert field_metrics(o * 2, o, W3, reference=o).skill == -math.inf


def test_nan_points_are_skipped_and_weights_renormalised():
    rng = np.random.default_rng(1)
    o = rng.normal(280, 5, (5, 8)).astype(np.float32)
    f = (o + rng.normal(0, 1, o.shape)).astype(np.float32)
    c = np.full_like(o, 279.0)
    r = (o + rng.normal(0, 2, o.shape)).astype(np.float32)
    f[2, 3] = np.nan
    o[0, 0] = np.inf
    w = latitude_weights(np.linspace(60, -60, 5))
    m = field_metrics(f, o, w, climatology=c, reference=r)
    assert m.masked and m.n_points == 38
    expected = numpy_metrics(f, o, c, r, w)
    for name in ("mse", "bias", "mae", "mse_bias_corrected", "skill", "acc", "clone_distance"):
        assert getattr(m, name) == pytest.approx(expected[name], rel=1e-9), name


def test_all_nan_gives_nan_everywhere():
    o = np.full((3, 2), np.nan, dtype=np.float32)
    m = field_metrics(o, o, W3, climatology=o, reference=o)
    assert m.n_points == 0
    assert all(math.isnan(getattr(m, k)) for k in ("mse", "rmse", "bias", "mae", "skill", "acc"))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        field_metrics(np.zeros((3, 2)), np.zeros((3, 3)), W3)
    with pytest.raises(ValueError):
        field_metrics(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(2))


def test_kernel_matches_the_xarray_weighted_implementation_on_a_realistic_field():
    grid = Grid(2.0)
    rng = np.random.default_rng(7)
    o = (101325 + 1500 * rng.standard_normal(grid.shape)).astype(np.float32)
    f = (o + 80 + 300 * rng.standard_normal(grid.shape)).astype(np.float32)
    c = np.full(grid.shape, 101300, dtype=np.float32)
    r = (o + 500 * rng.standard_normal(grid.shape)).astype(np.float32)
    m = field_metrics(f, o, latitude_weights(grid.latitudes), climatology=c, reference=r)
    expected = xarray_metrics(f, o, c, r, grid.latitudes)
    for name, value in expected.items():
        assert getattr(m, name) == pytest.approx(value, rel=1e-7, abs=1e-9), name


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    f=arrays(np.float32, (4, 5), elements=finite),
    o=arrays(np.float32, (4, 5), elements=finite),
    c=arrays(np.float32, (4, 5), elements=finite),
    r=arrays(np.float32, (4, 5), elements=finite),
)
def test_kernel_agrees_with_direct_float64_formulas(f, o, c, r):
    w = np.array([0.2, 1.0, 0.7, 0.1])
    m = field_metrics(f, o, w, climatology=c, reference=r)
    expected = numpy_metrics(f, o, c, r, w)
    scale = 1.0 + float(np.max(np.abs(np.stack([f, o, c, r])))) ** 2
    for name in ("mse", "mse_bias_corrected", "clone_distance"):
        assert abs(getattr(m, name) - expected[name]) <= 1e-9 * scale, name
    assert m.bias == pytest.approx(expected["bias"], abs=1e-9 * math.sqrt(scale))
    assert m.mae == pytest.approx(expected["mae"], abs=1e-9 * math.sqrt(scale))
    if math.isfinite(expected["acc"]) and math.isfinite(m.acc):
        assert m.acc == pytest.approx(expected["acc"], abs=1e-6)
    assert -1.0 <= m.acc <= 1.0 or math.isnan(m.acc)


def test_constant_field_has_no_correlation_and_a_nearly_constant_one_is_exact():
    w = np.array([0.2, 1.0, 0.7, 0.1])
    o = np.arange(20, dtype=np.float32).reshape(4, 5)
    constant = np.full((4, 5), 101325.0, dtype=np.float32)
    m = field_metrics(constant, o, w, climatology=np.zeros((4, 5), np.float32), pattern=o)
    assert math.isnan(m.pattern_correlation) and math.isnan(m.acc)  # undefined, not a rounding artefact
    nearly = constant.copy()
    nearly[1, 2] += 0.0078125  # one ulp-scale bump on a 1e5 field: the one-pass moments cancel
    bumped = field_metrics(nearly, nearly, w, pattern=nearly)
    assert bumped.pattern_correlation == pytest.approx(1.0, abs=1e-12)

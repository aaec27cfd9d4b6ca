"""Day1 and ERA5-per-lead scoring: golden combinations, clones, sanity, verification and coverage."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime

import numpy as np
import pytest

from weather_dagster.core.errors import InvalidDataError
from weather_dagster.reference.grid import Grid
from weather_dagster.scoring.checks import LeadFailed, check_and_fill, interior_coverage
from weather_dagster.scoring.day1 import Day1Component, combine_day1
from weather_dagster.scoring.era5 import (
    FAILED,
    REJECTED,
    SCORED,
    VariableScore,
    lead_score,
    score_era5_lead,
    score_era5_lead_many,
)
from weather_dagster.scoring.kernel import FieldMetrics
from weather_dagster.scoring.levels import combine_levels, layer_thickness, thickness_weights
from weather_dagster.scoring.regrid import to_grid
from weather_dagster.settings import ScoringSettings
from weather_dagster_tests.support.synthetic_scoring import MinerProfile, SyntheticForecast, SyntheticScoringInputs

INIT = datetime(2026, 11, 20, tzinfo=UTC)
# The formulas as intended; the reference profile has tests of its own (test_scoring_profiles.py).
S = ScoringSettings(profile="corrected")
GRID = Grid(4.0)


@pytest.fixture(scope="module")
def inputs() -> SyntheticScoringInputs:
    return SyntheticScoringInputs(GRID)


def day1(inputs, profile: MinerProfile, settings: ScoringSettings = S):
    return inputs.day1(SyntheticForecast(inputs.atmosphere, INIT, profile), INIT, settings)


# -- levels ------------------------------------------------------------------------------------------


def test_layer_thickness_of_the_13_standard_levels():
    expected = [25, 50, 50, 50, 50, 75, 100, 100, 100, 125, 112.5, 75, 37.5]
    assert layer_thickness(S.pressure_levels_hpa).tolist() == expected
    weights = thickness_weights(S.pressure_levels_hpa)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights[500] == pytest.approx(100 / 950)


def test_combine_levels_renormalises_over_defined_levels_and_keeps_infinities():
    w = thickness_weights((100, 500, 900))  # thickness 200, 400, 200
    assert combine_levels({100: 1.0, 500: 2.0, 900: 3.0}, w) == pytest.approx(2.0)
    assert combine_levels({100: 1.0, 500: math.nan, 900: 3.0}, w) == pytest.approx(2.0)
    assert combine_levels({100: -math.inf, 500: 1.0}, w) == -math.inf
    assert math.isnan(combine_levels({100: math.nan}, w))


# -- Day1 ----------------------------------------------------------------------------------------------


def _metrics(skill: float, acc: float) -> FieldMetrics:
    nan = math.nan
    return FieldMetrics(nan, nan, nan, nan, nan, nan, skill, acc, 0.9, nan, 10, False)


def _component(name: str, skill: float, acc: float, distance: float = 1e9, penalty: float = 0.0, passed=True):
    comp = Day1Component(name, name, None, 12, INIT, metrics=_metrics(skill, acc))
    comp.clone_distance, comp.clone_penalty, comp.passed = distance, penalty, passed
    comp.skill_after_penalty = skill - penalty if passed else math.nan
    return comp


def test_day1_combination_golden():
    comps = [_component("2t", 0.5, 0.8), _component("msl", -0.2, 0.4), _component("10u", 0.3, math.nan)]
    result = combine_day1(comps, S)
    skill = (0.5 + 0.0 + 0.3) / 3  # max(0, SS - P)
    acc = ((0.8 + 1) / 2 + (0.4 + 1) / 2) / 2  # finite ACCs only
    assert result.score == pytest.approx(0.6 * skill + 0.4 * acc)
    assert result.passed and not result.clamped


def test_day1_sanity_failures_are_left_out_and_nothing_gives_zero():
    comps = [_component("2t", 0.9, 0.9), _component("msl", 0.1, 0.1, passed=False)]
    assert combine_day1(comps, S).score == pytest.approx(0.6 * 0.9 + 0.4 * 0.95)
    empty = combine_day1([_component("2t", 0.9, 0.9, passed=False)], S)
    assert empty.score == 0.0 and not empty.passed


def test_day1_clone_penalty_strict_clamp():
    # D = 0.8 delta: a penalty (D < delta) -> clamp; D exactly delta: no penalty, no clamp.
    delta = S.clone_delta["msl"]
    clamped = combine_day1([_component("msl", 0.9, 0.9, distance=0.8 * delta, penalty=0.2)], S)
    assert clamped.clamped and clamped.score == pytest.approx(S.day1_clone_clamp) and not clamped.passed
    free = combine_day1([_component("msl", 0.9, 0.9, distance=delta)], S)
    assert not free.clamped and free.score > 0.1


def test_gfs_clone_gets_day1_pass_zero(inputs):
    result = day1(inputs, MinerProfile(mode="gfs_clone"))
    assert result.clamped and not result.passed
    assert result.score <= S.day1_clone_clamp
    for comp in result.components:
        assert comp.clone_distance == pytest.approx(0.0, abs=1e-6)
        assert comp.clone_penalty == pytest.approx(1.0)


def test_skilful_miner_passes_day1_and_perfect_forecast_scores_one(inputs):
    good = day1(inputs, MinerProfile(phase_deg_per_day=1.0, noise_per_day=0.05))
    assert good.passed and not good.clamped and 0.1 <= good.score < 1.0
    assert {c.variable for c in good.components} == set(S.day1_variables)
    perfect = day1(inputs, MinerProfile(mode="truth"))
    assert perfect.score == pytest.approx(1.0)


def test_day1_sanity_bounds_exclude_a_variable(inputs):
    tight = S.model_copy(update={"sanity_bounds": {**S.sanity_bounds, "2t": (300.0, 301.0)}})
    result = day1(inputs, MinerProfile(mode="truth"), tight)
    t2 = next(c for c in result.components if c.variable == "2t")
    assert not t2.passed and t2.sanity["climatology_passed"] is False
    assert all(c.passed for c in result.components if c.variable != "2t")


def test_day1_pattern_correlation_rule(inputs):
    strict = S.model_copy(update={"min_pattern_correlation": 0.99999})
    result = day1(inputs, MinerProfile(phase_deg_per_day=30.0, noise_per_day=1.0), strict)
    assert not any(c.passed for c in result.components)
    assert result.score == 0.0


def test_day1_nan_injection_and_extremes_fail_verification(inputs):
    with pytest.raises(InvalidDataError):
        day1(inputs, MinerProfile(mode="extreme"))
    with pytest.raises(InvalidDataError):
        day1(inputs, MinerProfile(mode="nan", nan_fraction=0.95))


# -- verification ------------------------------------------------------------------------------------


def _field_with_interior_gaps(n_missing: int, shape=(100, 100)) -> np.ndarray:
    field = np.ones(shape, dtype=np.float32)
    interior = field[1:-1, 1:-1].reshape(-1)
    interior[:n_missing] = np.nan
    field[1:-1, 1:-1] = interior.reshape(shape[0] - 2, shape[1] - 2)
    return field


def test_coverage_just_under_and_just_over_the_lead_threshold():
    clim = np.full((100, 100), 5.0, dtype=np.float32)
    interior = 98 * 98  # 9604 cells; 0.9985 of them is 9589.6
    over = _field_with_interior_gaps(14)  # coverage 0.998542 >= 0.9985
    filled, check = check_and_fill(over, clim, "x", S)
    assert check.coverage == pytest.approx(1 - 14 / interior) and check.coverage >= 0.9985
    assert np.isfinite(filled).all() and np.count_nonzero(filled == 5.0) == 14  # climatology fill
    under = _field_with_interior_gaps(15)  # coverage 0.998438 < 0.9985
    with pytest.raises(LeadFailed):
        check_and_fill(under, clim, "x", S)


def test_one_cell_seam_is_tolerated_and_filled():
    field = np.ones((50, 60), dtype=np.float32)
    field[:, -1] = np.nan  # the longitude seam
    field[0, :] = np.nan  # the north pole row
    assert interior_coverage(field) == 1.0
    filled, check = check_and_fill(field, np.zeros_like(field), "x", S)
    assert check.filled_points == 50 + 60 - 1 and filled[0, 0] == 0.0 and filled[5, 5] == 1.0
    field[:, -2] = np.nan  # a second column is not a seam any more
    with pytest.raises(LeadFailed):
        check_and_fill(field, np.zeros_like(field), "x", S)


def test_extremes_and_almost_no_data_reject_the_forecast():
    field = np.ones((10, 10), dtype=np.float32)
    field[3, 3] = 2e12
    with pytest.raises(InvalidDataError, match="beyond"):
        check_and_fill(field, field, "x", S)
    field[3, 3] = np.inf
    with pytest.raises(InvalidDataError):
        check_and_fill(field, field, "x", S)
    sparse = np.full((10, 10), np.nan, dtype=np.float32)
    sparse[5, 5] = 1.0
    with pytest.raises(InvalidDataError, match="coverage"):
        check_and_fill(sparse, np.ones_like(sparse), "x", S)


# -- ERA5 ----------------------------------------------------------------------------------------------


def test_lead_score_golden_with_the_reference_median_rmse():
    variables = {
        "a": VariableScore("a", rmse=1.0, acc=0.6, skill=0.5, climatology_rmse=2.0),
        "b": VariableScore("b", rmse=2.0, acc=0.2, skill=1.5, climatology_rmse=2.0),
        "c": VariableScore("c", rmse=4.0, acc=-0.2, skill=-0.3, climatology_rmse=8.0),
    }
    score, ref = lead_score(variables, S)
    assert ref == 2.0  # sorted [1, 2, 4], index 3 // 2
    expected = (
        0.6 * (0.5 + 1.0 + 0.0) / 3
        + 0.3 * (0.8 + 0.6 + 0.4) / 3
        + 0.1 * (1 / (1 + 0.5) + 1 / (1 + 1) + 1 / (1 + 2)) / 3
    )
    assert score == pytest.approx(expected)
    clim = S.model_copy(update={"rmse_normalisation": "climatology"})
    score_c, _ = lead_score(variables, clim)
    assert score_c == pytest.approx(
        expected - 0.1 * (1 / 1.5 + 1 / 2 + 1 / 3) / 3 + 0.1 * (1 / 1.5 + 1 / 2 + 1 / 1.5) / 3
    )


def test_era5_lead_scores_a_skilful_miner_and_a_perfect_one(inputs):
    truth, clim = inputs.truth("era5", INIT), inputs.climatology()
    good = score_era5_lead(SyntheticForecast(inputs.atmosphere, INIT, MinerProfile()), truth, clim, INIT, 48, S)
    assert good.status == SCORED and 0.0 < good.score < 1.0
    assert set(good.variables) == set(S.era5_variables)
    assert len(good.variables["z"].levels) == 13 and good.variables["2t"].levels[0].level is None
    perfect = score_era5_lead(
        SyntheticForecast(inputs.atmosphere, INIT, MinerProfile(mode="truth")), truth, clim, INIT, 48, S
    )
    # RMSE terms: every RMSE is 0, so the middle RMSE is 0 and each term is 0.5 (as the reference).
    assert perfect.score == pytest.approx(0.6 + 0.3 + 0.1 * 0.5)
    worse = score_era5_lead(
        SyntheticForecast(inputs.atmosphere, INIT, MinerProfile(phase_deg_per_day=20, noise_per_day=0.8)),
        truth,
        clim,
        INIT,
        48,
        S,
    )
    assert worse.score < good.score


def test_era5_field_major_many_equals_one_at_a_time_and_isolates_bad_miners(inputs):
    truth, clim = inputs.truth("era5", INIT), inputs.climatology()
    profiles = {1: MinerProfile(), 2: MinerProfile(mode="extreme"), 3: MinerProfile(mode="nan", nan_fraction=0.3)}
    forecasts = {uid: SyntheticForecast(inputs.atmosphere, INIT, p) for uid, p in profiles.items()}
    many = score_era5_lead_many(forecasts, truth, clim, INIT, 24, S)
    assert many[1].status == SCORED
    assert many[2].status == REJECTED and "beyond" in many[2].reason
    assert many[3].status == FAILED and "coverage" in many[3].reason
    single = score_era5_lead(forecasts[1], truth, clim, INIT, 24, S)
    assert single.score == many[1].score


class _ThreadRecording:
    """A miner's forecast that notes which threads read it."""

    def __init__(self, source) -> None:
        self.source, self.grid, self.threads = source, source.grid, set()

    def field(self, variable, level, lead):
        self.threads.add(threading.current_thread().name)
        return self.source.field(variable, level, lead)


@pytest.mark.parametrize("profile", ["corrected", "reference"])
def test_era5_miners_scored_side_by_side_give_the_same_results_as_one_thread(inputs, profile):
    settings = ScoringSettings(profile=profile)
    truth, clim = inputs.truth("era5", INIT), inputs.climatology()
    profiles = [MinerProfile(), MinerProfile(mode="extreme"), MinerProfile(mode="nan", nan_fraction=0.3)]
    profiles += [MinerProfile(mode="nan", nan_fraction=0.0005), MinerProfile(phase_deg_per_day=20, noise_per_day=0.8)]

    def forecasts():
        return {uid: _ThreadRecording(SyntheticForecast(inputs.atmosphere, INIT, p)) for uid, p in enumerate(profiles)}

    alone, side_by_side = forecasts(), forecasts()
    one = score_era5_lead_many(alone, truth, clim, INIT, 24, settings)
    many = score_era5_lead_many(side_by_side, truth, clim, INIT, 24, settings, threads=3)
    assert {name for f in alone.values() for name in f.threads} == {threading.current_thread().name}
    assert {name.split("_")[0] for f in side_by_side.values() for name in f.threads} == {"score-miner"}
    assert len({name for f in side_by_side.values() for name in f.threads}) > 1
    statuses = {uid: r.status for uid, r in one.items()}
    assert SCORED in statuses.values() and len(set(statuses.values())) > 1
    for uid, result in one.items():
        other = many[uid]
        assert (other.status, other.reason) == (result.status, result.reason)
        assert other.score == result.score or (math.isnan(other.score) and math.isnan(result.score))
        for name, variable in result.variables.items():
            assert [c.metrics for c in other.variables[name].levels] == [c.metrics for c in variable.levels]
            assert [c.level for c in other.variables[name].levels] == [c.level for c in variable.levels]


def test_miner_on_a_coarser_grid_is_interpolated_to_the_truth_grid(inputs):
    coarse = Grid(12.0)
    field = np.add.outer(coarse.latitudes, np.zeros(coarse.nlon)).astype(np.float32)  # linear in latitude
    fine = to_grid(field, coarse, GRID)
    assert fine.shape == GRID.shape
    np.testing.assert_allclose(fine[:, 0], GRID.latitudes, atol=1e-4)
    wave = np.cos(np.deg2rad(coarse.longitudes))[None, :].repeat(coarse.nlat, 0).astype(np.float32)
    wrapped = to_grid(wave, coarse, GRID)
    # 356 lies 8/12 of the way from 348 to 360 (= 0): longitude wraps around
    assert wrapped[0, -1] == pytest.approx(np.cos(np.deg2rad(348.0)) / 3 + 2 / 3, abs=1e-5)
    assert to_grid(field, coarse, coarse) is field
    forecast = SyntheticForecast(inputs.atmosphere, INIT, MinerProfile(mode="truth"), grid_override=coarse)
    result = score_era5_lead(forecast, inputs.truth("era5", INIT), inputs.climatology(), INIT, 24, S)
    assert result.status == SCORED and 0.5 < result.score < 1.0


def test_lead_missing_a_variable_is_not_aggregated(inputs):
    class Missing:
        grid = GRID

        def field(self, variable, level, lead):
            if variable == "q":
                raise InvalidDataError("q is not in the store")
            return inputs.atmosphere.field(variable, level, INIT)

    result = score_era5_lead(Missing(), inputs.truth("era5", INIT), inputs.climatology(), INIT, 24, S)
    assert result.status == REJECTED and not result.ok


def test_settings_weights_change_the_lead_score():
    variables = {"a": VariableScore("a", 1.0, 0.0, 1.0, 1.0)}
    only_skill = S.model_copy(update={"era5_skill_weight": 1.0, "era5_acc_weight": 0.0, "era5_rmse_weight": 0.0})
    assert lead_score(variables, only_skill)[0] == pytest.approx(1.0)

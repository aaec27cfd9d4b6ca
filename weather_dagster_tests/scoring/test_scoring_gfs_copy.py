"""A miner that serves the GFS forecast as its own: what each profile pays it (README, "A copy of GFS").

The clone check exists only in Day1 (distance to the GFS forecast); the ERA5 leads compare with ERA5
and climatology, never with GFS, so a copy of a good forecast scores there like a good forecast. The
figures quoted in the README are printed here (``pytest -s``) and pinned loosely by the assertions.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from weather_dagster.reference.grid import Grid
from weather_dagster.scoring.era5 import score_era5_lead_many
from weather_dagster.scoring.round_score import era5_combined, overall_score
from weather_dagster.settings import ScoringSettings
from weather_dagster_tests.support.synthetic_scoring import MinerProfile, SyntheticForecast, SyntheticScoringInputs

INIT = datetime(2026, 11, 20, tzinfo=UTC)
MINERS = {"gfs_copy": MinerProfile(mode="gfs_clone"), "skilful": MinerProfile()}


@pytest.fixture(scope="module")
def inputs() -> SyntheticScoringInputs:
    return SyntheticScoringInputs(Grid(4.0))


def _round(inputs: SyntheticScoringInputs, settings: ScoringSettings) -> dict[str, tuple[float, bool, bool, float]]:
    """name -> (ERA5 combined, Day1 passed, Day1 clamped, overall) over all ten leads."""
    forecasts = {name: SyntheticForecast(inputs.atmosphere, INIT, p) for name, p in MINERS.items()}
    leads: dict[str, dict[int, float]] = {name: {} for name in forecasts}
    for lead in settings.era5_lead_hours:
        results = score_era5_lead_many(
            forecasts, inputs.truth("era5", INIT), inputs.climatology(), INIT, lead, settings
        )
        for name, result in results.items():
            leads[name][lead] = result.score
    out = {}
    for name, forecast in forecasts.items():
        day1 = inputs.day1(forecast, INIT, settings)
        combined, _ = era5_combined(leads[name], settings)
        out[name] = (combined, day1.passed, day1.clamped, overall_score(leads[name], day1.passed, settings))
    return out


@pytest.mark.parametrize("profile", ["reference", "corrected"])
def test_a_gfs_copy_loses_only_the_day1_share(inputs: SyntheticScoringInputs, profile: str) -> None:
    settings = ScoringSettings(profile=profile)
    scores = _round(inputs, settings)
    copy_era5, copy_passed, copy_clamped, copy_overall = scores["gfs_copy"]
    good_era5, good_passed, _, good_overall = scores["skilful"]
    print(
        f"{profile}: gfs_copy era5 {copy_era5:.3f} overall {copy_overall:.3f}; "
        f"skilful era5 {good_era5:.3f} overall {good_overall:.3f}"
    )
    # Day1 catches the copy: clamped, no pass, so it never gets the round's 0.05 Day1 share.
    assert copy_clamped and not copy_passed and good_passed
    # ERA5 does not: the copy keeps more than 90 % of a skilful miner's ERA5 score ...
    assert copy_era5 > 0.9 * good_era5 > 0
    # ... so its overall score is the skilful one's minus the Day1 share and the small skill gap.
    expected = good_overall - settings.round_day1_weight - settings.round_era5_weight * (good_era5 - copy_era5)
    assert copy_overall == pytest.approx(expected, abs=1e-9)
    assert copy_overall > 0.8 * good_overall

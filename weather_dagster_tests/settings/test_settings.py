from __future__ import annotations

import logging

import pytest

from weather_dagster import scored_fields
from weather_dagster.core.retry import RetryPolicy, WorkKind
from weather_dagster.reference.variables import VARIABLES, split_level_name
from weather_dagster.settings import Settings, SettingsError, load_settings


def test_defaults_reproduce_the_reference() -> None:
    s = load_settings()
    assert s.retry.query_max_attempts == 3 and s.retry.query_backoff_s == (60, 300, 900)
    assert s.retry.poll_max_attempts == 20 and s.retry.poll_interval_s == 300
    assert s.retry.day1_backoff_s == (300, 600, 1200) and s.retry.era5_max_attempts == 5
    assert s.retry.download_max_attempts == 6 and s.retry.download_base_backoff_s == 300
    assert s.scoring.era5_lead_hours == (24, 48, 72, 96, 120, 144, 168, 192, 216, 240)
    assert s.scoring.day1_lead_hours == (12,)
    assert s.scoring.clone_delta == {"2t": 0.0025, "msl": 400.0, "10u": 0.01, "10v": 0.01, "z500": 100.0}
    assert s.scoring.pressure_levels_hpa == (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
    assert s.scoring.era5_variables == ("2t", "10u", "10v", "msl", "t", "u", "v", "q", "z")
    assert (s.scoring.sigmoid_b, s.scoring.sigmoid_q, s.scoring.sigmoid_v, s.scoring.sigmoid_k) == (70, 8, 0.3, 0.98)
    assert s.scoring.burn_enabled and s.scoring.coldkey_penalty_enabled
    assert s.scoring.era5_truth_delay_hours == 126
    assert s.round.trigger_hour_utc == 18 and s.round.trigger_jitter_max_minutes == 30
    assert not s.test_mode and s.era5_truth_delay_hours == 126


def test_one_list_of_fields_for_settings_and_reference() -> None:
    """The settings' defaults and the reference table are the lists of ``scored_fields``, not copies."""
    s = load_settings().scoring
    assert s.pressure_levels_hpa == scored_fields.PRESSURE_LEVELS_HPA
    assert s.era5_variables == scored_fields.ERA5_VARIABLES == tuple(VARIABLES)
    assert tuple(n for n, v in VARIABLES.items() if not v.atmospheric) == scored_fields.SURFACE_VARIABLES
    assert tuple(n for n, v in VARIABLES.items() if v.atmospheric) == scored_fields.ATMOSPHERIC_VARIABLES
    assert s.day1_variables == scored_fields.DAY1_VARIABLES
    assert all(split_level_name(name)[0] in VARIABLES for name in s.day1_variables)


def test_environment_overrides_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEATHER_RETRY__QUERY_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("WEATHER_SCORING__ERA5_LEAD_HOURS", "[24, 48]")
    monkeypatch.setenv("WEATHER_DATABASE_URL", "sqlite:////tmp/x.db")
    s = load_settings()
    assert s.retry.query_max_attempts == 5
    assert s.scoring.era5_lead_hours == (24, 48)
    assert s.resolved_database_url == "sqlite:////tmp/x.db"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "WEATHER_RETRY__QUERY_MAX_ATTEMPTS",
            "0",
            "WEATHER_RETRY__QUERY_MAX_ATTEMPTS: Input should be greater than or equal to 1 (accepted: >= 1, <= 100)",
        ),
        ("WEATHER_ROUND__TRIGGER_HOUR_UTC", "24", "WEATHER_ROUND__TRIGGER_HOUR_UTC"),
        ("WEATHER_SCORING__RMSE_NORMALISATION", "nope", "one of 'reference_median', 'climatology'"),
        ("WEATHER_SCORING__MIN_FINITE_COVERAGE_LEAD", "1.5", "<= 1.0"),
        ("WEATHER_LOG_LEVEL", "LOUD", "WEATHER_LOG_LEVEL"),
        ("WEATHER_SCORING__ERA5_LEAD_HOURS", "[25]", "multiples of 6"),
    ],
)
def test_bad_value_names_variable_and_range(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert expected in str(info.value)


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(SettingsError, match="Extra inputs are not permitted"):
        load_settings(retry={"query_max_atempts": 3})


def test_test_mode_is_explicit_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SettingsError, match="hindcast_days: only allowed with WEATHER_TEST_MODE"):
        load_settings(hindcast_days=10)
    with caplog.at_level(logging.WARNING):
        s = load_settings(test_mode=True, hindcast_days=10)
    assert "TEST MODE is on" in caplog.text
    assert s.era5_truth_delay_hours == 0
    # Short retries in test mode come from one scale factor.
    assert RetryPolicy.from_settings(s).backoff(WorkKind.QUERY, 1) == pytest.approx(0.6)
    assert RetryPolicy.from_settings(load_settings()).backoff(WorkKind.QUERY, 1) == 60


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception, match="frozen"):
        s.test_mode = True  # type: ignore[misc]


def test_secrets_are_not_in_repr() -> None:
    s = load_settings(database_url="postgresql://u:hunter2@h/db", miners={"hotkey_seed": "00" * 32})
    assert "hunter2" not in repr(s) and "00" * 32 not in repr(s)

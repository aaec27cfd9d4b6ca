"""One validated settings object for the whole validator (environment prefix ``WEATHER_``).

Top-level fields read ``WEATHER_<NAME>``; grouped fields read ``WEATHER_<GROUP>__<NAME>``, e.g.
``WEATHER_RETRY__QUERY_MAX_ATTEMPTS=5``. Tuples, lists and dicts are given as JSON. This is the only
place in the package that reads the environment: everything else receives a :class:`Settings`
(through the Dagster ``settings`` resource).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from weather_dagster.settings.api import ApiSettings
from weather_dagster.settings.chain import ChainSettings
from weather_dagster.settings.miners import MinerSettings
from weather_dagster.settings.reference import ReferenceSettings
from weather_dagster.settings.retry import RetrySettings
from weather_dagster.settings.round import RoundSettings
from weather_dagster.settings.scoring import ScoringSettings

__all__ = [
    "ApiSettings",
    "ChainSettings",
    "MinerSettings",
    "ReferenceSettings",
    "RetrySettings",
    "RoundSettings",
    "ScoringSettings",
    "Settings",
    "SettingsError",
    "load_settings",
]

ENV_PREFIX = "WEATHER_"
ENV_NESTED_DELIMITER = "__"
log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """Raised at start-up when a setting is invalid; the message names each variable and its range."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    data_dir: Path = Path(".weather-data")
    # The product's own tables. Empty means a SQLite file under data_dir.
    database_url: str = Field("", repr=False)
    # Hindcast mode for demos and tests: init shifted back, no ERA5 delay, short retries. Never implied.
    test_mode: bool = False
    hindcast_days: int = Field(0, ge=0, le=3650)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    retry: RetrySettings = RetrySettings()
    scoring: ScoringSettings = ScoringSettings()
    reference: ReferenceSettings = ReferenceSettings()
    miners: MinerSettings = MinerSettings()
    round: RoundSettings = RoundSettings()
    chain: ChainSettings = ChainSettings()
    api: ApiSettings = ApiSettings()

    @model_validator(mode="after")
    def _hindcast_needs_test_mode(self) -> Settings:
        if self.hindcast_days and not self.test_mode:
            raise ValueError("hindcast_days: only allowed with WEATHER_TEST_MODE=true")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'weather.db').resolve()}"

    @property
    def era5_truth_delay_hours(self) -> float:
        """In test mode truth is taken as soon as the source has it; otherwise the reference's delay."""
        return 0.0 if self.test_mode else self.scoring.era5_truth_delay_hours


def _range_of(model: type, path: tuple[Any, ...]) -> str:
    """Describe the accepted range of the field at ``path`` from its declared constraints."""
    fields = getattr(model, "model_fields", {})
    if not path or path[0] not in fields:
        return ""
    info = fields[path[0]]
    annotation = info.annotation
    if len(path) > 1 and isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return _range_of(annotation, path[1:])
    bounds = []
    for meta in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("multiple_of", "multiple of")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{sym} {value}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            bounds.append(f"matching {pattern}")
    if not bounds and hasattr(annotation, "__args__") and str(annotation).startswith("typing.Literal"):
        bounds.append("one of " + ", ".join(repr(a) for a in annotation.__args__))
    return ("accepted: " + ", ".join(bounds)) if bounds else ""


def env_name(path: tuple[Any, ...]) -> str:
    parts = [str(p) for p in path if not isinstance(p, int)]
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(p.upper() for p in parts[:2])


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        path = tuple(item.get("loc", ()))
        accepted = _range_of(Settings, path)
        lines.append(f"{env_name(path)}: {item['msg']}" + (f" ({accepted})" if accepted else ""))
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment plus explicit overrides, failing with a readable error."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(format_validation_error(exc)) from None
    log.info(
        "scoring profile: %s (%s)",
        settings.scoring.profile,
        "reproduces deployed Gaia v2.9.96, accidents included"
        if settings.scoring.profile == "reference"
        else "intended formulas: scores differ from the subnet's other validators",
    )
    if settings.test_mode:
        log.warning(
            "TEST MODE is on (WEATHER_TEST_MODE=true): hindcast %d days, no ERA5 delay, short retries. "
            "Never run a production validator like this.",
            settings.hindcast_days,
        )
    return settings

"""Shared helpers for the settings sub-models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsSection(BaseModel):
    """A frozen, strictly validated group of settings (unknown keys are errors, not silently ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

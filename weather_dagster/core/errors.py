"""The product's exception hierarchy and the sanitizer that turns any exception into ``error_json``.

The classes say *what kind* of failure happened; ``core.retry`` decides what to do about each kind.
Error text can carry secrets from miners or from our own configuration (bearer tokens, JWTs, keys,
database passwords), so nothing is stored or logged without passing through :func:`sanitize_error`.
"""

from __future__ import annotations

import re
from typing import Any

MAX_ERROR_MESSAGE_BYTES = 2048


class WeatherError(Exception):
    """Base of every error the validator raises on purpose."""

    category = "error"


class InvalidDataError(WeatherError):
    """Data from a miner or a source is wrong (shape, units, NaN, manifest): fail, never retry."""

    category = "invalid_data"


class ManifestError(InvalidDataError):
    category = "manifest"


class SafetyViolation(InvalidDataError):
    """A miner asked us to go somewhere, or read something, outside the safety perimeter."""

    category = "safety"


class MinerRejected(WeatherError):
    """The miner refused the job for good (e.g. ``fetch_rejected`` on a hotkey mismatch)."""

    category = "rejected"


class MinerJobFailed(WeatherError):
    """The miner reported its own job failed."""

    category = "miner_failed"


class MinerNotReady(WeatherError):
    """The miner says its forecast is not ready yet (e.g. kerchunk-request answers ``processing``): retry later."""

    category = "not_ready"


class TruthNotAvailable(WeatherError):
    """Truth for this valid time is not published yet: a wait, not an attempt."""

    category = "truth_not_available"


class SourceError(WeatherError):
    """A reference-data source answered wrongly (404, 500, truncated, wrong grid); names the URL."""

    category = "source"

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"{problem} (url: {url})")
        self.url = url
        self.problem = problem


class TransientSourceError(SourceError):
    """A blip of a reference-data source (reset, 5xx, 429, timeout, truncated body): repeated in-step
    a few times (``reference.http``), then a transient step retry like any :class:`SourceError`."""


_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)", re.S), "[REDACTED_PEM]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [REDACTED]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"), "[REDACTED_JWT]"),
    (
        re.compile(
            r"(?i)([\"']?(?:access_token|token|secret|password|passwd|api[_-]?key|private[_-]?key|"
            r"symmetric[_-]?key|encrypted_symmetric_key|seed|mnemonic|authorization|signature)[\"']?"
            r"\s*[:=]\s*)([\"']?)[^\s\"',;}]+"
        ),
        r"\1\2[REDACTED]",
    ),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1[REDACTED]@"),
    (re.compile(r"\b(?:0x)?[0-9a-fA-F]{32,}\b"), "[REDACTED_HEX]"),
    (re.compile(r"[A-Za-z0-9_-]{40,}={0,2}"), "[REDACTED_KEY]"),
]


# C0 controls and DEL (newlines included): one stored or logged error is one line, never a forged one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def redact(text: str) -> str:
    """Remove anything that looks like a credential; applied to every message before it is stored."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def truncate_utf8(text: str, max_bytes: int = MAX_ERROR_MESSAGE_BYTES) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    marker = "...[truncated]"
    return encoded[: max_bytes - len(marker)].decode("utf-8", errors="ignore") + marker


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def error_category(exc: BaseException) -> str:
    return getattr(exc, "category", None) or type(exc).__name__


def sanitize_error(exc: BaseException | str, **extra: Any) -> dict[str, Any]:
    """The bounded, secret-free form of an error stored in ``error_json`` and shown to operators."""
    if isinstance(exc, BaseException):
        message = str(exc) or type(exc).__name__
        result: dict[str, Any] = {"type": type(exc).__name__, "category": error_category(exc)}
    else:
        message = exc
        result = {"type": "Error", "category": "error"}
    result["message"] = truncate_utf8(_one_line(redact(message)))
    for key, value in extra.items():
        result[key] = truncate_utf8(_one_line(redact(str(value))), 256) if isinstance(value, str) else value
    return result

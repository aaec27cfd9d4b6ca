from __future__ import annotations

import pytest

from weather_dagster.core.errors import MAX_ERROR_MESSAGE_BYTES, SourceError, redact, sanitize_error

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtaW5lciIsImV4cCI6MTcwMDAwMDAwMH0.c2lnbmF0dXJlLWJ5dGVz"
HEX = "ab" * 32


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"GET /forecasts/x failed; Authorization: Bearer {JWT}", JWT),
        (f"token was {JWT} here", JWT),
        (f"seed {HEX}", HEX),
        (f"signature=0x{HEX}{HEX}", HEX),
        ("connect postgresql://user:hunter2@db:5432/x failed", "hunter2"),
        ('{"access_token": "s3cr3t-token-value"}', "s3cr3t-token-value"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "MIIEvQIBADANBg"),
        ("fernet key ZmVybmV0LWtleS1maWxsZXItZmlsbGVyLWZpbGxlci0xMjM0NQ== rejected", "ZmVybmV0LWtleS1maWxsZXI"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "REDACTED" in cleaned


def test_plain_messages_survive() -> None:
    message = "connection refused by 127.0.0.1:8091 after 30 s; lead 24h"
    assert redact(message) == message


def test_sanitized_shape_and_cap() -> None:
    result = sanitize_error(SourceError("http://127.0.0.1/gfs.f000", "HTTP 404 " + "not found " * 1000))
    assert result["type"] == "SourceError" and result["category"] == "source"
    assert len(result["message"].encode()) <= MAX_ERROR_MESSAGE_BYTES
    assert result["message"].startswith("HTTP 404") and result["message"].endswith("[truncated]")
    multibyte = sanitize_error(ValueError("é" * 5000))
    assert len(multibyte["message"].encode()) <= MAX_ERROR_MESSAGE_BYTES


def test_sanitized_messages_are_one_line_without_control_characters() -> None:
    """A miner's newline or terminal escape must not forge a log line or a table row (issue 12)."""
    result = sanitize_error(RuntimeError("boom\n2026-01-01 CRITICAL forged\x1b[31m\r\x00tail"), note="a\nb")
    assert result["message"] == "boom 2026-01-01 CRITICAL forged [31m tail"
    assert result["note"] == "a b"

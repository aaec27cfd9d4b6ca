"""The demo miners' store tokens: HS256 JWTs whose subject is the job id, as the reference miner issues.

Kept apart from the miner's endpoints because the token format is the one contract the validator
side relies on (it sends the token back as ``Authorization: Bearer ...`` and never parses it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

TTL_S = 7200


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(secret: bytes, header: str, body: str) -> str:
    return _b64url(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())


def issue(secret: bytes, subject: str, ttl_s: float = TTL_S) -> str:
    """A signed token for ``subject``, valid ``ttl_s`` seconds from now."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps({"sub": subject, "exp": int(time.time() + ttl_s)}).encode())
    return f"{header}.{body}.{_mac(secret, header, body)}"


def subject(secret: bytes, authorization: str) -> str | None:
    """The subject of a valid, unexpired bearer token; None for anything else (never raises)."""
    token = authorization.removeprefix("Bearer ").strip()
    try:
        header, body, signature = token.split(".")
        if not hmac.compare_digest(_mac(secret, header, body), signature):
            return None
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    return claims.get("sub") if claims.get("exp", 0) > time.time() else None

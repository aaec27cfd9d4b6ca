"""Keyset (cursor) pagination: a page is ``WHERE key > last_key ORDER BY key LIMIT n``, never OFFSET.

OFFSET makes the database walk and discard every earlier row, so page 50 of a round's steps costs
fifty pages; a keyset cursor resumes at an index position. The cursor is the last row's key as
URL-safe base64 JSON: opaque to clients, and checked on the way back in (a forged cursor is a 400,
never a query on values of the wrong type).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


class BadRequest(ValueError):
    """A query parameter the API cannot use; the message is shown to the client as is."""


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after: tuple[Any, ...] | None


def encode_cursor(key: Sequence[Any]) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> tuple[Any, ...]:
    """The key a cursor stands for, each element checked against ``types`` (bool is not an int here)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("cursor: not a cursor this API issued") from None
    if not isinstance(values, list) or len(values) != len(types):
        raise BadRequest("cursor: not a cursor for this listing")
    for value, kind in zip(values, types, strict=True):
        if type(value) is not kind:
            raise BadRequest("cursor: not a cursor for this listing")
    return tuple(values)


def page_request(params: Any, types: Sequence[type], default: int, cap: int) -> PageRequest:
    """Read ``limit`` (1..cap, default ``default``) and ``cursor`` from the query string."""
    text = params.get("limit")
    if text is None:
        limit = default
    else:
        try:
            limit = int(text)
        except ValueError:
            raise BadRequest("limit: must be an integer") from None
        if not 1 <= limit <= cap:
            raise BadRequest(f"limit: must be between 1 and {cap}")
    cursor = params.get("cursor")
    return PageRequest(limit, decode_cursor(cursor, types) if cursor else None)


def keyset(stmt: sa.Select, columns: Sequence[sa.ColumnElement], page: PageRequest, *, descending: bool = False):
    """``stmt`` restricted to the rows after the cursor, ordered by ``columns``, one row past the page."""
    if page.after is not None:
        key = sa.tuple_(*columns) if len(columns) > 1 else columns[0]
        after = sa.tuple_(*page.after) if len(columns) > 1 else page.after[0]
        stmt = stmt.where(key < after if descending else key > after)
    order = [c.desc() for c in columns] if descending else list(columns)
    return stmt.order_by(*order).limit(page.limit + 1)


def page_of(rows: Sequence[Any], page: PageRequest, key_of, render) -> dict[str, Any]:
    """The response body: at most ``limit`` items and the cursor of the next page (``None`` at the end)."""
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return {
        "items": [render(row) for row in rows],
        "next_cursor": encode_cursor(key_of(rows[-1])) if more and rows else None,
    }

"""Opaque list cursors: where the next page starts, bound to the query that made it.

A cursor is base64url JSON ``{"v": 1, "q": <query fingerprint>, "p": <position>}``. The
fingerprint (filters and sort) stops a cursor from one listing being used with another,
which would silently skip or repeat items; the position is whatever the listing strategy
needs (a store's page token, or the last item's sort key). Clients must treat it as
opaque: its content may change between versions, and anything not made here is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

VERSION = 1
MAX_LENGTH = 2048
INVALID = "The cursor is not valid: use next_cursor from a previous page."


class CursorError(ValueError):
    """A cursor that is malformed, from another version or from another query."""


def fingerprint(query: Any) -> str:
    text = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(position: Any, query_fingerprint: str) -> str:
    body = json.dumps({"v": VERSION, "q": query_fingerprint, "p": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, query_fingerprint: str) -> Any:
    """The position in ``cursor``; CursorError if it is not one of ours for this query."""
    if not cursor or len(cursor) > MAX_LENGTH:
        raise CursorError(INVALID)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):  # deep nesting is not ours either
        raise CursorError(INVALID) from None
    if not isinstance(body, dict) or body.get("v") != VERSION or "p" not in body:
        raise CursorError(INVALID)
    if body.get("q") != query_fingerprint:
        raise CursorError(
            "The cursor belongs to a listing with other filters or sort: "
            "send the same filters and sort as for the first page."
        )
    return body["p"]

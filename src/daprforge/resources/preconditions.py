"""HTTP preconditions (RFC 9110 §13) on a resource's version tag.

The ETag of a resource is its revision, quoted: a strong validator that changes with every
write and with nothing else (the state store's own ETag also changes when the outbox or
an index is touched, so it is not what clients see).
"""

from __future__ import annotations


def etag_of(revision: str) -> str:
    return f'"{revision}"'


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def if_match_allows(header: str, revision: str) -> bool:
    """``If-Match``: ``*`` or a strong tag equal to the current one (weak tags never match)."""
    tags = _tags(header)
    return "*" in tags or etag_of(revision) in tags


def if_none_match_hits(header: str, revision: str) -> bool:
    """``If-None-Match`` on a read: true when the client's copy is current (weak compare)."""
    tags = _tags(header)
    return "*" in tags or etag_of(revision) in (tag.removeprefix("W/") for tag in tags)

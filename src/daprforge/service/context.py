"""The current request's id, for log lines and problem bodies.

Set by the request middleware for every request: the caller's ``X-Request-ID`` when it
sent a usable one, else a new one. (The trace context lives in
:mod:`daprforge.client.tracecontext`, since the client propagates it.)
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_request_id: ContextVar[str | None] = ContextVar("daprforge_request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def request_id_from(header: str | None) -> str:
    """Keep a caller's id only if it is short and harmless in logs and headers."""
    if header and _ACCEPTABLE.match(header):
        return header
    return uuid.uuid4().hex


@contextlib.contextmanager
def use_request_id(request_id: str | None) -> Iterator[str | None]:
    """Make ``request_id`` current inside the ``with`` block."""
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)

"""How a handler tells the sidecar what to do with an event.

Returning normally acknowledges it (SUCCESS). ``raise Retry()`` asks for it again, as the
sidecar's Resiliency policy allows (RETRY); so does any unexpected exception, since it is
most likely a passing failure. ``raise Drop()`` gives up on it for good (DROP): it goes to
the subscription's dead-letter topic when there is one.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    """The ``status`` values daprd understands (case-sensitive)."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


class Retry(Exception):
    """Deliver this event again later."""


class Drop(Exception):
    """Give up on this event (it goes to the dead-letter topic, if any)."""

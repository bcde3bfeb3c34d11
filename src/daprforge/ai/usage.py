"""Token usage per user and per UTC day, in one state document per user.

Every answer adds to it with an ETag read-modify-write (``state.update``): concurrent
answers for the same user, on any replica, conflict and retry instead of losing counts.
Only the most recent days are itemised; ``total`` keeps counting.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from daprforge.ai import state
from daprforge.ai.models import TokenUsage, UsageCounts, UserUsage
from daprforge.client import DaprClient, StateItem

PREFIX = "ai-usage:"
KEEP_DAYS = 31


def utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()


def seconds_to_midnight(now: float) -> float:
    return 86400 - now % 86400


class UsageLedger:
    def __init__(
        self, dapr: DaprClient, store: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.dapr = dapr
        self.store = store
        self.clock = clock

    def key(self, user_id: str) -> str:
        return PREFIX + user_id

    async def record(
        self,
        user_id: str,
        usage: TokenUsage,
        *,
        cached: bool,
        current: StateItem[UserUsage] | None,
    ) -> UserUsage:
        """Add ``usage`` to the user's day; ``current`` is the document as the request read
        it (None: there was none), so an uncontended write needs no second read."""
        change = self.adding(user_id, usage, cached=cached, current=current)
        return await state.write(
            self.dapr, self.store, change.key, change.change, current, type=UserUsage
        )

    def adding(
        self,
        user_id: str,
        usage: TokenUsage,
        *,
        cached: bool,
        current: StateItem[UserUsage] | None,
    ) -> state.Change[UserUsage]:
        """The change that adds ``usage`` to the user's day (for ``state.write_all``)."""
        day = utc_day(self.clock())

        def add(current: UserUsage | None) -> UserUsage:
            current = current or UserUsage(user_id=user_id)
            days = dict(current.days)
            days[day] = days.get(day, UsageCounts()).plus(usage, cached=cached)
            for old in sorted(days)[:-KEEP_DAYS]:
                del days[old]
            return UserUsage(
                user_id=user_id, total=current.total.plus(usage, cached=cached), days=days
            )

        return state.Change(self.key(user_id), add, current, UserUsage)

    async def get(self, user_id: str) -> UserUsage:
        found = await self.dapr.state.get(self.store, self.key(user_id), type=UserUsage)
        return found.value if found is not None else UserUsage(user_id=user_id)

    def on(self, usage: UserUsage, now: float) -> UsageCounts:
        """The counts of the UTC day of ``now``."""
        return usage.days.get(utc_day(now), UsageCounts())

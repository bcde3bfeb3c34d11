"""Per-user limits, checked before the model is called: requests per minute and tokens
per UTC day. Both live in the state store, so they hold across replicas.

The rate limit counts requests in fixed one-minute windows, one key per user and window
(with a TTL, so old windows vanish). ``check()`` judges what the request's one bulk read
found (the window's count and the day's tokens), so a request over a limit never reaches
the model; ``Admission.commit()`` then counts the request with an ETag write while the
model call starts. When requests of one user race, the write
conflicts, the count is read again, and a request that no longer fits is refused then (its
model call is cancelled at once). The daily budget compares the day's recorded tokens with
the budget; answers already running when it is reached still finish, so it can be
overshot by what those use.
"""

from __future__ import annotations

from dataclasses import dataclass

from daprforge.ai import state
from daprforge.ai.errors import LimitExceededError
from daprforge.ai.models import UserUsage
from daprforge.ai.usage import UsageLedger, seconds_to_midnight
from daprforge.client import ConcurrencyError, DaprClient, StateItem

PREFIX = "ai-rate:"
WINDOW = 60


@dataclass(slots=True)
class Admission:
    """A request the limits let in; ``commit()`` counts it."""

    limits: Limits
    key: str
    counted: StateItem[int] | None
    now: float

    async def commit(self) -> None:
        """Count the request (LimitExceededError if racing requests took the last place)."""
        limits = self.limits
        if not limits.rate_limit:
            return
        try:
            await state.write(
                limits.dapr,
                limits.store,
                self.key,
                lambda count: limits.count(count, self.now),
                self.counted,
                type=int,
                ttl=2 * WINDOW,
                retries=COUNT_RETRIES,
            )
        except ConcurrencyError:
            # The user's counter kept changing under us: a burst of their own requests.
            # Ask them to come back (429) rather than wait long or answer 409.
            raise LimitExceededError(
                "Too many requests at once for this user; try again in a moment.",
                code="rate_contended",
                retry_after=1.0,
            ) from None


COUNT_RETRIES = 8
"""Read-modify-write rounds for the rate-limit counter before the request is refused."""


class Limits:
    def __init__(
        self,
        dapr: DaprClient,
        store: str,
        ledger: UsageLedger,
        *,
        rate_limit: int,
        daily_token_budget: int,
    ) -> None:
        self.dapr = dapr
        self.store = store
        self.ledger = ledger
        self.rate_limit = rate_limit
        self.daily_token_budget = daily_token_budget

    def key(self, user_id: str, now: float) -> str:
        return f"{PREFIX}{user_id}:{int(now // WINDOW)}"

    def check(
        self,
        user_id: str,
        counted: StateItem[int] | None,
        usage: UserUsage | None,
        now: float,
    ) -> Admission:
        """Judge the request by what was read: LimitExceededError (429) when a limit is
        reached, else the admission to commit."""
        if self.daily_token_budget and usage is not None:
            used = self.ledger.on(usage, now).total_tokens
            if used >= self.daily_token_budget:
                raise LimitExceededError(
                    f"Daily token budget used up: {used} of {self.daily_token_budget} tokens.",
                    code="token_budget_exhausted",
                    retry_after=seconds_to_midnight(now),
                    limit=self.daily_token_budget,
                    used=used,
                )
        if self.rate_limit and counted is not None:
            self.count(counted.value, now)
        return Admission(self, self.key(user_id, now), counted, now)

    def count(self, current: int | None, now: float) -> int:
        """``current`` plus this request; LimitExceededError when it does not fit."""
        if (current or 0) >= self.rate_limit:
            raise LimitExceededError(
                f"Rate limit reached: {self.rate_limit} requests per minute.",
                code="rate_limited",
                retry_after=WINDOW - now % WINDOW,
                limit=self.rate_limit,
            )
        return (current or 0) + 1

    def remaining(self, used_today: int) -> int | None:
        if not self.daily_token_budget:
            return None
        return max(0, self.daily_token_budget - used_today)

"""Conversation memory: one state key per session, and the history trimmed to a token
budget before it is sent.

A session is appended to with an ETag read-modify-write (``state.update``), so two
answers landing at once both keep their turns. Each write renews the session's TTL; the
stored history is capped so a long conversation cannot grow without end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from daprforge.ai import state
from daprforge.ai.models import Session, Turn
from daprforge.ai.prompts import Message, turn_message
from daprforge.ai.tokens import estimate_message_tokens
from daprforge.client import DaprClient, StateItem

PREFIX = "ai-session:"


def trim_history(turns: Sequence[Turn], budget: int) -> tuple[list[Message], int]:
    """The messages of the newest turns that fit in ``budget`` estimated tokens, starting
    on a user turn (a reply without its question confuses models), and how many turns
    were left out."""
    kept: list[Message] = []
    used = 0
    for turn in reversed(turns):
        message = turn_message(turn)
        cost = estimate_message_tokens(message)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while kept and kept[0]["role"] != "user":
        kept.pop(0)
    return kept, len(turns) - len(kept)


class SessionStore:
    def __init__(self, dapr: DaprClient, store: str, *, ttl: int, max_messages: int) -> None:
        self.dapr = dapr
        self.store = store
        self.ttl = ttl
        self.max_messages = max_messages

    def key(self, session_id: str) -> str:
        return PREFIX + session_id

    async def load(self, session_id: str) -> Session | None:
        found = await self.dapr.state.get(self.store, self.key(session_id), type=Session)
        return found.value if found is not None else None

    def appending(
        self,
        session_id: str,
        user_id: str,
        turns: Sequence[Turn],
        current: StateItem[Session] | None,
    ) -> state.Change[Session]:
        """The change that adds ``turns`` (for ``state.write_all``)."""
        now = time.time()

        def add(session: Session | None) -> Session:
            if session is None:
                session = Session(session_id=session_id, user_id=user_id, created=now, updated=now)
            messages = [*session.messages, *turns]
            if len(messages) > self.max_messages:
                messages = messages[len(messages) - self.max_messages :]
            return session.model_copy(update={"messages": messages, "updated": now})

        return state.Change(self.key(session_id), add, current, Session, ttl=self.ttl)

    async def delete(self, session_id: str) -> bool:
        """False when there was no such session."""
        key = self.key(session_id)
        if await self.dapr.state.get(self.store, key) is None:
            return False
        await self.dapr.state.delete(self.store, key)
        return True

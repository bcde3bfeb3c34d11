"""The response cache: answers kept in the state store with a TTL (``ttlInSeconds``),
keyed by a hash of everything that decides the answer: model, messages and parameters.

Only for answers that are deterministic enough to serve twice (by default: temperature
0), only complete answers (finish reason ``stop``), and never as a reason to fail: a
cache that cannot be read or written is logged and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging

from pydantic import BaseModel

from daprforge.ai.models import TokenUsage
from daprforge.ai.provider import ChatRequest
from daprforge.client import DaprClient, DaprError

log = logging.getLogger("daprforge.ai")

PREFIX = "ai-cache:"


class CachedAnswer(BaseModel):
    text: str
    model: str
    usage: TokenUsage
    finish_reason: str | None = None


def cache_key(request: ChatRequest, provider: str) -> str:
    identity = {
        "provider": provider,
        "model": request.model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    canonical = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    def __init__(self, dapr: DaprClient, store: str, *, ttl: int) -> None:
        self.dapr = dapr
        self.store = store
        self.ttl = ttl

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            found = await self.dapr.state.get(self.store, key, type=CachedAnswer)
        except DaprError as exc:
            log.warning("response cache not read: %s", exc.error_code or exc.status)
            return None
        return found.value if found is not None else None

"""The agent: one learner request through limits, memory, cache, the model and the books.

    async with Agent(settings, dapr, store="statestore", pubsub="pubsub") as agent:
        answer = await agent.answer(request)            # ProcessResponse
        stream = await agent.stream(request)            # errors before the first byte raise
        async for event in stream.events(): ...         # meta, delta..., usage, done | error

Before the model is called, one bulk read fetches the user's rate-limit window and usage
and the session (or, for a new session, the cached answer); the limits are judged on it,
the history is trimmed to its token budget, and the request is counted by one ETag write
that runs while the model call starts. (A stream of a new session has its model request
built during that read and held, unsent, until the limits let it go.) After the answer,
usage, the session's new turn and the cache are written in one transaction guarded by the
ETags of that read (a conflict falls back to read-modify-write loops), and a usage event
is published; best effort (a failure is logged, the learner still gets the answer). A
stream that the client leaves, or that breaks, is charged an estimate in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from daprforge.ai import state
from daprforge.ai.cache import CachedAnswer, ResponseCache, cache_key
from daprforge.ai.errors import AIError
from daprforge.ai.limits import Admission, Limits
from daprforge.ai.memory import SessionStore, trim_history
from daprforge.ai.models import (
    ProcessRequest,
    ProcessResponse,
    Session,
    TokenUsage,
    Turn,
    UsageReport,
    UserUsage,
)
from daprforge.ai.offline import OFFLINE_MODEL, OfflineProvider
from daprforge.ai.prompts import ROLE_PROMPTS, Message, build_messages
from daprforge.ai.provider import (
    ChatRequest,
    ChatStream,
    OpenAIProvider,
    Provider,
    TextStream,
)
from daprforge.ai.settings import AISettings
from daprforge.ai.sse import ServerSentEvent
from daprforge.ai.tokens import estimate_usage
from daprforge.ai.usage import UsageLedger
from daprforge.client import DaprClient, StateItem, Upsert
from daprforge.service.background import BackgroundTasks

log = logging.getLogger("daprforge.ai")
T = TypeVar("T")

ANONYMOUS = "anonymous"
CHARS_PER_TOKEN_CAP = 16
"""Output bound beyond ``max_tokens``: a provider that ignores it is cut off at this many
characters per allowed token."""


@dataclass(slots=True)
class _Prepared:
    admission: Admission
    user_id: str
    session_id: str
    chat: ChatRequest
    history_dropped: int
    cache_key: str | None
    cached: CachedAnswer | None
    usage: StateItem[UserUsage] | None
    """The user's usage document as read (its ETag makes the later update one write)."""
    session: StateItem[Session] | None


class Agent:
    def __init__(
        self,
        settings: AISettings,
        dapr: DaprClient,
        *,
        store: str = "statestore",
        pubsub: str = "pubsub",
        provider: Provider | None = None,
    ) -> None:
        self.settings = settings
        self.dapr = dapr
        self.store = store
        self.pubsub = pubsub
        self.provider: Provider = provider or (
            OfflineProvider(settings.ai_role) if settings.offline else OpenAIProvider(settings)
        )
        self.system_prompt = settings.system_prompt or ROLE_PROMPTS[settings.ai_role]
        self.model = OFFLINE_MODEL if settings.offline else settings.openai_model
        self.max_chars = settings.max_tokens * CHARS_PER_TOKEN_CAP
        """The most characters of an answer (``CHARS_PER_TOKEN_CAP``)."""
        self.sessions = SessionStore(
            dapr, store, ttl=settings.session_ttl, max_messages=settings.memory_max_messages
        )
        # Offline answers cost nothing to make again: no cache for them.
        use_cache = settings.cache_enabled and not settings.offline
        self.cache = ResponseCache(dapr, store, ttl=settings.cache_ttl) if use_cache else None
        self.ledger = UsageLedger(dapr, store)
        self.limits = Limits(
            dapr,
            store,
            self.ledger,
            rate_limit=settings.rate_limit,
            daily_token_budget=settings.daily_token_budget,
        )
        self._background = BackgroundTasks()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Wait for the usage of finished streams to be recorded, then close the client."""
        await self._background.drain(timeout=10)
        await self.provider.aclose()

    # --- answering ----------------------------------------------------------------------

    async def answer(self, request: ProcessRequest) -> ProcessResponse:
        prepared = await self._prepare(request, self._fresh_chat(request))
        if prepared.cached is not None:
            await prepared.admission.commit()
            text, model = prepared.cached.text, prepared.cached.model
            usage, finish = TokenUsage(), prepared.cached.finish_reason
        else:
            completion = await self._admitted(prepared, self.provider.complete(prepared.chat))
            text, model, finish = completion.text, completion.model, completion.finish_reason
            if len(text) > self.max_chars:
                text, finish = text[: self.max_chars], "length"
            usage = completion.usage or estimate_usage(prepared.chat.messages, text)
        await self._finish(prepared, text, usage, model, finish)
        return self._response(prepared, text, usage, model, finish)

    async def stream(self, request: ProcessRequest) -> AnswerStream:
        """Checks, history and the upstream request: an error here is an HTTP status, not
        a stream event.

        A new session's messages need nothing from the state store, so its model request
        is opened at once, held before it is sent (``release``): the SDK builds it while
        the state is read, and it goes out only after the checks passed. A refused
        request or a cache hit cancels it unsent (the building was wasted CPU, the price
        of a sooner first byte)."""
        chat = self._fresh_chat(request)
        release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        opening: asyncio.Future[ChatStream] | None = None
        if chat is not None and getattr(self.provider, "holds_until_release", False):
            opening = asyncio.ensure_future(self.provider.open_stream(chat, release=release))
        try:
            prepared = await self._prepare(request, chat)
        except BaseException:
            if opening is not None:
                await _abandon(opening, _close_stream)
            raise
        upstream: ChatStream
        if prepared.cached is not None:
            if opening is not None:
                await _abandon(opening, _close_stream)
            await prepared.admission.commit()
            cached = prepared.cached
            # A cached answer, streamed again in pieces the size a model sends.
            upstream = TextStream(cached.text, cached.model, finish_reason=cached.finish_reason)
        else:
            call = opening or self.provider.open_stream(prepared.chat)
            upstream = await self._admitted(prepared, call, release, close=_close_stream)
        return AnswerStream(self, prepared, upstream)

    # --- state --------------------------------------------------------------------------

    async def usage(self, user_id: str) -> UsageReport:
        usage = await self.ledger.get(user_id)
        today = self.ledger.on(usage, time.time())
        budget = self.settings.daily_token_budget or None
        return UsageReport(
            **usage.model_dump(),
            today=today,
            daily_token_budget=budget,
            remaining_today=self.limits.remaining(today.total_tokens),
        )

    async def session(self, session_id: str) -> Session | None:
        return await self.sessions.load(session_id)

    async def delete_session(self, session_id: str) -> bool:
        return await self.sessions.delete(session_id)

    # --- the steps ------------------------------------------------------------------------

    def _fresh_chat(self, request: ProcessRequest) -> ChatRequest | None:
        """The model request of a new session (None for a session that goes on: its
        messages depend on the history)."""
        if request.session_id is not None:
            return None
        return self._chat(request, [], request.context or {})

    async def _prepare(self, request: ProcessRequest, chat: ChatRequest | None) -> _Prepared:
        """One bulk read for everything the request needs: the rate-limit window, the
        user's usage, and the session or (for a new session, whose messages are known
        already: ``chat``) the cached answer."""
        now = time.time()
        user_id = request.user_id or ANONYMOUS
        session_id = request.session_id or uuid.uuid4().hex
        context = request.context or {}
        rate_key, usage_key = self.limits.key(user_id, now), self.ledger.key(user_id)
        session_key = self.sessions.key(session_id)
        key = None
        keys = [rate_key, usage_key]
        if chat is not None:
            key = self._cache_key(chat)
            keys += [key] if key is not None else []
        else:
            keys.append(session_key)
        found = await state.read(self.dapr, self.store, keys)
        usage = found.get(usage_key, UserUsage)
        admission = self.limits.check(
            user_id, found.get(rate_key, int), usage.value if usage else None, now
        )
        session = found.get(session_key, Session) if request.session_id else None
        if session is not None and session.value.user_id != user_id:
            raise AIError(403, "This session belongs to another user.", code="session_forbidden")
        dropped = 0
        if chat is None:
            history, dropped = trim_history(
                session.value.messages if session else [], self.settings.memory_tokens
            )
            chat = self._chat(request, history, context)
            key = self._cache_key(chat)
            cached = await self._cached(key)
        else:
            item = found.get(key, CachedAnswer) if key is not None else None
            cached = item.value if item is not None else None
        return _Prepared(admission, user_id, session_id, chat, dropped, key, cached, usage, session)

    async def _admitted(
        self,
        prepared: _Prepared,
        call: Awaitable[T],
        release: asyncio.Future[None] | None = None,
        close: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """The model ``call`` (held until ``release``, if given), let go while the
        request is counted: the count is one write, and a refusal from it (racing
        requests of the same user took the last place) cancels the call, or closes what
        it opened."""
        task = asyncio.ensure_future(call)
        if release is not None and not release.done():
            release.set_result(None)  # the checks passed: the model request may go out
        # Scheduled after the model request, which goes out first; the count's write
        # returns sooner than the model's first chunk, so it is off the path to it.
        counting = asyncio.ensure_future(prepared.admission.commit())
        try:
            await counting
            return await task
        except BaseException:
            # Refused, or cancelled (perhaps just after the call opened its stream).
            await _abandon(task, close)
            raise

    def _chat(
        self, request: ProcessRequest, history: list[Message], context: dict[str, Any]
    ) -> ChatRequest:
        return ChatRequest(
            messages=build_messages(self.system_prompt, history, request.prompt, context),
            model=self.model,
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
            prompt=request.prompt,
            context=context,
        )

    def _cache_key(self, chat: ChatRequest) -> str | None:
        return cache_key(chat, self.provider.name) if self.cache is not None else None

    async def _cached(self, key: str | None) -> CachedAnswer | None:
        if key is None or self.cache is None:
            return None
        return await self.cache.get(key)

    async def _finish(
        self,
        prepared: _Prepared,
        text: str,
        usage: TokenUsage,
        model: str,
        finish_reason: str | None,
    ) -> None:
        """Usage, the session and the cache in one transaction; the event beside it."""
        cached = prepared.cached is not None
        turns = [
            Turn(
                role="user",
                content=prepared.chat.prompt,
                context=dict(prepared.chat.context) or None,
            ),
            Turn(role="assistant", content=text),
        ]
        changes: list[state.Change[Any]] = [
            self.ledger.adding(prepared.user_id, usage, cached=cached, current=prepared.usage),
            self.sessions.appending(prepared.session_id, prepared.user_id, turns, prepared.session),
        ]
        plain: list[Upsert] = []
        if self.cache is not None and prepared.cache_key and not cached and finish_reason == "stop":
            answer = CachedAnswer(text=text, model=model, usage=usage, finish_reason=finish_reason)
            plain.append(Upsert(prepared.cache_key, answer, ttl=self.cache.ttl))
        await self._best_effort(
            {
                "usage, session and cache": state.write_all(self.dapr, self.store, changes, plain),
                "event": self._publish(prepared, usage, model, finish_reason),
            }
        )

    async def _charge_incomplete(self, prepared: _Prepared, text: str, outcome: str) -> None:
        """A stream that did not finish: the provider's usage chunk never came, so the
        prompt and what was streamed are charged as an estimate."""
        cached = prepared.cached is not None
        usage = TokenUsage() if cached else estimate_usage(prepared.chat.messages, text)
        await self._best_effort(
            {
                "usage": self.ledger.record(
                    prepared.user_id, usage, cached=cached, current=prepared.usage
                ),
                "event": self._publish(prepared, usage, self.model, outcome),
            }
        )

    async def _publish(
        self, prepared: _Prepared, usage: TokenUsage, model: str, finish_reason: str | None
    ) -> None:
        if not self.settings.usage_topic:
            return
        event = {
            "user_id": prepared.user_id,
            "session_id": prepared.session_id,
            "model": model,
            "provider": self.provider.name,
            "role": self.settings.ai_role,
            "cached": prepared.cached is not None,
            "finish_reason": finish_reason,
            "usage": usage.model_dump(),
            "time": time.time(),
        }
        await self.dapr.pubsub.publish(self.pubsub, self.settings.usage_topic, event)

    async def _best_effort(self, steps: dict[str, Awaitable[Any]]) -> None:
        results = await asyncio.gather(*steps.values(), return_exceptions=True)
        for name, result in zip(steps, results, strict=True):
            if isinstance(result, Exception):
                log.warning("after the answer, %s was not recorded: %r", name, result)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` to its end even though its request is gone; aclose() waits for it."""
        return self._background.spawn(work)

    def _response(
        self,
        prepared: _Prepared,
        text: str,
        usage: TokenUsage,
        model: str,
        finish_reason: str | None,
    ) -> ProcessResponse:
        return ProcessResponse(
            response=text,
            tokens=usage.total_tokens,
            usage=usage,
            model=model,
            provider=self.provider.name,
            cached=prepared.cached is not None,
            session_id=prepared.session_id,
            finish_reason=finish_reason,
        )


class AnswerStream:
    """One streamed answer as server-sent events: ``meta``, ``delta`` (``{"text"}``) ...,
    then ``usage`` and ``done``, or ``error`` if the provider fails midway."""

    def __init__(self, agent: Agent, prepared: _Prepared, upstream: ChatStream) -> None:
        self.agent = agent
        self.prepared = prepared
        self.upstream = upstream

    async def events(self) -> AsyncGenerator[ServerSentEvent, None]:
        agent, prepared, upstream = self.agent, self.prepared, self.upstream
        pieces: list[str] = []
        outcome = "cancelled"
        try:
            yield ServerSentEvent(
                "meta",
                {
                    "model": upstream.model,
                    "provider": agent.provider.name,
                    "session_id": prepared.session_id,
                    "cached": prepared.cached is not None,
                    "history_trimmed": prepared.history_dropped,
                },
            )
            limit = agent.max_chars
            size = 0
            finish: str | None = None
            async for piece in upstream:
                if size + len(piece) > limit:
                    piece, finish = piece[: limit - size], "length"
                pieces.append(piece)
                size += len(piece)
                yield ServerSentEvent("delta", {"text": piece})
                if finish is not None:
                    break
            text = "".join(pieces)
            finish = finish or upstream.finish_reason
            if prepared.cached is not None:
                usage = TokenUsage()
            else:
                usage = upstream.usage or estimate_usage(prepared.chat.messages, text)
            # The books are written from here on, whatever the client does (shielded); the
            # stream ends once they are, so a client that reads to the end sees them.
            outcome = "finishing"
            recording = self._finish(text, usage, upstream.model, finish)
            yield ServerSentEvent("usage", usage.model_dump())
            yield ServerSentEvent(
                "done",
                {
                    "finish_reason": finish,
                    "tokens": usage.total_tokens,
                    "session_id": prepared.session_id,
                },
            )
            await asyncio.shield(recording)
            outcome = "done"
        except AIError as exc:
            outcome = "error"
            yield ServerSentEvent("error", exc.body())
        finally:
            with contextlib.suppress(Exception):
                await upstream.aclose()
            if outcome in ("cancelled", "error"):
                if outcome == "cancelled":
                    log.info("the client left a stream after %d pieces", len(pieces))
                agent._spawn(agent._charge_incomplete(prepared, "".join(pieces), outcome))

    def _finish(
        self, text: str, usage: TokenUsage, model: str, finish: str | None
    ) -> asyncio.Task[None]:
        return self.agent._spawn(self.agent._finish(self.prepared, text, usage, model, finish))


async def _close_stream(stream: ChatStream) -> None:
    await stream.aclose()


async def _abandon(
    task: asyncio.Future[T], close: Callable[[T], Awaitable[None]] | None = None
) -> None:
    """Cancel a model call; close what it opened if it got that far. (``wait``: the
    caller's own cancellation still reaches it, the call's does not.)"""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is None and close is not None:
        await close(task.result())

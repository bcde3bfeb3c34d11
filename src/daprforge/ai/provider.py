"""The model provider: Chat Completions through the official SDK's ``AsyncOpenAI``.

One client per process (its connection pool serves every request), with a timeout far
below the SDK's 600 s and the SDK as the only retry loop. Streams ask for the final usage
chunk unless the endpoint is configured not to (some reject ``stream_options``), never
index ``choices`` unguarded (the usage chunk, and Azure's first chunk, have none), and are
closed explicitly so a client that goes away stops the upstream request at once.

The SDK sends through its aiohttp backend (``openai.DefaultAioHttpClient``): on loopback
it costs about a third less CPU per call than its default httpx2 backend and brings the
first byte ~0.7 ms sooner; aiohttp is already the runtime's HTTP client. A stream can be
opened before its request is admitted (``release``): the SDK builds the request at once
(most of a millisecond of CPU) while the agent reads the user's state, and a request hook
holds it until ``release`` is done, so nothing reaches the model before the limits let
the request through; a refused request is cancelled while it waits.

``OfflineProvider`` (``daprforge.ai.offline``) has the same shape, for offline mode.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import aiohttp
import openai
from openai.types.chat import ChatCompletionMessageParam
from openai.types.completion_usage import CompletionUsage

from daprforge.ai.errors import ProviderError
from daprforge.ai.models import TokenUsage
from daprforge.ai.prompts import Message
from daprforge.ai.settings import AISettings

log = logging.getLogger("daprforge.ai")

_RELEASE: ContextVar[asyncio.Future[None] | None] = ContextVar("ai_release", default=None)
"""The admission the model request being sent in this context waits for (None: none)."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: list[Message]
    model: str
    max_tokens: int
    temperature: float
    prompt: str
    """The learner's text as written (offline mode analyses it; the model gets messages)."""
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Completion:
    text: str
    model: str
    usage: TokenUsage | None
    finish_reason: str | None


class ChatStream(Protocol):
    """Text pieces of a streamed answer; ``usage`` and ``finish_reason`` once known."""

    model: str
    usage: TokenUsage | None
    finish_reason: str | None

    def __aiter__(self) -> ChatStream: ...

    async def __anext__(self) -> str: ...

    async def aclose(self) -> None: ...


_PIECE = re.compile(r"\S+\s*|\s+")


class TextStream:
    """A known text, streamed in pieces the size a model sends (words with their following
    whitespace). Like a model's stream, ``usage`` and ``finish_reason`` are set only once
    the last piece was read: a reader that stops early sees None."""

    def __init__(
        self,
        text: str,
        model: str,
        *,
        usage: TokenUsage | None = None,
        finish_reason: str | None = None,
    ) -> None:
        self._pieces: Iterator[str] = iter(_PIECE.findall(text))
        self._final = usage, finish_reason
        self.model = model
        self.usage: TokenUsage | None = None
        self.finish_reason: str | None = None

    def __aiter__(self) -> TextStream:
        return self

    async def __anext__(self) -> str:
        piece = next(self._pieces, None)
        if piece is None:
            self.usage, self.finish_reason = self._final
            raise StopAsyncIteration
        return piece

    async def aclose(self) -> None:
        return None


class Provider(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def open_stream(
        self, request: ChatRequest, *, release: asyncio.Future[None] | None = None
    ) -> ChatStream:
        """Start the answer; errors before the first piece raise ProviderError here.
        With ``release``, nothing may reach the model before that future is done (the
        caller cancels the call instead when the request is refused). A provider that
        honours ``release`` says so with a true ``holds_until_release`` attribute; the
        agent opens other providers' streams only once the request is admitted."""
        ...

    async def aclose(self) -> None: ...


def provider_name(settings: AISettings) -> str:
    if settings.offline:
        return "offline"
    return "openai-compatible" if settings.openai_base_url else "openai"


async def _hold(request: object) -> None:
    """The SDK's request hook: a request opened before its admission waits here, built
    but not sent. (Runs before every attempt; a retry finds the future done.)"""
    release = _RELEASE.get()
    if release is not None:
        await release


class OpenAIProvider:
    holds_until_release = True

    def __init__(self, settings: AISettings) -> None:
        # Always our own client: the hold on unadmitted requests lives in its request hook.
        key = settings.openai_api_key
        self.client = openai.AsyncOpenAI(
            # A local OpenAI-compatible server may need no key, but the SDK insists on one.
            api_key=key.get_secret_value() if key is not None else "unused",
            base_url=settings.openai_base_url,
            timeout=openai.Timeout(
                settings.openai_timeout, connect=settings.openai_connect_timeout
            ),
            max_retries=settings.openai_max_retries,
            http_client=openai.DefaultAioHttpClient(event_hooks={"request": [_hold]}),
        )
        self.name = provider_name(settings)
        self.stream_usage = settings.openai_stream_usage
        self.max_tokens_param = settings.openai_max_tokens_param

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        return {
            "model": request.model,
            "messages": cast(list[ChatCompletionMessageParam], request.messages),
            "temperature": request.temperature,
            self.max_tokens_param: request.max_tokens,
        }

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            completion = await self.client.chat.completions.create(**self._params(request))
        except openai.APIError as exc:
            raise provider_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreadable(exc) from exc
        choice = completion.choices[0] if completion.choices else None
        return Completion(
            text=(choice.message.content or "") if choice is not None else "",
            model=completion.model or request.model,
            usage=_usage(completion.usage),
            finish_reason=choice.finish_reason if choice is not None else None,
        )

    async def open_stream(
        self, request: ChatRequest, *, release: asyncio.Future[None] | None = None
    ) -> ChatStream:
        params = self._params(request)
        if self.stream_usage:
            params["stream_options"] = {"include_usage": True}
        held = _RELEASE.set(release)
        try:
            # The SDK's generic post rather than chat.completions.create: the same request,
            # retries, errors and SSE decoding, but the body is sent as built (create()
            # first walks it against its TypedDicts, ~0.5 ms) and each chunk stays the JSON
            # dict it was (a pydantic chunk model costs ~0.1 ms, every chunk).
            stream = await self.client.post(
                "/chat/completions",
                body={**params, "stream": True},
                cast_to=object,
                # The API key only, as create() sends it (the default also offers an
                # admin key from the environment).
                options={"security": {"bearer_auth": True}},
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
        except openai.APIError as exc:
            raise provider_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreadable(exc) from exc
        finally:
            _RELEASE.reset(held)
        return _OpenAIStream(stream, request.model)

    async def aclose(self) -> None:
        await self.client.close()


class _OpenAIStream:
    """Text pieces from Chat Completions chunks, read as JSON (``ChatCompletionChunk``'s
    shape): nothing in them is trusted to be there or to have its type."""

    def __init__(self, stream: openai.AsyncStream[object], model: str) -> None:
        self._stream = stream
        self.model = model
        self.usage: TokenUsage | None = None
        self.finish_reason: str | None = None

    def __aiter__(self) -> _OpenAIStream:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                raise
            except openai.APIError as exc:  # an in-band {"error": ...} event
                raise provider_error(exc) from exc
            except Exception as exc:  # the connection broke or timed out mid-stream
                detail = "The model provider's stream broke off."
                raise _failed(exc, detail, "provider_stream_broken") from exc
            if not isinstance(chunk, dict):
                continue
            self.model = _text(chunk, "model") or self.model
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                self.usage = _usage_of(usage) or self.usage
            choices = chunk.get("choices")
            if not choices or not isinstance(choices, list):
                continue  # the usage chunk; Azure's prompt-filter chunk
            choice = choices[0]
            if not isinstance(choice, dict):
                continue
            self.finish_reason = _text(choice, "finish_reason") or self.finish_reason
            delta = choice.get("delta")
            if isinstance(delta, dict) and (content := _text(delta, "content")):
                return content

    async def aclose(self) -> None:
        await self._stream.close()


def _usage(usage: CompletionUsage | None) -> TokenUsage | None:
    if usage is None:
        return None
    return TokenUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _text(data: dict[str, Any], key: str) -> str | None:
    """``data[key]`` if it is a non-empty string."""
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _usage_of(usage: dict[str, Any]) -> TokenUsage | None:
    """A chunk's ``usage`` object; a count that is missing or no integer counts 0, a
    missing total is the sum, and no count at all is no usage (the caller estimates)."""

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    prompt, completion = count("prompt_tokens"), count("completion_tokens")
    total = count("total_tokens") or prompt + completion
    if not total:
        return None
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def provider_error(exc: openai.APIError) -> ProviderError:
    """Our answer for a failed call, after the SDK's retries: what kind of failure, never
    the provider's text."""
    request_id = getattr(exc, "request_id", None)
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    log.warning(
        "the model provider failed: %s",
        type(exc).__name__,
        extra={"provider_status": status, "provider_request_id": request_id},
    )
    if isinstance(exc, openai.APITimeoutError) and not _connection_failed(exc):
        return ProviderError(
            504, "The model did not answer in time.", code="provider_timeout", retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):  # an APITimeoutError too
        return ProviderError(
            503, "The model provider cannot be reached.", code="provider_unreachable",
            retry_after=5,
        )  # fmt: skip
    if isinstance(exc, openai.RateLimitError):
        if exc.code == "insufficient_quota":
            return ProviderError(
                503, "The model provider's quota is used up.", code="provider_quota"
            )
        return ProviderError(
            503,
            "The model provider is busy (rate limited); retry later.",
            code="provider_rate_limited",
            retry_after=_retry_after(exc) or 5,
        )
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            502,
            f"The model provider answered {exc.status_code}.",
            code="provider_failed" if exc.status_code >= 500 else "provider_rejected",
            retryable=exc.status_code >= 500,
            provider_status=exc.status_code,
        )
    return ProviderError(
        502, "The model provider reported an error.", code="provider_error", retryable=True
    )


def _failed(exc: BaseException, detail: str, code: str) -> ProviderError:
    """A failure the SDK did not translate: a stream that broke off, or (the SDK's aiohttp
    backend lets it through) a reply whose status line or headers cannot be parsed."""
    log.warning("model provider: %s (%s)", code, type(exc).__name__)
    return ProviderError(502, detail, code=code, retryable=True)


def _unreadable(exc: BaseException) -> ProviderError:
    return _failed(exc, "The model provider's reply could not be read.", "provider_failed")


def _connection_failed(exc: BaseException) -> bool:
    """The SDK's aiohttp backend reports every failed connection (refused, reset, closed
    by the server) as a connect timeout; only aiohttp's timeout errors are timeouts."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError):
            return not isinstance(cause, aiohttp.ServerTimeoutError)
        cause = cause.__cause__
    return False


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

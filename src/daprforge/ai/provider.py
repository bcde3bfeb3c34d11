"""The model provider: Chat Completions through the official SDK's ``AsyncOpenAI``.

One client per process (its connection pool serves every request), with a timeout far
below the SDK's 600 s and the SDK as the only retry loop. Streams ask for the final usage
chunk unless the endpoint is configured not to (some reject ``stream_options``), never
index ``choices`` unguarded (the usage chunk, and Azure's first chunk, have none), and are
closed explicitly so a client that goes away stops the upstream request at once.

``OfflineProvider`` (``daprforge.ai.offline``) has the same shape, for offline mode.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.completion_usage import CompletionUsage

from daprforge.ai.errors import ProviderError
from daprforge.ai.models import TokenUsage
from daprforge.ai.prompts import Message
from daprforge.ai.settings import AISettings

log = logging.getLogger("daprforge.ai")


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


class Provider(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def open_stream(self, request: ChatRequest) -> ChatStream:
        """Start the answer; errors before the first piece raise ProviderError here."""
        ...

    async def aclose(self) -> None: ...


def provider_name(settings: AISettings) -> str:
    if settings.offline:
        return "offline"
    return "openai-compatible" if settings.openai_base_url else "openai"


class OpenAIProvider:
    def __init__(self, settings: AISettings, *, client: openai.AsyncOpenAI | None = None) -> None:
        key = settings.openai_api_key
        self.client = client or openai.AsyncOpenAI(
            # A local OpenAI-compatible server may need no key, but the SDK insists on one.
            api_key=key.get_secret_value() if key is not None else "unused",
            base_url=settings.openai_base_url,
            timeout=openai.Timeout(
                settings.openai_timeout, connect=settings.openai_connect_timeout
            ),
            max_retries=settings.openai_max_retries,
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
        choice = completion.choices[0] if completion.choices else None
        return Completion(
            text=(choice.message.content or "") if choice is not None else "",
            model=completion.model or request.model,
            usage=_usage(completion.usage),
            finish_reason=choice.finish_reason if choice is not None else None,
        )

    async def open_stream(self, request: ChatRequest) -> ChatStream:
        params = self._params(request)
        if self.stream_usage:
            params["stream_options"] = {"include_usage": True}
        try:
            stream = await self.client.chat.completions.create(**params, stream=True)
        except openai.APIError as exc:
            raise provider_error(exc) from exc
        return _OpenAIStream(stream, request.model)

    async def aclose(self) -> None:
        await self.client.close()


class _OpenAIStream:
    def __init__(self, stream: openai.AsyncStream[ChatCompletionChunk], model: str) -> None:
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
                log.warning("the provider's stream broke: %s", type(exc).__name__)
                raise ProviderError(
                    502,
                    "The model provider's stream broke off.",
                    code="provider_stream_broken",
                    retryable=True,
                ) from exc
            if chunk.model:
                self.model = chunk.model
            if chunk.usage is not None:
                self.usage = _usage(chunk.usage)
            if not chunk.choices:  # the usage chunk; Azure's prompt-filter chunk
                continue
            choice = chunk.choices[0]
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            if choice.delta.content:
                return choice.delta.content

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
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(
            504, "The model did not answer in time.", code="provider_timeout", retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):
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


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

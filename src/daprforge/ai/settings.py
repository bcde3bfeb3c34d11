"""The AI layer's settings: the model provider, the tutoring role, and the limits.

``AISettings`` is a ``ServiceSettings`` (pydantic-settings: environment and ``.env``), so a
generated ai-agent subclasses it and changes only the defaults it was generated with.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr

from daprforge.service.settings import ServiceSettings

Role = Literal["general", "triage", "concepts", "code-review"]
ROLES: tuple[Role, ...] = ("general", "triage", "concepts", "code-review")
CacheMode = Literal["auto", "on", "off"]
MaxTokensParam = Literal["max_completion_tokens", "max_tokens"]


# Bounds a generated service's settings share (its subclass sets other defaults).
MaxTokens = Annotated[int, Field(ge=1, le=128_000)]
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]


class AISettings(ServiceSettings):
    ai_role: Role = "general"
    """AI_ROLE: picks the default system prompt and what offline mode answers with."""

    # --- the provider -------------------------------------------------------------------
    openai_api_key: SecretStr | None = None
    """OPENAI_API_KEY. Without it and without OPENAI_BASE_URL: offline mode."""
    openai_base_url: str | None = None
    """OPENAI_BASE_URL: any OpenAI-compatible endpoint, with its /v1 (Azure OpenAI's
    /openai/v1/, Ollama, vLLM, llama.cpp ...)."""
    openai_model: str = "gpt-4o-mini"
    openai_timeout: float = Field(default=30.0, gt=0, le=300)
    """Seconds to wait for the provider: for the answer, or between two streamed chunks
    (the SDK's own default is 600)."""
    openai_connect_timeout: float = Field(default=5.0, gt=0, le=60)
    openai_max_retries: int = Field(default=2, ge=0, le=5)
    """Retries by the SDK (connection errors, 408, 409, 429, 5xx) before we answer 502/503.
    The SDK is the only retry loop."""
    openai_stream_usage: bool = True
    """Send ``stream_options.include_usage`` (some providers reject it: set false; the
    usage of streams is then estimated)."""
    openai_max_tokens_param: MaxTokensParam = "max_completion_tokens"
    """Which request field bounds the answer: many local servers only know max_tokens."""

    # --- the answer ---------------------------------------------------------------------
    system_prompt: str | None = None
    """SYSTEM_PROMPT; unset: the role's built-in prompt."""
    max_tokens: MaxTokens = 500
    """MAX_TOKENS: most tokens in one answer."""
    temperature: Temperature = 0.7

    # --- state ----------------------------------------------------------------------------
    memory_tokens: int = Field(default=3000, ge=0)
    """MEMORY_TOKENS: the conversation history sent with a prompt is trimmed to this many
    (estimated) tokens, newest turns first; 0 sends no history."""
    memory_max_messages: int = Field(default=40, ge=0, le=1000)
    """Messages a session keeps in the state store (the oldest go first)."""
    session_ttl: int = Field(default=7 * 24 * 3600, ge=60)
    """SESSION_TTL: seconds a session lives after its last message."""
    response_cache: CacheMode = "auto"
    """RESPONSE_CACHE: ``auto`` caches answers only when temperature is 0."""
    cache_ttl: int = Field(default=3600, ge=1)
    """CACHE_TTL: seconds a cached answer is served."""
    rate_limit: int = Field(default=30, ge=0)
    """RATE_LIMIT: requests per user per minute; 0: no limit."""
    daily_token_budget: int = Field(default=100_000, ge=0)
    """DAILY_TOKEN_BUDGET: tokens per user per UTC day; 0: no budget."""
    usage_topic: str = "ai-usage"
    """USAGE_TOPIC: a usage event is published here after each answer; empty: none."""
    sse_keepalive: float = Field(default=15.0, gt=0)
    """SSE_KEEPALIVE: seconds of silence before a stream sends a keep-alive comment."""

    @property
    def offline(self) -> bool:
        """No key and no endpoint: answers come from the offline tutor."""
        return self.openai_api_key is None and not self.openai_base_url

    @property
    def cache_enabled(self) -> bool:
        if self.response_cache == "auto":
            return self.temperature == 0
        return self.response_cache == "on"

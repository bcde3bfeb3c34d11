"""What an ai-agent service takes and returns, and what it keeps in the state store."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_PROMPT_CHARS = 20_000
# Ids become parts of state keys: a conservative alphabet, and "||" (Dapr's key separator)
# cannot occur.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


class ProcessRequest(BaseModel):
    """``POST /process`` and ``POST /process/stream``."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="The learner's question, code or error message.",
        examples=["Explain Python lists"],
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Facts for the answer (level, exercise, code ...); sent to the model as "
        "JSON inside the learner's message, never as instructions.",
    )
    session_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="Continue this conversation; omitted: a new session is started.",
    )
    user_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="Whose usage, rate limit and budget this counts towards "
        "(omitted: 'anonymous').",
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("the prompt is blank")
        return prompt

    @field_validator("context")
    @classmethod
    def _context_fits(cls, context: dict[str, Any]) -> dict[str, Any]:
        # The context goes to the model (and to the offline analysis) as UTF-8 JSON: refuse
        # what cannot be encoded (lone surrogates) and bound it like the prompt.
        try:
            size = len(json.dumps(context, ensure_ascii=False).encode())
        except (UnicodeEncodeError, ValueError) as error:
            raise ValueError(f"the context cannot be sent as UTF-8 JSON: {error}") from None
        if size > MAX_PROMPT_CHARS:
            raise ValueError(f"the context is {size} bytes as JSON; at most {MAX_PROMPT_CHARS}")
        return context


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False
    """True when counted by us (offline mode, a provider that sent none, a cancelled
    stream) rather than reported by the provider."""


class ProcessResponse(BaseModel):
    response: str
    tokens: int
    """``usage.total_tokens``, as the original API had it."""
    usage: TokenUsage
    model: str
    provider: str
    """``openai``, ``openai-compatible`` or ``offline``."""
    cached: bool
    session_id: str
    finish_reason: str | None = None


class UsageCounts(BaseModel):
    requests: int = 0
    cached_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated_tokens: int = 0
    """How many of ``total_tokens`` were estimated rather than reported."""

    def plus(self, usage: TokenUsage, *, cached: bool) -> UsageCounts:
        return UsageCounts(
            requests=self.requests + 1,
            cached_requests=self.cached_requests + int(cached),
            prompt_tokens=self.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self.completion_tokens + usage.completion_tokens,
            total_tokens=self.total_tokens + usage.total_tokens,
            estimated_tokens=self.estimated_tokens + (usage.total_tokens if usage.estimated else 0),
        )


class UserUsage(BaseModel):
    """``GET /usage/{user_id}``, and the state document behind it."""

    user_id: str
    total: UsageCounts = Field(default_factory=UsageCounts)
    days: dict[str, UsageCounts] = Field(default_factory=dict)
    """Per UTC day (``YYYY-MM-DD``), the most recent days only."""


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    context: dict[str, Any] | None = None


class Session(BaseModel):
    """``GET /sessions/{id}``: one conversation, as kept in the state store."""

    session_id: str
    user_id: str
    messages: list[Turn] = Field(default_factory=list)
    created: float
    updated: float


class UsageReport(UserUsage):
    """``GET /usage/{user_id}``: the usage, and what is left of today's budget."""

    today: UsageCounts
    daily_token_budget: int | None
    """None: no budget."""
    remaining_today: int | None

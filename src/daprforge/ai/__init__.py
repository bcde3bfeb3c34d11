"""The AI layer of ai-agent services. See docs/ai-agent.md.

An ``Agent`` answers learner requests through an OpenAI-compatible provider (or offline,
without one), with per-user limits, conversation memory, a response cache and token usage
kept in the Dapr state store; ``EventStreamResponse`` streams its answers as server-sent
events.
"""

from daprforge.ai.agent import ANONYMOUS, Agent, AnswerStream
from daprforge.ai.errors import (
    AIError,
    LimitExceededError,
    ProviderError,
    ai_error_handler,
    install_ai_error_handler,
)
from daprforge.ai.models import (
    ID_PATTERN,
    MAX_PROMPT_CHARS,
    ProcessRequest,
    ProcessResponse,
    Session,
    TokenUsage,
    Turn,
    UsageCounts,
    UsageReport,
    UserUsage,
)
from daprforge.ai.offline import OfflineProvider, offline_answer
from daprforge.ai.prompts import ROLE_PROMPTS, build_messages, learner_content
from daprforge.ai.provider import ChatRequest, ChatStream, Completion, OpenAIProvider, Provider
from daprforge.ai.settings import ROLES, AISettings, MaxTokens, Role, Temperature
from daprforge.ai.sse import EventStreamResponse, ServerSentEvent
from daprforge.ai.tokens import estimate_prompt_tokens, estimate_tokens, estimate_usage

__all__ = [
    "ANONYMOUS",
    "ID_PATTERN",
    "MAX_PROMPT_CHARS",
    "ROLES",
    "ROLE_PROMPTS",
    "AIError",
    "AISettings",
    "Agent",
    "AnswerStream",
    "ChatRequest",
    "ChatStream",
    "Completion",
    "EventStreamResponse",
    "LimitExceededError",
    "MaxTokens",
    "OfflineProvider",
    "OpenAIProvider",
    "ProcessRequest",
    "ProcessResponse",
    "Provider",
    "ProviderError",
    "Role",
    "ServerSentEvent",
    "Session",
    "Temperature",
    "TokenUsage",
    "Turn",
    "UsageCounts",
    "UsageReport",
    "UserUsage",
    "ai_error_handler",
    "build_messages",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "estimate_usage",
    "install_ai_error_handler",
    "learner_content",
    "offline_answer",
]

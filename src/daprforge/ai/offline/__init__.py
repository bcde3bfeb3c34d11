"""Offline mode: useful, deterministic help without a model.

Each tutoring role answers from real analysis of what the learner sent: code review from
Python's compiler and lint checks, concepts from a built-in set of explanations, triage
from rules over the error message. ``general`` picks whichever fits. Every answer says it
is offline help, and the service reports ``"provider": "offline"``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from daprforge.ai.models import TokenUsage
from daprforge.ai.offline.concepts import explain, find_concept
from daprforge.ai.offline.review import extract_code, review_code
from daprforge.ai.offline.triage import classify
from daprforge.ai.provider import ChatRequest, Completion, TextStream
from daprforge.ai.settings import Role
from daprforge.ai.tokens import estimate_usage

OFFLINE_MODEL = "offline"
NOTICE = "Offline help (no AI model is configured; this comes from built-in analysis)."
_ERROR_SIGN = re.compile(r"Traceback|\b[A-Z][A-Za-z]*Error\b|doesn't work|does not work")

__all__ = ["NOTICE", "OFFLINE_MODEL", "OfflineProvider", "offline_answer"]


def offline_answer(role: Role, prompt: str, context: Mapping[str, Any] | None = None) -> str:
    if role == "code-review":
        code = extract_code(prompt, context)
        if code is None:
            body = (
                "Send the code to review in a ```python block, or as `context.code`; "
                "it is compiled and checked, never run."
            )
        else:
            body = review_code(code)
    elif role == "concepts":
        body = explain(prompt)
    elif role == "triage":
        body = classify(prompt, context).render()
    else:
        body = _general(prompt, context)
    return f"{NOTICE}\n\n{body}"


def _general(prompt: str, context: Mapping[str, Any] | None) -> str:
    if _ERROR_SIGN.search(prompt) or (context and "error" in context):
        return classify(prompt, context).render()
    code = extract_code(prompt, context)
    if code is not None:
        return review_code(code)
    if find_concept(prompt) is not None:
        return explain(prompt)
    return (
        "Offline I can review Python code (send it in a ```python block), explain a Python "
        "concept (e.g. 'Explain dictionaries'), or classify an error (paste the traceback)."
    )


class OfflineProvider:
    """The provider of offline mode: no network, answers from ``offline_answer``."""

    name = "offline"
    holds_until_release = True

    def __init__(self, role: Role) -> None:
        self.role = role

    async def complete(self, request: ChatRequest) -> Completion:
        # The analysis parses and walks learner code: CPU work, kept off the event loop.
        text = await asyncio.to_thread(offline_answer, self.role, request.prompt, request.context)
        return Completion(text, OFFLINE_MODEL, _usage(request, text), "stop")

    async def open_stream(
        self, request: ChatRequest, *, release: asyncio.Future[None] | None = None
    ) -> TextStream:
        if release is not None:  # the analysis is CPU work: none for a refused request
            await release
        text = await asyncio.to_thread(offline_answer, self.role, request.prompt, request.context)
        return TextStream(text, OFFLINE_MODEL, usage=_usage(request, text), finish_reason="stop")

    async def aclose(self) -> None:
        return None


def _usage(request: ChatRequest, text: str) -> TokenUsage:
    return estimate_usage(request.messages, text)

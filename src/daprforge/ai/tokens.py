"""Token counts without a tokenizer download.

tiktoken fetches its encoding files on first use, which a service without internet cannot
do; so counts here are estimates, made to be close to BPE tokenizers on English text and
Python code: a word is one token per four characters (at least one), each punctuation mark
is one, and each message adds the chat format's overhead (OpenAI's cookbook: about 3 per
message plus 3 to prime the reply). Good for trimming and budgets, never for billing: the
provider's reported usage wins whenever there is one, and estimates are flagged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from daprforge.ai.models import TokenUsage

_PIECES = re.compile(r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_]")
PER_MESSAGE = 3
REPLY_PRIMING = 3


def estimate_tokens(text: str) -> int:
    count = 0
    for piece in _PIECES.findall(text):
        count += (len(piece) + 5) // 6 if piece[0].isalnum() or piece[0] == "_" else 1
    return count


def estimate_message_tokens(message: Mapping[str, object]) -> int:
    content = message.get("content")
    return PER_MESSAGE + (estimate_tokens(content) if isinstance(content, str) else 0)


def estimate_prompt_tokens(messages: Iterable[Mapping[str, object]]) -> int:
    return REPLY_PRIMING + sum(estimate_message_tokens(message) for message in messages)


def estimate_usage(messages: Iterable[Mapping[str, object]], completion: str) -> TokenUsage:
    prompt = estimate_prompt_tokens(messages)
    answer = estimate_tokens(completion)
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=answer,
        total_tokens=prompt + answer,
        estimated=True,
    )

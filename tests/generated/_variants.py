"""The projects the suite generates: every kind with its defaults, and with other options
(long names, other ports and sizes), so templates are exercised at their edges."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Variant:
    id: str
    kind: str
    name: str
    args: tuple[str, ...] = field(default_factory=tuple)

    def command(self) -> list[str]:
        return ["new", self.kind, self.name, "--defaults", *self.args]


# The longest names allowed, so the templates' line lengths are checked where they break.
LONG_NAME = "a-learning-service-with-a-very-long-name-that-fills-all-63-char"
assert len(LONG_NAME) == 63

VARIANTS = (
    Variant("ai-agent-defaults", "ai-agent", "triage-service"),
    Variant(
        "ai-agent-options",
        "ai-agent",
        LONG_NAME,
        (
            "--role",
            "triage",
            "--model",
            "gpt-4.1-nano",
            "--system-prompt",
            'You explain "Python" code; be brief & kind.',
            "--max-tokens",
            "1200",
            "--temperature",
            "0.2",
            "--port",
            "9100",
            "--set",
            "replicas=3",
            "--image",
            "registry.example.com/learnflow/triage:1.4.2",
        ),
    ),
    # LearnFlow's code-review service: the third tutoring role's offline answers and tests.
    Variant(
        "ai-agent-code-review",
        "ai-agent",
        "code-review-service",
        ("--role", "code-review", "--temperature", "0"),
    ),
    Variant("crud-api-defaults", "crud-api", "items-service"),
    Variant(
        "crud-api-options",
        "crud-api",
        "exercise-service",
        (
            "--resource",
            "learning-path-milestone-step",
            "--plural",
            "learning-path-steps",
            "--port",
            "8081",
            "--events-topic",
            "learning.path-steps.v1",
            "--soft-delete",
            "true",
        ),
    ),
    Variant("event-processor-defaults", "event-processor", "learning-events-processor"),
    Variant(
        "event-processor-options",
        "event-processor",
        LONG_NAME,
        (
            "--topic",
            "progress.v1",
            "--dead-letter-topic",
            "progress.v1.failed",
            "--max-retries",
            "0",
            "--set",
            "port=8200",
        ),
    ),
    Variant("code-executor-defaults", "code-executor", "code-runner"),
    Variant(
        "code-executor-options",
        "code-executor",
        "sandbox",
        (
            *("--timeout", "2.5", "--max-output", "2048", "--concurrency", "1"),
            *("--queue", "4", "--replicas", "1"),
        ),
    ),
)
DEFAULTS = tuple(variant for variant in VARIANTS if variant.id.endswith("-defaults"))

"""The four kinds of service and their options.

Each kind's options are a Pydantic model: one place says the type, the default, the limits
and the help text of every option, and the CLI flags, ``--set``, ``daprforge kinds``, the
prompts and the answers file are all derived from it. Options every kind has live in
:class:`CommonOptions`.

Option values end up inside Python, YAML and TOML files, so free text is kept to what
renders safely (the templates quote it for each language as well).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from daprforge.generator.errors import InvalidNameError
from daprforge.generator.names import ResourceNames, check_resource_word, resource_names

# Ports the Dapr sidecar listens on inside the pod: the app shares its network namespace,
# so it cannot use them.
DAPR_PORTS: Mapping[int, str] = {
    3500: "the Dapr sidecar's HTTP API",
    3501: "the Dapr sidecar's health endpoint",
    7777: "the Dapr sidecar's profiling port",
    9090: "the Dapr sidecar's metrics port",
    50001: "the Dapr sidecar's gRPC API",
    50002: "the Dapr sidecar's internal gRPC port",
}
MIN_PORT = 1024  # the container runs as non-root with no capabilities: no privileged ports
MAX_PORT = 65535

_IMAGE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"  # optional registry host[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?P<digest>@sha256:[a-f0-9]{64})?$"
)
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")


def _topic_name(topic: str | None, example: str) -> str | None:
    if topic is not None and not _TOPIC.match(topic):
        raise ValueError(
            f"use letters, digits, '.', '_' and '-' (as Kafka topics do), e.g. {example}"
        )
    return topic


def _check(function: Callable[..., Any], *args: Any) -> None:
    """Run a names check inside a validator: Pydantic reports only ValueErrors as
    validation errors, so the suggestion becomes part of the message."""
    try:
        function(*args)
    except InvalidNameError as error:
        suggestion = f" (for example {error.suggestion})" if error.suggestion else ""
        raise ValueError(error.message + suggestion) from None


def _ask() -> dict[str, Any]:
    """Field marker: prompt for this option when a terminal is attached."""
    return {"ask": True}


class CommonOptions(BaseModel):
    """Options of every kind."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    port: int = Field(
        default=8000,
        description="Port the app listens on (locally, in the container and in Kubernetes).",
    )
    replicas: int = Field(
        default=2, ge=1, le=100, description="Pod replicas in k8s/deployment.yaml."
    )
    image: str | None = Field(
        default=None,
        description="Container image in k8s/deployment.yaml, with a tag or digest "
        "(default: NAME:0.1.0).",
    )

    @field_validator("port")
    @classmethod
    def _port(cls, port: int) -> int:
        if not MIN_PORT <= port <= MAX_PORT:
            raise ValueError(
                f"use a port from {MIN_PORT} to {MAX_PORT}: the container runs as a non-root "
                "user, which cannot listen below 1024"
            )
        if port in DAPR_PORTS:
            raise ValueError(
                f"port {port} is {DAPR_PORTS[port]}, which shares the pod's network with the app"
            )
        return port

    @field_validator("image")
    @classmethod
    def _image(cls, image: str | None) -> str | None:
        if image is None:
            return None
        match = _IMAGE.match(image)
        if match is None:
            raise ValueError("not an image reference like registry.example.com/team/app:1.2.0")
        tag, digest = match.group("tag"), match.group("digest")
        if tag is None and digest is None:
            raise ValueError("add a version tag (e.g. :0.1.0) or a digest, so rollouts are pinned")
        if tag == "latest" and digest is None:
            raise ValueError("':latest' is not pinned; use a version tag such as :0.1.0")
        return image


# As daprforge.ai.settings.ROLES; not imported from there, because the generator must
# work without the `ai` extra (tests/ai checks that the two agree).
AI_ROLES = ("general", "triage", "concepts", "code-review")


class AiAgentOptions(CommonOptions):
    role: str = Field(
        default="general",
        description="Tutoring role: general, triage, concepts or code-review. It picks the "
        "default system prompt and what offline mode answers with.",
    )
    model: str = Field(
        default="gpt-4o-mini",
        description="OpenAI chat model.",
        json_schema_extra=_ask(),
    )
    system_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="System prompt sent with every request (default: the role's).",
    )
    max_tokens: int = Field(default=500, ge=1, le=128_000, description="Most tokens per answer.")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="Sampling temperature.")

    @field_validator("role")
    @classmethod
    def _role(cls, role: str) -> str:
        if role not in AI_ROLES:
            raise ValueError(f"use one of {', '.join(AI_ROLES)}")
        return role

    @field_validator("model")
    @classmethod
    def _model(cls, model: str) -> str:
        if not _MODEL.match(model):
            raise ValueError("use a model name such as gpt-4o-mini")
        return model

    @field_validator("system_prompt")
    @classmethod
    def _prompt(cls, prompt: str | None) -> str | None:
        if prompt is not None and not prompt.isprintable():
            raise ValueError("use one line of printable text (no tabs or line breaks)")
        return prompt


class CrudApiOptions(CommonOptions):
    resource: str = Field(
        default="item",
        description="The resource, singular (e.g. exercise): routes are /<plural>.",
        json_schema_extra=_ask(),
    )
    plural: str | None = Field(
        default=None, description="Plural of the resource (default: English rules)."
    )
    events_topic: str | None = Field(
        default=None,
        description="Topic of the change events on pub/sub 'pubsub' (default: the plural).",
    )
    soft_delete: bool = Field(
        default=False,
        description="DELETE marks items deleted in the store instead of removing them.",
    )

    @field_validator("resource", "plural")
    @classmethod
    def _word(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _check(check_resource_word, value, info.field_name or "resource")
        return value

    @field_validator("events_topic")
    @classmethod
    def _events_topic(cls, topic: str | None) -> str | None:
        return _topic_name(topic, "exercises")

    @property
    def topic(self) -> str:
        return self.events_topic or self.names.plural_kebab

    @model_validator(mode="after")
    def _names(self) -> CrudApiOptions:
        _check(resource_names, self.resource, self.plural)
        return self

    @property
    def names(self) -> ResourceNames:
        return resource_names(self.resource, self.plural)


class EventProcessorOptions(CommonOptions):
    topic: str = Field(
        default="learning-events",
        description="Topic subscribed to, on the pub/sub component 'pubsub'.",
        json_schema_extra=_ask(),
    )
    dead_letter_topic: str | None = Field(
        default=None,
        description="Where events go that fail every retry (default: <topic>-dead-letter).",
    )
    max_retries: int = Field(
        default=3, ge=0, le=100, description="Redeliveries of a failing event before it is dropped."
    )

    @field_validator("topic", "dead_letter_topic")
    @classmethod
    def _topic(cls, topic: str | None) -> str | None:
        return _topic_name(topic, "learning-events")

    @model_validator(mode="after")
    def _distinct(self) -> EventProcessorOptions:
        if self.dead_letter_topic == self.topic:
            raise ValueError(
                "the dead-letter topic must differ from the topic, or failed events come back"
            )
        return self

    @property
    def dead_letter(self) -> str:
        return self.dead_letter_topic or f"{self.topic}-dead-letter"


class CodeExecutorOptions(CommonOptions):
    timeout: float = Field(
        default=5.0,
        gt=0.0,
        le=300.0,
        description="Seconds a run may take before it is killed.",
        json_schema_extra=_ask(),
    )
    max_output: int = Field(
        default=65_536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Bytes of stdout and of stderr kept per run; the rest is cut.",
    )
    concurrency: int = Field(
        default=2, ge=1, le=64, description="Sandboxes running at once per replica."
    )
    queue: int = Field(
        default=16,
        ge=0,
        le=1000,
        description="Requests waiting for a sandbox per replica; more get 429.",
    )


@dataclass(frozen=True)
class Kind:
    name: str
    description: str
    options: type[CommonOptions]


@dataclass(frozen=True)
class Resources:
    """Kubernetes requests and limits for the app container."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


# The brief's recommended sizes: AI services get more memory for the OpenAI SDK.
DEFAULT_RESOURCES = Resources("100m", "256Mi", "500m", "512Mi")
AI_RESOURCES = Resources("200m", "512Mi", "1000m", "1Gi")

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "ai-agent",
            "AI tutor on the OpenAI SDK: SSE, memory, cache, limits, token usage; offline.",
            AiAgentOptions,
        ),
        Kind(
            "crud-api",
            "REST API for one resource over the Dapr state store: ETags, paged lists, "
            "change events.",
            CrudApiOptions,
        ),
        Kind(
            "event-processor",
            "Aggregates a pub/sub topic's events exactly once; dead letters with replay.",
            EventProcessorOptions,
        ),
        Kind(
            "code-executor",
            "Runs untrusted Python in a sandbox and validates exercises against tests.",
            CodeExecutorOptions,
        ),
    )
}


def resources_for(kind: str) -> Resources:
    return AI_RESOURCES if kind == "ai-agent" else DEFAULT_RESOURCES


@dataclass(frozen=True)
class OptionInfo:
    """One option as the CLI shows it."""

    key: str
    """As stored and used with ``--set`` (``max_tokens``)."""
    flag: str
    """As a flag (``--max-tokens``)."""
    type_name: str
    default: Any
    description: str
    ask: bool
    common: bool


def option_infos(kind: Kind) -> list[OptionInfo]:
    """The kind's own options first, then the common ones, in declaration order."""
    common = set(CommonOptions.model_fields)
    infos = []
    for key, field in kind.options.model_fields.items():
        extra = field.json_schema_extra
        infos.append(
            OptionInfo(
                key=key,
                flag="--" + key.replace("_", "-"),
                type_name=_type_name(field.annotation),
                default=field.default,
                description=field.description or "",
                ask=isinstance(extra, dict) and bool(extra.get("ask")),
                common=key in common,
            )
        )
    return [info for info in infos if not info.common] + [info for info in infos if info.common]


def _type_name(annotation: Any) -> str:
    names = {int: "integer", float: "number", str: "text", bool: "true/false"}
    for candidate, name in names.items():
        if annotation is candidate or annotation == candidate | None:
            return name
    return str(annotation)

"""The variables templates see, built from a validated project.

Everything a template needs is decided here, in Python, so templates stay declarative:
names in every spelling, ports, images, Kubernetes sizes, the Dapr component names, and
the kind's own settings. Templates never compute defaults themselves.
"""

from __future__ import annotations

from typing import Any

from daprforge import __version__
from daprforge.generator.inputs import Project
from daprforge.generator.kinds import (
    AiAgentOptions,
    CodeExecutorOptions,
    CommonOptions,
    CrudApiOptions,
    EventProcessorOptions,
    resources_for,
)

# The base image of generated Dockerfiles, pinned to a patch release. Bump it here (and the
# tests compare every project against it).
PYTHON_IMAGE = "python:3.12.11-slim-bookworm"
# The image's non-root user and group ids (above the range distributions use).
APP_UID = 10001

# Dapr component names the app uses by default (locally, and in tests). On Kubernetes a
# Component's name is unique in its namespace, so there the names carry the app id and the
# Deployment points the app at them through STATE_STORE / PUBSUB_NAME: two services
# applied to one namespace then never replace each other's components.
LOCAL_STATE_STORE = "statestore"
LOCAL_PUBSUB = "pubsub"
LOCAL_SECRET_STORE = "secretstore"


def daprforge_requirement(extra: str | None = None) -> str:
    """How a generated project depends on daprforge: this release or any later one below
    the next major version (0.x: the next minor version, as semver allows breaks there)."""
    major, minor, *_ = (int(part) for part in __version__.split(".")[:2])
    upper = f"{major + 1}" if major > 0 else f"0.{minor + 1}"
    name = f"daprforge[{extra}]" if extra else "daprforge"
    return f"{name}>={__version__},<{upper}"


def requirements(options: CommonOptions) -> list[str]:
    """Run-time requirements of a generated project (sorted, as pip-compile would)."""
    found = [
        # The AI layer (daprforge.ai) and the OpenAI SDK come with daprforge's `ai` extra;
        # the code executor's sandbox (bwrap, libseccomp's binding) with its `sandbox` extra.
        daprforge_requirement(_extra(options)),
        "fastapi>=0.115",
        "pydantic>=2.7",
        "pydantic-settings>=2.3",
        "uvicorn[standard]>=0.30",
    ]
    return sorted(found)


def _extra(options: CommonOptions) -> str | None:
    if isinstance(options, AiAgentOptions):
        return "ai"
    if isinstance(options, CodeExecutorOptions):
        return "sandbox"
    return None


def dev_requirements() -> list[str]:
    return sorted(
        [
            daprforge_requirement("sidecar"),
            "httpx>=0.27",
            "mypy>=1.11",
            "pytest>=8.2",
            "pytest-asyncio>=0.24",
            "ruff>=0.6",
        ]
    )


def kind_env(options: CommonOptions) -> list[tuple[str, str]]:
    """Settings the Deployment sets for this kind, beyond the common ones."""
    if isinstance(options, AiAgentOptions):
        return [("OPENAI_MODEL", options.model), ("AI_ROLE", options.role)]
    if isinstance(options, EventProcessorOptions):
        return [("EVENTS_TOPIC", options.topic), ("DEAD_LETTER_TOPIC", options.dead_letter)]
    if isinstance(options, CrudApiOptions):
        return [("EVENTS_TOPIC", options.topic)]
    return []


def guarded_request(options: CommonOptions) -> str:
    """A request to a public route, as the API-key test in tests/test_main.py makes it."""
    if isinstance(options, AiAgentOptions):
        return 'get("/usage/anonymous")'
    if isinstance(options, CrudApiOptions):
        return f'get("/{options.names.plural_kebab}")'
    if isinstance(options, EventProcessorOptions):
        return 'get("/stats")'
    return 'post("/execute", json={"code": "print(1)"})'


def build_context(project: Project) -> dict[str, Any]:
    names = project.names
    options = project.options
    context: dict[str, Any] = {
        "kind": project.kind.name,
        "kind_description": project.kind.description,
        "name": names.name,
        "app_id": names.name,
        "package": names.package,
        "title": names.title,
        "camel": names.camel,
        "port": options.port,
        "replicas": options.replicas,
        "image": options.image or f"{names.name}:0.1.0",
        "resources": resources_for(project.kind.name),
        "daprforge_version": __version__,
        "daprforge_requirement": daprforge_requirement(),
        "python_image": PYTHON_IMAGE,
        "app_uid": APP_UID,
        "state_store": LOCAL_STATE_STORE,
        "pubsub": LOCAL_PUBSUB,
        "secret_store": LOCAL_SECRET_STORE,
        "k8s_state_store": f"{names.name}-statestore",
        "k8s_pubsub": f"{names.name}-pubsub",
        "k8s_config": f"{names.name}-config",
        # App settings as environment variables (envFrom), and the credentials only the
        # sidecar's components read: two secrets, so the app never sees the database password.
        "k8s_env_secret": f"{names.name}-env",
        "k8s_dapr_secret": f"{names.name}-dapr",
        "kind_env": kind_env(options),
        "requirements": requirements(options),
        "dev_requirements": dev_requirements(),
        "uses_ai": isinstance(options, AiAgentOptions),
        "subscribes": isinstance(options, EventProcessorOptions),
        "options": options,
    }
    context["guarded_request"] = guarded_request(options)
    if isinstance(options, CrudApiOptions):
        context["resource"] = options.names
        context["events_topic"] = options.topic
        context["soft_delete"] = options.soft_delete
    if isinstance(options, EventProcessorOptions):
        context["topic"] = options.topic
        context["dead_letter_topic"] = options.dead_letter
        context["max_retries"] = options.max_retries
    if isinstance(options, CodeExecutorOptions):
        context["timeout"] = options.timeout
        context["max_output"] = options.max_output
        context["concurrency"] = options.concurrency
        context["queue"] = options.queue
    if isinstance(options, AiAgentOptions):
        context["role"] = options.role
        context["model"] = options.model
        context["system_prompt"] = options.system_prompt
        context["max_tokens"] = options.max_tokens
        context["temperature"] = options.temperature
    return context

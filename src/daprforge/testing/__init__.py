"""Test support for daprforge services: real sidecar processes, the app under test served
on a port, and a local OpenAI-compatible server. The pytest fixtures are in
:mod:`daprforge.testing.plugin`. See docs/runtime.md.
"""

from daprforge.launch import free_port
from daprforge.testing.openai_server import OpenAIServer, RecordedRequest, Reply, ToolCall
from daprforge.testing.server import AppServer, serve_app
from daprforge.testing.sidecar import (
    Sidecar,
    SidecarFactory,
    component,
    in_memory_components,
    pubsub_retry_policy,
    start_sidecar,
)

__all__ = [
    "AppServer",
    "OpenAIServer",
    "RecordedRequest",
    "Reply",
    "Sidecar",
    "SidecarFactory",
    "ToolCall",
    "component",
    "free_port",
    "in_memory_components",
    "pubsub_retry_policy",
    "serve_app",
    "start_sidecar",
]

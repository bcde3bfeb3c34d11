"""Async client for the Dapr sidecar's HTTP API. See docs/runtime.md.

Everything a service needs is importable from here::

    from daprforge.client import DaprClient, ConcurrencyError, Upsert, Delete
"""

from daprforge.client.client import DaprClient, endpoint_from_env
from daprforge.client.cloudevents import CloudEvent
from daprforge.client.errors import (
    BulkPublishError,
    ComponentNotFoundError,
    ConcurrencyError,
    DaprError,
    InvocationError,
    SidecarUnavailableError,
)
from daprforge.client.invoke import InvokeResponse
from daprforge.client.metadata import ComponentInfo, SidecarMetadata, SubscriptionInfo
from daprforge.client.pubsub import BulkMessage
from daprforge.client.state import Delete, QueryResult, StateItem, Upsert
from daprforge.client.tracecontext import TraceContext, current_trace, use_trace
from daprforge.client.transport import CallObserver

__all__ = [
    "BulkMessage",
    "BulkPublishError",
    "CallObserver",
    "CloudEvent",
    "ComponentInfo",
    "ComponentNotFoundError",
    "ConcurrencyError",
    "DaprClient",
    "DaprError",
    "Delete",
    "InvocationError",
    "InvokeResponse",
    "QueryResult",
    "SidecarMetadata",
    "SidecarUnavailableError",
    "StateItem",
    "SubscriptionInfo",
    "TraceContext",
    "Upsert",
    "current_trace",
    "endpoint_from_env",
    "use_trace",
]

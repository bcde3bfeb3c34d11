"""REST resources over the Dapr state API: what the crud-api kind is built on.

A service declares its resource (:class:`ResourceSpec`: the fields clients write, the
model they get back, what lists can filter and sort by) and gets a :class:`ResourceStore`
(versioned writes, listing on any transactional store, change events through a
transactional outbox) and its routes (:func:`resource_router`). See docs/crud-api.md.
"""

from daprforge.resources.cursor import CursorError, decode_cursor, encode_cursor
from daprforge.resources.errors import (
    IdempotencyKeyError,
    InvalidListError,
    NotFoundError,
    PreconditionFailedError,
    PreconditionRequiredError,
    ResourceError,
)
from daprforge.resources.models import ID_PATTERN, Resource, Timestamp, new_id, patch_model
from daprforge.resources.outbox import EventRelay, OutboxEvent
from daprforge.resources.router import resource_router
from daprforge.resources.spec import ResourceOptions, ResourceSpec
from daprforge.resources.store import ListQuery, Page, ResourceStore, Versioned

__all__ = [
    "ID_PATTERN",
    "CursorError",
    "EventRelay",
    "IdempotencyKeyError",
    "InvalidListError",
    "ListQuery",
    "NotFoundError",
    "OutboxEvent",
    "Page",
    "PreconditionFailedError",
    "PreconditionRequiredError",
    "Resource",
    "ResourceError",
    "ResourceOptions",
    "ResourceSpec",
    "ResourceStore",
    "Timestamp",
    "Versioned",
    "decode_cursor",
    "encode_cursor",
    "new_id",
    "patch_model",
    "resource_router",
]

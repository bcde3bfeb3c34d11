"""The CloudEvent envelope daprd wraps published data in, as a typed Pydantic model.

``CloudEvent[Order]`` validates ``data`` as an ``Order``. Publishing a CloudEvent sends it
as ``application/cloudevents+json``: daprd keeps it, filling ``source``, ``type``,
``specversion``, ``time`` and the trace fields if they are missing (but not ``id``, which
is why the model always has one). Unknown extension attributes are kept.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class CloudEvent(BaseModel, Generic[T]):
    model_config = ConfigDict(extra="allow")

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str | None = None
    type: str | None = None
    specversion: str = "1.0"
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    time: datetime | None = None
    data: T | None = None
    data_base64: str | None = None

    # Added by daprd.
    topic: str | None = None
    pubsubname: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    traceid: str | None = None
    expiration: datetime | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The event as JSON types, without empty attributes (daprd fills its defaults)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

"""What ``GET /v1.0/metadata`` reports about the sidecar, as typed models.

Only the commonly used fields are typed; everything else daprd reports is kept as extra
attributes, so nothing is lost when daprd adds fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ComponentInfo(_Model):
    name: str
    type: str
    version: str = ""
    capabilities: list[str] = Field(default_factory=list)


class SubscriptionRule(_Model):
    match: str = ""
    path: str


class SubscriptionInfo(_Model):
    pubsubname: str
    topic: str
    rules: list[SubscriptionRule] = Field(default_factory=list)
    dead_letter_topic: str = Field("", alias="deadLetterTopic")
    metadata: dict[str, str] = Field(default_factory=dict)
    type: str = ""


class SidecarMetadata(_Model):
    id: str = ""
    runtime_version: str = Field("", alias="runtimeVersion")
    enabled_features: list[str] = Field(default_factory=list, alias="enabledFeatures")
    components: list[ComponentInfo] = Field(default_factory=list)
    subscriptions: list[SubscriptionInfo] = Field(default_factory=list)
    extended: dict[str, Any] = Field(default_factory=dict)

    def component(self, name: str) -> ComponentInfo | None:
        return next((c for c in self.components if c.name == name), None)

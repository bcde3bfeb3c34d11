"""How a service describes its resource, and the options it runs the resource with."""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from daprforge.resources.models import SERVER_FIELDS, Resource, patch_model

M = TypeVar("M", bound=Resource)

Listing = Literal["auto", "query", "index"]


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def is_scalar(annotation: Any) -> bool:
    """Whether a field can be filtered by equality: text, numbers, booleans, enums."""
    annotation = _without_none(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, str | int | float | bool | enum.Enum)
    return False


@dataclass(frozen=True)
class ResourceSpec(Generic[M]):
    """A resource: ``name`` (singular, for event types), ``plural`` (state keys and
    routes), the ``fields`` clients write and the ``model`` clients get back (``fields``
    plus :class:`Resource`). ``filters`` are the fields a list can be filtered on by
    equality; ``sorts`` the fields it can be sorted by (``id``, ``created_at`` and
    ``updated_at`` always can)."""

    name: str
    plural: str
    fields: type[BaseModel]
    model: type[M]
    filters: tuple[str, ...] = ()
    sorts: tuple[str, ...] = ()
    patch: type[BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        if not issubclass(self.model, self.fields):
            raise TypeError(f"{self.model.__name__} must subclass {self.fields.__name__}")
        clash = SERVER_FIELDS & set(self.fields.model_fields)
        if clash:
            raise TypeError(f"{sorted(clash)} are set by the server; remove them from fields")
        for name in self.filters:
            if name in ("limit", "cursor", "sort"):
                raise TypeError(f"filter {name!r} would clash with the list parameter {name}")
            info = self.fields.model_fields.get(name)
            if info is None or not is_scalar(info.annotation):
                raise TypeError(f"filter {name!r} must be a text, number, boolean or enum field")
        for name in self.sorts:
            info = self.model.model_fields.get(name)
            if info is None or (not is_scalar(info.annotation) and name not in SERVER_FIELDS):
                raise TypeError(f"sort {name!r} must be a text, number, boolean or enum field")
        object.__setattr__(self, "patch", patch_model(self.fields))

    @property
    def sort_fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(("created_at", "updated_at", "id", *self.sorts)))

    @property
    def keyed_sorts(self) -> tuple[str, ...]:
        """The declared sorts whose order is stored beside the item as sort text
        (:func:`~daprforge.resources.models.sort_text`); the server's fields sort as
        they are."""
        return tuple(name for name in self.sorts if name not in SERVER_FIELDS)

    def filter_annotation(self, name: str) -> Any:
        return _without_none(self.fields.model_fields[name].annotation)


@dataclass(frozen=True)
class ResourceOptions:
    """How the resource is stored and announced.

    ``listing``: ``query`` uses the state store's query API (PostgreSQL v1), ``index``
    keeps the ids in index keys updated in the same transactions as the items (any
    transactional store, e.g. SQLite), ``auto`` asks the sidecar which the store supports.
    ``topic``: where change events go (``None``: no events).
    """

    app_id: str
    state_store: str = "statestore"
    pubsub: str = "pubsub"
    topic: str | None = None
    require_if_match: bool = True
    soft_delete: bool = False
    listing: Listing = "auto"
    index_buckets: int = 64

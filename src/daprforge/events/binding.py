"""What a handler's signature asks for, and how a delivered CloudEvent is bound to it.

The first parameter receives the event, according to its annotation:

- ``CloudEvent[Order]`` (or ``CloudEvent``): the whole envelope, ``data`` as an ``Order``;
- ``bytes``: the payload as bytes (``data_base64`` decoded, or the data as sent);
- any other type (a Pydantic model, ``dict``, ``list[int]`` ...): just ``data``, validated.

Further parameters are FastAPI dependencies (``Annotated[X, Depends(...)]``, ``Request``),
resolved per delivery exactly as for a route, except one annotated ``UnitOfWork``: the
router passes a fresh unit of work to it on every run (see :mod:`daprforge.events.unit`).
"""

from __future__ import annotations

import base64
import binascii
import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError

from daprforge.client.cloudevents import CloudEvent
from daprforge.client.codec import encode_json, type_adapter
from daprforge.events.unit import UnitOfWork

Handler = Callable[..., Awaitable[Any]]


class PayloadError(ValueError):
    """The event's payload cannot be read as the handler asks."""


def _is_event_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, CloudEvent)


@dataclass(frozen=True, slots=True)
class HandlerBinding:
    handler: Handler
    annotation: Any
    dependencies: tuple[inspect.Parameter, ...]
    unit: str | None = None
    """The name of the parameter that takes a UnitOfWork, if any."""

    @classmethod
    def of(cls, handler: Handler) -> HandlerBinding:
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"event handler {handler.__qualname__} must be an async def")
        parameters = list(inspect.signature(handler).parameters.values())
        if not parameters or parameters[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(
                f"event handler {handler.__qualname__} needs a first parameter for the event"
            )
        # Resolve string annotations (``from __future__ import annotations``) here, in the
        # handler's module: FastAPI would look for them in ours.
        try:
            hints = typing.get_type_hints(handler, include_extras=True)
        except NameError as exc:
            raise TypeError(
                f"cannot resolve the annotations of event handler {handler.__qualname__} "
                f"({exc}): define the types it uses at module level"
            ) from None
        units = [p.name for p in parameters[1:] if hints.get(p.name) is UnitOfWork]
        if len(units) > 1:
            raise TypeError(f"event handler {handler.__qualname__} takes more than one UnitOfWork")
        dependencies = tuple(
            p.replace(
                kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)
            )
            for p in parameters[1:]
            if p.name not in units
        )
        return cls(
            handler, hints.get(parameters[0].name, Any), dependencies, units[0] if units else None
        )

    @property
    def type_name(self) -> str:
        return getattr(self.annotation, "__name__", None) or repr(self.annotation)

    def argument(self, raw: dict[str, Any]) -> Any:
        """The handler's first argument for the CloudEvent ``raw``; raises ValidationError
        or PayloadError when the event cannot be what the handler expects."""
        if self.annotation is Any:
            return raw.get("data")
        if self.annotation is bytes:
            return _payload_bytes(raw)
        if _is_event_model(self.annotation):
            model = cast(type[CloudEvent[Any]], self.annotation)
            data_type = model.model_fields["data"].annotation
            data = raw.get("data")
            if data is not None and _is_text_for(data, data_type):
                data = type_adapter(data_type).validate_json(data)
            return model.model_validate({**raw, "data": data})
        return _validate_data(self.annotation, raw)


def _is_text_for(data: Any, data_type: Any) -> bool:
    """JSON published as text (no or a text content type) arrives as a string."""
    if not isinstance(data, str):
        return False
    try:
        type_adapter(data_type).validate_python(data)
    except ValidationError:
        return True
    return False


def _validate_data(annotation: Any, raw: dict[str, Any]) -> Any:
    adapter = type_adapter(annotation)
    if "data" not in raw and isinstance(raw.get("data_base64"), str):
        return adapter.validate_json(_payload_bytes(raw))
    data = raw.get("data")
    try:
        return adapter.validate_python(data)
    except ValidationError as error:
        if not isinstance(data, str):
            raise
        try:
            return adapter.validate_json(data)
        except ValidationError:
            raise error from None


def _payload_bytes(raw: dict[str, Any]) -> bytes:
    encoded = raw.get("data_base64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise PayloadError(f"data_base64 is not base64: {exc}") from None
    data = raw.get("data")
    if isinstance(data, str):
        return data.encode()
    return encode_json(data)

"""Values in and out of the sidecar: JSON by default, Pydantic models understood.

Encoding goes through pydantic-core, so models, dataclasses, datetimes, UUIDs and enums
nested anywhere in a value are written the way Pydantic writes them (by alias, so they
read back). Decoding with a type validates with that type; without one it is plain JSON.
``bytes`` asks for the stored bytes as they are (for values that are not JSON).
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar, cast

import pydantic_core
from pydantic import TypeAdapter

T = TypeVar("T")


def encode_json(value: Any) -> bytes:
    return pydantic_core.to_json(value, by_alias=True)


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, ...), for embedding in a request."""
    return pydantic_core.to_jsonable_python(value, by_alias=True)


@functools.lru_cache(maxsize=256)
def _cached_adapter(type_: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_)


def type_adapter(type_: Any) -> TypeAdapter[Any]:
    """A (cached) Pydantic TypeAdapter for ``type_``."""
    try:
        return _cached_adapter(type_)
    except TypeError:  # an unhashable type form: build it each time
        return TypeAdapter(type_)


def decode_json(data: bytes | str, type_: type[T] | None = None) -> T | Any:
    """Parse JSON ``data``; validate it as ``type_`` when given (raises ValidationError)."""
    if type_ is None:
        return json.loads(data)
    if type_ is bytes:
        return data.encode() if isinstance(data, str) else data
    return cast(T, type_adapter(type_).validate_json(data))


def decode_value(value: Any, type_: type[T] | None = None) -> T | Any:
    """Validate an already parsed JSON value as ``type_`` (bulk and query results)."""
    if type_ is None:
        return value
    # Through JSON again so validation is JSON-mode, exactly as for a single get.
    return decode_json(encode_json(value), type_)

"""What every stored resource has: a server-generated id and timestamps, plus the
helpers that derive request models from the fields a service declares.

Ids are time-ordered (microseconds since the epoch, then randomness), so sorting by id is
creation order on every store. Timestamps always serialize with microseconds and a ``Z``:
PostgreSQL's query API compares and sorts JSON values as text, and only a fixed-width
format sorts the same as the instants it encodes.
"""

from __future__ import annotations

import copy
import math
import re
import secrets
import struct
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, create_model

ID_PATTERN = r"^[0-9a-f]{24}$"
_ID = re.compile(ID_PATTERN)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:  # stored values are always UTC
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    # isoformat rather than strftime: faster, and it pads years below 1000 to four digits.
    return _utc(moment).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


Timestamp = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
"""A UTC instant, written as ``2026-01-02T03:04:05.000006Z`` (sortable as text)."""


class Resource(BaseModel):
    """The fields the server manages; a service's model adds its own fields:
    ``class Exercise(ExerciseFields, Resource)``."""

    # NaN and infinities are not JSON: stored as null, they would fail every later read.
    model_config = ConfigDict(allow_inf_nan=False)

    id: str
    created_at: Timestamp
    updated_at: Timestamp


SERVER_FIELDS = frozenset(Resource.model_fields)


def sort_text(value: Any) -> str:
    """``value`` (a field's JSON value) as text that sorts like the value: PostgreSQL's
    query API sorts JSON values as text, where 10 would come before 9 and null last.

    Null sorts first; a number is its IEEE 754 double as 16 hex digits, sign bit flipped
    (negatives: every bit), which orders every double; text is itself, which sorts the
    same as Python's str in a C collation (the byte order of UTF-8 is code point order).
    Ints beyond 2**53 that round to one double tie (then ids decide).
    """
    if value is None:
        return "0"
    if isinstance(value, bool | int | float):
        try:
            number = float(value) + 0.0  # + 0.0: -0.0 becomes 0.0, as Python compares them
        except OverflowError:  # an int beyond every double
            number = math.inf if value > 0 else -math.inf
        (bits,) = struct.unpack(">Q", struct.pack(">d", number))
        bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
        return f"1{bits:016x}"
    return f"2{value}"


_last_micros = 0


def new_id() -> str:
    """24 hex digits: 14 of microseconds since the epoch, then 40 random bits. Ids made
    in the same microsecond by this process get the next microseconds, so they still
    sort in the order they were made."""
    global _last_micros
    _last_micros = max(time.time_ns() // 1000, _last_micros + 1)
    return f"{_last_micros:014x}{secrets.token_hex(5)}"


def is_id(text: str) -> bool:
    return _ID.match(text) is not None


def new_revision() -> str:
    """A fresh version tag: the ETag clients see changes with every write."""
    return secrets.token_hex(8)


def now() -> datetime:
    return datetime.now(UTC)


def patch_model(fields: type[BaseModel]) -> type[BaseModel]:
    """``fields`` with every field optional: the body of a PATCH. Sending a field as
    ``null`` is only valid where the field itself allows null; fields not sent stay as
    they are. Validators of ``fields`` run on the merged result, not here."""
    definitions: dict[str, Any] = {}
    for name, info in fields.model_fields.items():
        optional = copy.copy(info)
        optional.default = None
        optional.default_factory = None
        definitions[name] = (info.annotation, optional)
    config = ConfigDict(**{**fields.model_config, "extra": "forbid"})
    return create_model(
        f"{fields.__name__.removesuffix('Fields')}Patch",
        __config__=config,
        __doc__="Only the fields to change; the others keep their values.",
        **definitions,
    )

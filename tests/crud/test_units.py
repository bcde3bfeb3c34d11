"""The pure parts of daprforge.resources: cursors, preconditions, ids and timestamps, the
models derived from a service's fields, and what a ResourceSpec accepts."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daprforge.resources import (
    CursorError,
    Resource,
    ResourceSpec,
    decode_cursor,
    encode_cursor,
    new_id,
    patch_model,
)
from daprforge.resources.models import format_timestamp, is_id, sort_text
from daprforge.resources.preconditions import etag_of, if_match_allows, if_none_match_hits
from tests.crud._app import SPEC, Exercise, ExerciseFields

numbers = st.integers(min_value=-(10**400), max_value=10**400) | st.floats(
    allow_nan=False, allow_infinity=False
)


@given(st.lists(numbers | st.none(), min_size=2))
def test_sort_text_orders_numbers_and_null_like_python(values: list[int | float | None]) -> None:
    def python_order(value: int | float | None) -> tuple[int, float | int]:
        return (0, 0) if value is None else (1, value)

    by_text = sorted(values, key=sort_text)
    for smaller, larger in itertools.pairwise(by_text):
        # Out of order only where the texts tie: ints rounding to one double.
        assert python_order(smaller) <= python_order(larger) or (
            sort_text(smaller) == sort_text(larger) and int in (type(smaller), type(larger))
        )


@given(st.lists(st.text(), min_size=2))
def test_sort_text_orders_text_by_code_point(values: list[str]) -> None:
    assert sorted(values, key=sort_text) == sorted(values)
    assert sorted(map(sort_text, values), key=str.encode) == sorted(map(sort_text, values))


def test_a_cursor_round_trips() -> None:
    position = {"k": "2026-01-01T00:00:00.000000Z", "id": new_id()}
    cursor = encode_cursor(position, "abc")
    assert "=" not in cursor  # URL-safe, unpadded
    assert decode_cursor(cursor, "abc") == position


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 !",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"v": 2, "q": "abc", "p": 1}').decode(),
        base64.urlsafe_b64encode(b'{"v": 1, "q": "abc"}').decode(),
        "A" * 5000,
        base64.urlsafe_b64encode(b"[" * 1536).decode(),  # nested past the recursion limit
    ],
)
def test_a_malformed_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(CursorError, match="not valid"):
        decode_cursor(cursor, "abc")


def test_a_cursor_of_another_query_is_refused() -> None:
    with pytest.raises(CursorError, match="other filters or sort"):
        decode_cursor(encode_cursor({"t": "20"}, "one"), "another")


def test_preconditions_compare_strong_tags() -> None:
    assert if_match_allows('"r1"', "r1")
    assert if_match_allows('"r0", "r1"', "r1")
    assert if_match_allows("*", "r1")
    assert not if_match_allows('W/"r1"', "r1")  # If-Match compares strongly
    assert not if_match_allows("r1", "r1")  # an ETag is quoted
    assert if_none_match_hits('W/"r1"', "r1")  # If-None-Match compares weakly
    assert not if_none_match_hits('"r0"', "r1")
    assert etag_of("r1") == '"r1"'


def test_ids_are_time_ordered_and_unique() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(is_id(item_id) for item_id in ids)
    assert ids == sorted(ids)
    assert not is_id("../etc")
    assert not is_id("A" * 24)


def test_timestamps_are_fixed_width_utc() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2026-01-02T01:04:05.000000Z"
    item = Exercise(id=new_id(), created_at=moment, updated_at=moment, name="x")
    dumped = item.model_dump(mode="json")
    assert dumped["created_at"] == "2026-01-02T01:04:05.000000Z"
    assert Exercise.model_validate(dumped).created_at == moment.astimezone(UTC)


def test_the_patch_model_makes_every_field_optional() -> None:
    patch = patch_model(ExerciseFields)
    assert patch.model_validate({}).model_dump(exclude_unset=True) == {}
    assert patch.model_validate({"points": 3}).model_dump(exclude_unset=True) == {"points": 3}
    with pytest.raises(ValidationError):
        patch.model_validate({"name": None})  # null is not a name
    with pytest.raises(ValidationError):
        patch.model_validate({"points": -1})  # the field's own limits still apply
    with pytest.raises(ValidationError):
        patch.model_validate({"colour": "red"})  # unknown fields are refused
    assert "required" not in patch.model_json_schema()


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    tags: list[str] = Field(default_factory=list)


class _Item(_Fields, Resource):
    pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"filters": ("tags",)}, "filter 'tags'"),
        ({"filters": ("nope",)}, "filter 'nope'"),
        ({"sorts": ("tags",)}, "sort 'tags'"),
        ({"filters": ("sort",)}, "clash"),
    ],
)
def test_a_spec_refuses_what_cannot_be_filtered_or_sorted(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        ResourceSpec(name="item", plural="items", fields=_Fields, model=_Item, **options)


def test_a_spec_refuses_server_fields_among_the_fields() -> None:
    class Clashing(BaseModel):
        id: str

    class Model(Clashing, Resource):
        pass

    with pytest.raises(TypeError, match="set by the server"):
        ResourceSpec(name="item", plural="items", fields=Clashing, model=Model)


def test_the_spec_sorts_by_server_fields_too() -> None:
    assert SPEC.sort_fields == ("created_at", "updated_at", "id", "name", "points")
    assert json.dumps(SPEC.patch.model_json_schema())  # documented in OpenAPI


def test_fields_named_like_the_routes_own_parameters_can_be_filtered() -> None:
    from fastapi import FastAPI

    from daprforge.resources import resource_router

    class Fields(BaseModel):
        store: str
        request: str

    class Model(Fields, Resource):
        pass

    spec = ResourceSpec(
        name="ticket", plural="tickets", fields=Fields, model=Model, filters=("store", "request")
    )
    app = FastAPI()
    app.include_router(resource_router(spec, lambda: None))
    listing = app.openapi()["paths"]["/tickets"]["get"]
    assert {"store", "request"} <= {parameter["name"] for parameter in listing["parameters"]}

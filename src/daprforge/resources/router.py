"""The REST routes of a resource, built from its :class:`ResourceSpec`.

``resource_router(spec, get_store)`` gives an APIRouter with::

    POST   /<plural>        201, Location and ETag
    GET    /<plural>        ?limit=&cursor=&sort=[-]field&<filter>=value -> {items, next_cursor}
    GET    /<plural>/{id}   ETag; If-None-Match -> 304
    PUT    /<plural>/{id}   If-Match (required by default: 428 without, 412 when stale)
    PATCH  /<plural>/{id}   the same, changing only the fields sent
    DELETE /<plural>/{id}   204; If-Match honoured when sent

The handlers are written once here and given the service's own models through their
signatures, so the OpenAPI document shows the real request and response schemas.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, create_model

from daprforge.resources.errors import IdempotencyKeyError, InvalidListError, NotFoundError
from daprforge.resources.models import ID_PATTERN
from daprforge.resources.preconditions import etag_of, if_none_match_hits
from daprforge.resources.spec import ResourceSpec
from daprforge.resources.store import ListQuery, ResourceStore, Versioned

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "A bad cursor, sort or filter."},
    404: {"description": "No such item."},
    412: {"description": "If-Match names an older version."},
    413: {"description": "The body is too large."},
    422: {"description": "The body or a parameter is not valid."},
    428: {"description": "If-Match is required."},
}
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


def _header_doc(name: str, description: str) -> dict[str, Any]:
    """An optional header, documented in the route's OpenAPI operation. The handlers read
    these from the request themselves: a declared Header() parameter costs FastAPI tens of
    microseconds per request to extract and validate, on the hottest routes."""
    return {
        "parameters": [
            {
                "name": name,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": description,
            }
        ]
    }


_IF_MATCH = _header_doc("If-Match", "The ETag of the version this change is based on.")
_IDEMPOTENCY_KEY = _header_doc(
    "Idempotency-Key",
    "A unique value (1-255 printable ASCII characters, e.g. a UUID) the client makes for "
    "this create: repeating the request with the same key and body within 24 hours answers "
    "with the item the first request made (header Idempotent-Replayed: true) instead of "
    "creating another, so a create whose answer was lost can be retried safely.",
)
_IF_NONE_MATCH = _header_doc("If-None-Match", "An ETag you hold: 304 if still current.")
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")
"""An Idempotency-Key: 1-255 printable ASCII characters, not starting with a space."""


def _signature(function: Callable[..., Any], **annotations: Any) -> None:
    """Give ``function`` these keyword parameters (name -> annotation), for FastAPI; the
    optional ones (``X | None``) default to None."""
    parameters = []
    for name, annotation in annotations.items():
        inner = typing.get_args(annotation)[0] if _annotated(annotation) else annotation
        optional = type(None) in typing.get_args(inner)
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=annotation,
                default=None if optional else inspect.Parameter.empty,
            )
        )
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]


def _annotated(annotation: Any) -> bool:
    return typing.get_origin(annotation) is Annotated


def _answer(versioned: Versioned[Any], status_code: int = 200, **headers: str) -> Response:
    # Serialized here, once, by pydantic-core: FastAPI would validate the model again
    # against response_model first (which stays declared, for the OpenAPI document).
    return Response(
        versioned.item.model_dump_json(by_alias=True),
        status_code=status_code,
        media_type="application/json",
        headers={"ETag": etag_of(versioned.revision), **headers},
    )


def resource_router(
    spec: ResourceSpec[Any],
    store_dependency: Callable[..., ResourceStore[Any] | Awaitable[ResourceStore[Any]]],
    *,
    max_limit: int = 100,
    default_limit: int = 20,
    tags: list[str | Enum] | None = None,
) -> APIRouter:
    """The routes of ``spec``'s resource under ``/<plural>``; ``store_dependency`` is a
    FastAPI dependency returning the app's ResourceStore (best an ``async def``: FastAPI
    runs a plain ``def`` dependency in its thread pool, a thread hand-off per request)."""
    plural = spec.plural
    prefix = "/" + plural.replace("_", "-")
    router = APIRouter(prefix=prefix, tags=tags or [plural])
    Store = Annotated[ResourceStore[Any], Depends(store_dependency)]
    ItemId = Annotated[
        str, Path(pattern=ID_PATTERN, description="The id the server gave at creation.")
    ]
    page_model = create_model(
        f"{spec.model.__name__}Page",
        items=(list[spec.model], ...),  # type: ignore[name-defined]
        next_cursor=(str | None, None),
        __doc__=f"One page of {plural}; pass next_cursor as cursor for the next.",
    )
    allowed_params = {"limit", "cursor", "sort", *spec.filters}
    sorts = ", ".join(spec.sort_fields)

    async def create(body: BaseModel, store: ResourceStore[Any], request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if key is not None and not _KEY_CHARACTERS.fullmatch(key):
            raise IdempotencyKeyError(
                400, "Idempotency-Key must be 1-255 printable ASCII characters, e.g. a UUID."
            )
        created = await store.create(body, idempotency_key=key)
        headers = {"Location": f"{prefix}/{created.item.id}"}
        if created.replayed:
            headers["Idempotent-Replayed"] = "true"
        return _answer(created, 201, **headers)

    _signature(create, body=Annotated[spec.fields, Body()], store=Store, request=Request)

    async def read(item_id: str, store: ResourceStore[Any], request: Request) -> Response:
        found = await store.get(item_id)
        if found is None:
            raise NotFoundError(f"No {spec.name} with id {item_id!r}.")
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and if_none_match_hits(if_none_match, found.revision):
            return Response(status_code=304, headers={"ETag": etag_of(found.revision)})
        return _answer(found)

    _signature(read, item_id=ItemId, store=Store, request=Request)

    async def replace(
        item_id: str, body: BaseModel, store: ResourceStore[Any], request: Request
    ) -> Response:
        return _answer(await store.replace(item_id, body, request.headers.get("if-match")))

    _signature(
        replace, item_id=ItemId, body=Annotated[spec.fields, Body()], store=Store, request=Request
    )

    async def patch(
        item_id: str, body: BaseModel, store: ResourceStore[Any], request: Request
    ) -> Response:
        changes = body.model_dump(exclude_unset=True)
        return _answer(await store.patch(item_id, changes, request.headers.get("if-match")))

    _signature(
        patch, item_id=ItemId, body=Annotated[spec.patch, Body()], store=Store, request=Request
    )

    async def delete(item_id: str, store: ResourceStore[Any], request: Request) -> Response:
        await store.delete(item_id, request.headers.get("if-match"))
        return Response(status_code=204)

    _signature(delete, item_id=ItemId, store=Store, request=Request)

    # _request and _store: a filter is a model field, which cannot start with "_".
    async def list_items(
        _request: Request,
        _store: ResourceStore[Any],
        limit: int,
        cursor: str | None,
        sort: str | None,
        **filters: Any,
    ) -> Any:
        unknown = sorted(set(_request.query_params) - allowed_params)
        if unknown:
            names = ", ".join(spec.filters) or "none"
            raise InvalidListError(
                f"Unknown query parameter {', '.join(unknown)}: use limit, cursor, sort, "
                f"or a filter ({names})."
            )
        field = (sort or "created_at").removeprefix("-")
        query = ListQuery(
            filters={name: value for name, value in filters.items() if value is not None},
            sort=field,
            descending=(sort or "").startswith("-"),
            limit=limit,
            cursor=cursor,
        )
        page = await _store.list(query)
        body = page_model(items=page.items, next_cursor=page.next_cursor)
        return Response(body.model_dump_json(by_alias=True), media_type="application/json")

    _signature(
        list_items,
        _request=Request,
        _store=Store,
        limit=Annotated[
            int,
            Query(ge=1, le=max_limit, description="Items per page."),
        ],
        cursor=Annotated[
            str | None,
            Query(max_length=2048, description="next_cursor of the previous page."),
        ],
        sort=Annotated[
            str | None,
            Query(max_length=100, description=f"One of {sorts}; prefix - for descending."),
        ],
        **{
            name: Annotated[
                spec.filter_annotation(name) | None,
                Query(description=f"Only items whose {name} equals this."),
            ]
            for name in spec.filters
        },
    )
    signature = list_items.__signature__  # type: ignore[attr-defined]
    list_items.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(default=default_limit) if p.name == "limit" else p
            for p in signature.parameters.values()
        ]
    )

    item_responses = {code: {**info, **_PROBLEM} for code, info in _ERRORS.items() if code != 400}
    router.add_api_route(
        "",
        create,
        methods=["POST"],
        status_code=status.HTTP_201_CREATED,
        response_model=spec.model,
        name=f"create_{spec.name}",
        summary=f"Create a {spec.name}",
        responses={
            400: {"description": "A malformed Idempotency-Key.", **_PROBLEM},
            409: {"description": "The Idempotency-Key's item was deleted since.", **_PROBLEM},
            **{code: item_responses[code] for code in (413, 422)},
        },
        openapi_extra=_IDEMPOTENCY_KEY,
    )
    router.add_api_route(
        "",
        list_items,
        methods=["GET"],
        response_model=page_model,
        name=f"list_{plural}",
        summary=f"List {plural}",
        responses={400: {**_ERRORS[400], **_PROBLEM}, 422: item_responses[422]},
    )
    router.add_api_route(
        "/{item_id}",
        read,
        methods=["GET"],
        response_model=spec.model,
        name=f"get_{spec.name}",
        summary=f"Read a {spec.name}",
        responses={304: {"description": "Not modified."}, 404: item_responses[404]},
        openapi_extra=_IF_NONE_MATCH,
    )
    for method, endpoint, verb in (("PUT", replace, "Replace"), ("PATCH", patch, "Change")):
        router.add_api_route(
            "/{item_id}",
            endpoint,
            methods=[method],
            response_model=spec.model,
            name=f"{method.lower()}_{spec.name}",
            summary=f"{verb} a {spec.name}",
            responses={c: item_responses[c] for c in (404, 412, 413, 422, 428)},
            openapi_extra=_IF_MATCH,
        )
    router.add_api_route(
        "/{item_id}",
        delete,
        methods=["DELETE"],
        status_code=status.HTTP_204_NO_CONTENT,
        response_class=Response,
        name=f"delete_{spec.name}",
        summary=f"Delete a {spec.name}",
        responses={c: item_responses[c] for c in (404, 412, 422)},
        openapi_extra=_IF_MATCH,
    )
    return router

"""Errors as RFC 9457 problem documents (``application/problem+json``).

Clients get a status, a title and, for errors they caused, a detail they can act on;
never a stack trace, an exception message or what a dependency said. Those go to the log,
under the request id that the problem body also carries, so a report can be matched to
its log lines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from daprforge.client.errors import ConcurrencyError, DaprError, SidecarUnavailableError
from daprforge.service.context import current_request_id

log = logging.getLogger("daprforge.service")

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    detail: Any = None,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem response; ``extra`` members are added to the body as they are."""
    body: dict[str, Any] = {"type": "about:blank", "title": _title(status), "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra)
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # The detail of an HTTPException is written by the service for its clients.
    detail = None if exc.detail == _title(exc.status_code) else exc.detail
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return problem(exc.status_code, detail, instance=request.url.path, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Where and why, but not the input itself: it may be large or sensitive.
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
        for error in exc.errors()
    ]
    return problem(422, "The request is not valid.", instance=request.url.path, errors=errors)


async def _dapr_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DaprError)
    log.warning(
        "Dapr call failed: %s",
        exc,
        extra={"dapr_status": exc.status, "dapr_error_code": exc.error_code},
    )
    if isinstance(exc, ConcurrencyError):
        return problem(
            409, "The resource was changed concurrently; retry.", instance=request.url.path
        )
    if isinstance(exc, SidecarUnavailableError):
        return problem(
            503,
            "A dependency is unavailable; try again later.",
            instance=request.url.path,
            headers={"retry-after": "1"},
        )
    return problem(502, "A dependency failed.", instance=request.url.path)


def unexpected_error(request_path: str) -> JSONResponse:
    """The answer to an exception nobody handled (logged by the caller)."""
    return problem(500, "The service could not complete the request.", instance=request_path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DaprError, _dapr_error)

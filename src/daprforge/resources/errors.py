"""What can go wrong with a request on a resource. Each is an HTTPException, so the
service kit answers it as a problem document with its status and detail."""

from __future__ import annotations

from starlette.exceptions import HTTPException


class ResourceError(HTTPException):
    status = 400

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(self.status, detail, headers)


class NotFoundError(ResourceError):
    status = 404


class IdempotencyKeyError(ResourceError):
    """An ``Idempotency-Key`` that is malformed (400), or already used for another body
    (422) or for an item since deleted (409)."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(detail)


class PreconditionFailedError(ResourceError):
    """``If-Match`` names another version than the current one."""

    status = 412


class PreconditionRequiredError(ResourceError):
    """A write without ``If-Match`` where one is required (RFC 6585)."""

    status = 428


class InvalidListError(ResourceError):
    """A bad cursor, an unknown sort or filter field."""

    status = 400

"""A limit on request body size, enforced before and while the body is read.

A declared ``Content-Length`` over the limit is refused at once, without reading a byte;
a chunked body is counted as it arrives and refused the moment it passes the limit. Either
way the client gets a 413 problem.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daprforge.service.errors import problem


class BodyTooLargeError(HTTPException):
    # An HTTPException, so FastAPI's body parsing lets it through to the error handlers
    # (it turns any other exception raised while reading the body into a 400).
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_size
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem(413, f"The request body is larger than {limit} bytes.")
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        await self.app(scope, counting_receive, send)

"""A response with prebuilt headers, for the hot paths (state GET, 204s).

Starlette's ``Response`` normalises headers on every construction; at tens of thousands of
requests a second that is a measurable share of a state GET, so the hot paths build the
ASGI header list directly.
"""

from __future__ import annotations

from starlette.responses import Response

JSON = (b"content-type", b"application/json")


class RawResponse(Response):
    def __init__(
        self,
        body: bytes = b"",
        status_code: int = 200,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        raw = [] if status_code == 204 else [(b"content-length", str(len(body)).encode())]
        self.raw_headers = raw + headers if headers else raw


def no_content() -> RawResponse:
    return RawResponse(status_code=204)

"""What a sidecar handler receives: the HTTP request plus Dapr's conventions around it."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request

if TYPE_CHECKING:
    from daprforge.sidecar.runtime import Runtime

METADATA_PREFIX = "metadata."


class BodyTooLargeError(Exception):
    """The body is larger than ``--max-body-size``; the message is daprd's."""

    def __init__(self) -> None:
        super().__init__("stream too large")


class DaprRequest:
    def __init__(
        self,
        request: Request,
        params: dict[str, str],
        runtime: Runtime,
        max_body_size: int,
    ) -> None:
        self.http = request
        self.params = params
        self.runtime = runtime
        self._max_body_size = max_body_size
        self._query: dict[str, str] | None = None

    @property
    def method(self) -> str:
        return self.http.method

    def header(self, name: str) -> str | None:
        return self.http.headers.get(name)

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, first value wins (Go's ``url.Values.Get``)."""
        if self._query is None:
            query: dict[str, str] = {}
            raw = self.http.scope["query_string"]
            if raw:
                for name, value in parse_qsl(raw.decode("latin-1"), True):
                    query.setdefault(name, value)
            self._query = query
        return self._query

    def metadata(self) -> dict[str, str]:
        """``?metadata.x=y`` parameters with the prefix removed (names are case-sensitive)."""
        size = len(METADATA_PREFIX)
        return {k[size:]: v for k, v in self.query.items() if k.startswith(METADATA_PREFIX)}

    async def body(self) -> bytes:
        """The whole body, refusing to buffer more than the configured limit."""
        declared = self.http.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_size:
            raise BodyTooLargeError
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.http.stream():
            size += len(chunk)
            if size > self._max_body_size:
                raise BodyTooLargeError
            chunks.append(chunk)
        return b"".join(chunks)

"""Service invocation through the sidecar: ``client.invoke(app_id, method, ...)``.

The target app's status, headers and body come back as they are, error statuses included:
they are the app's answer, not a Dapr failure. Only when no app answered at all (it could
not be resolved or reached) does daprd answer ``ERR_DIRECT_INVOKE`` itself, and that is
raised as a DaprError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload
from urllib.parse import quote

from multidict import CIMultiDictProxy

from daprforge.client.codec import decode_json, encode_json
from daprforge.client.errors import InvocationError, error_from_response
from daprforge.client.transport import Reply, Transport, segment

T = TypeVar("T")

# Repeating these is harmless by HTTP's definition, so they may be retried in flight.
IDEMPOTENT_VERBS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class InvokeResponse:
    status_code: int
    headers: CIMultiDictProxy[str]
    """Case-insensitive: ``headers["content-type"]``, ``headers.getall("set-cookie")``."""
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    @overload
    def json(self, type: type[T]) -> T: ...
    @overload
    def json(self, type: None = None) -> Any: ...
    def json(self, type: type[T] | None = None) -> T | Any:
        """The body parsed as JSON, validated as ``type`` when given."""
        return decode_json(self.content, type)

    def raise_for_status(self) -> InvokeResponse:
        """Raise InvocationError unless the app answered 2xx; returns self otherwise."""
        if not self.is_success:
            raise InvocationError(
                self.status_code, "", self.text[:500] or f"HTTP {self.status_code}"
            )
        return self


def _is_sidecar_failure(response: Reply) -> bool:
    """daprd's own answer when it could not reach an app (not the app's answer)."""
    if response.status_code not in (403, 404, 500):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("errorCode") == "ERR_DIRECT_INVOKE"


async def invoke(
    transport: Transport,
    app_id: str,
    method: str,
    *,
    verb: str | None,
    json: Any,
    content: bytes | str | None,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
) -> InvokeResponse:
    all_headers = dict(headers or {})
    body: bytes | None = None
    if json is not None:
        body = encode_json(json)
        all_headers.setdefault("content-type", "application/json")
    elif content is not None:
        body = content.encode() if isinstance(content, str) else content
    http_verb = (verb or ("POST" if body is not None else "GET")).upper()
    response = await transport.request(
        "invoke",
        http_verb,
        f"/v1.0/invoke/{segment(app_id)}/method/{quote(method.lstrip('/'), safe='/')}",
        idempotent=http_verb in IDEMPOTENT_VERBS,
        # A 503 here is the target app's own answer; the caller decides what it means.
        retry_on_503=False,
        content=body,
        params=params,
        headers=all_headers,
    )
    if _is_sidecar_failure(response):
        raise error_from_response(response)
    return InvokeResponse(response.status_code, response.headers, response.content)

"""Service invocation: ``/v1.0/invoke/{app-id}/method/...``, the ``dapr-app-id`` header form,
and the internal listener through which other sidecars reach this sidecar's app.

Caller sidecar → (name resolution) → callee sidecar's internal port → callee app, as in
daprd, where the middle hop is gRPC and here is HTTP. Status, headers and body of the app's
answer pass through unchanged, streamed; failures before any app answer are daprd's
500 ``ERR_DIRECT_INVOKE``.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from daprforge.sidecar import errors
from daprforge.sidecar.errors import DaprError
from daprforge.sidecar.outbound import HOP_BY_HOP, ClientError, relay
from daprforge.sidecar.pubsub.envelope import child_traceparent
from daprforge.sidecar.request import BodyTooLargeError, DaprRequest
from daprforge.sidecar.routing import clean_path
from daprforge.sidecar.runtime import Runtime

log = logging.getLogger("daprforge.sidecar.invoke")

_STRIPPED = HOP_BY_HOP | {
    "dapr-app-id",
    "dapr-api-token",
    "dapr-caller-app-id",
    "dapr-callee-app-id",
    "dapr-caller-namespace",
}
# Set on an internal-hop answer when the callee sidecar could not reach its app.
FAILURE_HEADER = "x-daprforge-invoke-error"


def _failed(target: str, detail: str) -> DaprError:
    return DaprError(500, "ERR_DIRECT_INVOKE", f"failed to invoke, id: {target}, err: {detail}")


def forwarded_headers(
    headers: list[tuple[str, str]], caller: str, callee: str
) -> list[tuple[str, str]]:
    """What reaches the callee: the caller's headers less hop-by-hop and Dapr's own, plus
    the caller/callee ids and a child trace context."""
    incoming = {k.lower(): v for k, v in headers}
    kept = [
        (k, v)
        for k, v in headers
        if k.lower() not in _STRIPPED and k.lower() not in ("traceparent", "tracestate")
    ]
    kept.append(("traceparent", child_traceparent(incoming.get("traceparent"))))
    if incoming.get("tracestate"):
        kept.append(("tracestate", incoming["tracestate"]))
    kept += [("dapr-caller-app-id", caller), ("dapr-callee-app-id", callee)]
    return kept


def _target_and_method(call: DaprRequest) -> tuple[str, str]:
    if "id" in call.params:
        # The router decoded the method path; it is escaped again on the way out, as Go
        # does when it builds the request URL for the app.
        return call.params["id"], quote(call.params.get("*", ""), safe="/!$&'()*+,;=:@~")
    target = call.header("dapr-app-id")
    if not target:
        raise errors.direct_invoke_no_app_id()
    raw_path: bytes | None = call.http.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else call.http.url.path
    return target, clean_path(path.split("?", 1)[0]).lstrip("/")


async def invoke(call: DaprRequest) -> Response:
    """The invocation API, and the fallback for every route nobody else takes."""
    target, method = _target_and_method(call)
    runtime = call.runtime
    app_id, _, namespace = target.partition(".")
    if "." in namespace:
        raise _failed(target, "invalid app id: only one namespace separator is allowed")
    try:
        body = await call.body()
    except BodyTooLargeError as exc:
        raise errors.malformed_request(str(exc)) from None
    query = call.http.scope["query_string"].decode("latin-1")
    headers = forwarded_headers(call.http.headers.items(), runtime.app_id, app_id)

    if target.startswith(("http://", "https://")):
        url = f"{target.rstrip('/')}/{method}"
    elif app_id == runtime.app_id:
        if runtime.app_channel is None:
            raise _failed(target, "app channel is not initialized")
        url = f"{runtime.app_channel.base_url}/{method}"
        headers += list(runtime.app_channel.headers().items())
    else:
        address = await runtime.resolver.resolve(app_id) if runtime.resolver else None
        if address is None:
            raise _failed(target, f"couldn't find service: {app_id}")
        url = f"http://{address}/{method}"
    if query:
        url = f"{url}?{query}"
    try:
        response = await relay(runtime.session, call.method, url, headers, body)
    except (ClientError, TimeoutError) as exc:
        raise _failed(target, f"error invoking app channel: {exc}") from None
    failure = response.headers.get(FAILURE_HEADER)
    if failure is not None:
        if response.background is not None:
            await response.background()
        raise _failed(target, failure)
    return response


class InternalApp:
    """The internal listener: requests from other sidecars, forwarded to this app."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = await self.forward(Request(scope, receive))
        await response(scope, receive, send)

    async def forward(self, request: Request) -> Response:
        channel = self.runtime.app_channel
        if channel is None or not self.runtime.app_listening:
            return _internal_failure("app channel is not initialized")
        raw_path: bytes | None = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else request.url.path
        query = request.scope["query_string"].decode("latin-1")
        url = f"{channel.base_url}{path}" + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers += list(channel.headers().items())
        try:
            return await relay(channel.session, request.method, url, headers, await request.body())
        except (ClientError, TimeoutError) as exc:
            detail = f"rpc error: code = Internal desc = error invoking app channel: {exc}"
            return _internal_failure(detail)


def _internal_failure(detail: str) -> Response:
    safe = detail.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")
    return Response(status_code=502, headers={FAILURE_HEADER: safe})

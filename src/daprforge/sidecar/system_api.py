"""Health, metadata, shutdown and the unknown-route fallback, as daprd serves them."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from daprforge.sidecar import errors
from daprforge.sidecar.errors import DaprError
from daprforge.sidecar.invoke import invoke
from daprforge.sidecar.request import BodyTooLargeError, DaprRequest
from daprforge.sidecar.responses import no_content
from daprforge.sidecar.routing import Route, route
from daprforge.sidecar.runtime import RUNTIME_VERSION

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]


async def healthz(call: DaprRequest) -> Response:
    runtime = call.runtime
    app_id = call.query.get("appid")
    if app_id is not None and app_id != runtime.app_id:
        raise DaprError(500, "ERR_HEALTH_APPID_NOT_MATCH", "dapr app-id does not match")
    if not runtime.ready:
        pending = [
            name
            for name, ready in (("outbound", runtime.outbound_ready), ("app", runtime.app_ready))
            if not ready
        ]
        raise DaprError(500, "ERR_HEALTH_NOT_READY", f"dapr is not ready: [{' '.join(pending)}]")
    return no_content()


async def healthz_outbound(call: DaprRequest) -> Response:
    if not call.runtime.outbound_ready:
        raise DaprError(500, "ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready")
    return no_content()


def metadata_document(call: DaprRequest) -> dict[str, Any]:
    runtime = call.runtime
    components = []
    for loaded in runtime.loaded:
        entry: dict[str, Any] = {
            "name": loaded.spec.name,
            "type": loaded.spec.type,
            "version": loaded.version,
        }
        if loaded.capabilities:
            entry["capabilities"] = loaded.capabilities
        components.append(entry)
    connection: dict[str, Any] = {"protocol": "http", "channelAddress": runtime.app_address}
    if runtime.app_port:
        connection = {"port": runtime.app_port, **connection}
    document: dict[str, Any] = {
        "id": runtime.app_id,
        "runtimeVersion": RUNTIME_VERSION,
        "components": components,
        "extended": {"daprRuntimeVersion": RUNTIME_VERSION, **runtime.extended},
        "subscriptions": [subscription.describe() for subscription in runtime.subscriptions],
        "appConnectionProperties": connection,
        "actorRuntime": {"runtimeStatus": "DISABLED", "hostReady": False, "placement": ""},
    }
    return {k: v for k, v in document.items() if v or k == "actorRuntime"}


async def get_metadata(call: DaprRequest) -> Response:
    body = json.dumps(metadata_document(call), separators=(",", ":"), ensure_ascii=False)
    return Response(body.encode(), media_type="application/json")


async def put_metadata(call: DaprRequest) -> Response:
    try:
        value = await call.body()
    except BodyTooLargeError as exc:
        raise errors.malformed_request(str(exc)) from None
    call.runtime.extended[call.params["key"]] = value.decode("utf-8", errors="replace")
    return no_content()


async def shutdown(call: DaprRequest) -> Response:
    call.runtime.shutdown_requested.set()
    return no_content()


ROUTES: list[Route] = [
    route(["GET"], "v1.0/healthz", healthz),
    route(["GET"], "v1.0/healthz/outbound", healthz_outbound),
    route(["GET"], "v1.0/metadata", get_metadata),
    route(["PUT"], "v1.0/metadata/{key}", put_metadata),
    route(["POST"], "v1.0/shutdown", shutdown),
    route(ALL_METHODS, "v1.0/invoke/{id}/method/*", invoke),
]

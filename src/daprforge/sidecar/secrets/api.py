"""The secrets API (``/v1.0/secrets/...``), with daprd's status codes.

Note daprd's quirks kept on purpose: an unknown store is a 401, and a missing secret in the
file store is a 500, not a 404.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from daprforge.sidecar.errors import DaprError
from daprforge.sidecar.request import DaprRequest
from daprforge.sidecar.routing import Route, route
from daprforge.sidecar.secrets.base import SecretStore


def _store(call: DaprRequest) -> tuple[str, SecretStore]:
    runtime = call.runtime
    if not runtime.secret_stores:
        raise DaprError(500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")
    name = call.params["secretStoreName"]
    store = runtime.secret_stores.get(name)
    if store is None:
        raise DaprError(
            401, "ERR_SECRET_STORE_NOT_FOUND", f"failed finding secret store with key {name}"
        )
    return name, store


def allowed(scopes: dict[str, Any], store: str, secret: str) -> bool:
    """Configuration ``spec.secrets.scopes``: deny beats allow beats the default."""
    scope = scopes.get(store)
    if scope is None:
        return True
    if secret in scope.get("deniedSecrets", ()):
        return False
    allowed_secrets = scope.get("allowedSecrets") or ()
    if allowed_secrets:
        return secret in allowed_secrets
    return str(scope.get("defaultAccess", "allow")).lower() != "deny"


def _json(value: object) -> Response:
    return Response(
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
        media_type="application/json",
    )


async def get_secret(call: DaprRequest) -> Response:
    name, store = _store(call)
    key = call.params["key"]
    if not allowed(call.runtime.secret_scopes, name, key):
        raise DaprError(
            403,
            "ERR_PERMISSION_DENIED",
            f'access denied by policy to get "{key}" from "{name}"',
        )
    try:
        values = await store.get(key, call.metadata())
    except Exception as exc:
        raise DaprError(
            500,
            "ERR_SECRET_GET",
            f"failed getting secret with key {key} from secret store {name}: {exc}",
        ) from None
    if not values:
        return Response(status_code=204)
    return _json(values)


async def bulk_get_secrets(call: DaprRequest) -> Response:
    name, store = _store(call)
    try:
        secrets = await store.bulk_get(call.metadata())
    except Exception as exc:
        raise DaprError(
            500, "ERR_SECRET_GET", f"failed getting secrets from secret store {name}: {exc}"
        ) from None
    scopes = call.runtime.secret_scopes
    return _json({k: v for k, v in secrets.items() if allowed(scopes, name, k)})


ROUTES: list[Route] = [
    route(["GET"], "v1.0/secrets/{secretStoreName}/bulk", bulk_get_secrets),
    route(["GET"], "v1.0/secrets/{secretStoreName}/{key}", get_secret),
]

"""Dapr's two error body shapes, and the errors this sidecar raises in them.

daprd answers errors either with the legacy ``{"errorCode", "message"}`` body or with a
"kit" error that adds google.rpc ``details`` (ErrorInfo, ResourceInfo, field violations,
help links). Which shape, status and code each failure uses is fixed by daprd; the
constructors below name them so handlers never spell a status code themselves.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

_TYPE_PREFIX = "type.googleapis.com/google.rpc."
_DOMAIN = "dapr.io"


class DaprError(Exception):
    """An error answer: raise it from a handler and the app renders it."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errorCode": self.error_code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def response(self) -> Response:
        return Response(
            json.dumps(self.body(), separators=(",", ":")).encode(),
            status_code=self.status,
            media_type="application/json",
        )


def kit_error(
    status: int,
    error_code: str,
    message: str,
    *,
    reason: str,
    metadata: dict[str, str] | None = None,
    resource: tuple[str, str] | None = None,
    field_violation: tuple[str, str] | None = None,
    help_link: tuple[str, str] | None = None,
) -> DaprError:
    """A "richer" error as dapr/kit renders it over HTTP."""
    details: list[dict[str, Any]] = []
    if field_violation is not None:
        field, description = field_violation
        details.append(
            {
                "@type": _TYPE_PREFIX + "BadRequest",
                "field_violations": [{"field": field, "description": description}],
            }
        )
    if help_link is not None:
        url, description = help_link
        details.append(
            {"@type": _TYPE_PREFIX + "Help", "links": [{"description": description, "url": url}]}
        )
    if resource is not None:
        resource_type, resource_name = resource
        details.append(
            {
                "@type": _TYPE_PREFIX + "ResourceInfo",
                "resource_type": resource_type,
                "resource_name": resource_name,
                "owner": "",
                "description": message,
            }
        )
    details.append(
        {
            "@type": _TYPE_PREFIX + "ErrorInfo",
            "reason": reason,
            "domain": _DOMAIN,
            "metadata": metadata,
        }
    )
    return DaprError(status, error_code, message, details=details)


def malformed_request(message: str) -> DaprError:
    return DaprError(400, "ERR_MALFORMED_REQUEST", message)


# --- state stores (dapr pkg/api/errors/state.go) ---------------------------------------


def state_store_not_found(store: str, app_id: str) -> DaprError:
    return kit_error(
        400,
        "ERR_STATE_STORE_NOT_FOUND",
        f"state store {store} is not found",
        reason="DAPR_STATE_NOT_FOUND",
        metadata={"appID": app_id} if app_id else None,
    )


def state_store_not_configured(store: str, app_id: str) -> DaprError:
    return kit_error(
        500,
        "ERR_STATE_STORE_NOT_CONFIGURED",
        f"state store {store} is not configured",
        reason="DAPR_STATE_NOT_CONFIGURED",
        metadata={"appID": app_id} if app_id else None,
    )


def state_illegal_key(store: str, key: str, message: str) -> DaprError:
    return kit_error(
        400,
        "ERR_MALFORMED_REQUEST",
        message,
        reason="DAPR_STATE_ILLEGAL_KEY",
        resource=("state", store),
        field_violation=(key, message),
    )


def state_transactions_not_supported(store: str) -> DaprError:
    return kit_error(
        500,
        "ERR_STATE_STORE_NOT_SUPPORTED",
        f"state store {store} doesn't support transactions",
        reason="DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED",
        resource=("state", store),
        help_link=(
            "https://docs.dapr.io/reference/components-reference/supported-state-stores/",
            "Check the list of state stores and the features they support",
        ),
    )


def state_query_not_supported(store: str) -> DaprError:
    return kit_error(
        500,
        "ERR_STATE_STORE_NOT_SUPPORTED",
        "state store does not support querying",
        reason="DAPR_STATE_QUERYING_NOT_SUPPORTED",
        resource=("state", store),
    )


def state_query_failed(store: str, detail: str) -> DaprError:
    return kit_error(
        500,
        "ERR_STATE_QUERY",
        f"state store {store} query failed: {detail}",
        reason="DAPR_STATE_QUERY_FAILED",
        resource=("state", store),
    )


# --- invocation fallback ------------------------------------------------------------------


def direct_invoke_no_app_id() -> DaprError:
    return DaprError(
        404,
        "ERR_DIRECT_INVOKE",
        "failed getting app id either from the URL path or the header dapr-app-id",
    )


# --- pub/sub (dapr pkg/api/errors/pubsub.go) ---------------------------------------------


def pubsub_error(
    status: int,
    error_code: str,
    message: str,
    reason: str,
    pubsub: str,
    metadata: dict[str, str] | None,
    *,
    resource: bool = True,
) -> DaprError:
    return kit_error(
        status,
        error_code,
        message,
        reason=f"DAPR_PUBSUB_{reason}",
        metadata=metadata,
        resource=("pubsub", pubsub) if resource else None,
    )

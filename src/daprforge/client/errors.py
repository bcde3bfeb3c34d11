"""Typed errors for failed sidecar calls.

daprd answers errors with ``{"errorCode": "ERR_...", "message": "..."}``, sometimes with
google.rpc ``details`` (see the Dapr HTTP API reference, §0.2); a few answers are plain text
(``invalid api token``). Every one becomes a :class:`DaprError` carrying the HTTP status,
the error code, the message and the details, or one of its subclasses where a caller is
likely to handle the case on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daprforge.client.transport import Reply

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

# Component lookups that failed: a misconfiguration, not a missing key.
_COMPONENT_NOT_FOUND = frozenset(
    {
        "ERR_STATE_STORE_NOT_FOUND",
        "ERR_STATE_STORE_NOT_CONFIGURED",
        "ERR_PUBSUB_NOT_FOUND",
        "ERR_PUBSUB_NOT_CONFIGURED",
        "ERR_SECRET_STORE_NOT_FOUND",
        "ERR_SECRET_STORES_NOT_CONFIGURED",
    }
)


class DaprError(Exception):
    """The sidecar answered with an error (or could not be reached, see subclasses)."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        details: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.message = message
        self.details = list(details)
        super().__init__(f"{error_code or f'HTTP {status}'}: {message}")

    @property
    def reason(self) -> str | None:
        """The ``ErrorInfo`` reason of a richer error (e.g. ``DAPR_STATE_NOT_FOUND``)."""
        for detail in self.details:
            if detail.get("@type") == ERROR_INFO:
                reason = detail.get("reason")
                return reason if isinstance(reason, str) else None
        return None


class ConcurrencyError(DaprError):
    """An ETag mismatch: the item changed (or appeared) since it was read."""


class ComponentNotFoundError(DaprError):
    """The state store, pub/sub or secret store named in the call is not loaded."""


class SidecarUnavailableError(DaprError):
    """No answer from the sidecar: it refused the connection, dropped it or timed out.
    ``status`` is 503 (504 for a timeout); the transport error is the ``__cause__``."""


class InvocationError(DaprError):
    """The invoked app answered with an error status (``InvokeResponse.raise_for_status``)."""


class BulkPublishError(DaprError):
    """Some entries of a bulk publish failed; ``failed_entries`` maps entry id -> error."""

    def __init__(self, status: int, message: str, failed_entries: dict[str, str]) -> None:
        super().__init__(status, "ERR_PUBSUB_PUBLISH_MESSAGE", message)
        self.failed_entries = failed_entries


def _is_concurrency(status: int, code: str, message: str) -> bool:
    if status == 409:  # save or delete with a stale etag (or first-write on a live key)
        return True
    # daprd reports an etag mismatch inside a transaction as a 500; PostgreSQL reports a
    # first-write conflict, alone or in a transaction, as "no item was updated" (Dapr HTTP
    # API reference §1.8, §1.10).
    if code == "ERR_STATE_TRANSACTION" and "etag mismatch" in message:
        return True
    return code in {"ERR_STATE_SAVE", "ERR_STATE_TRANSACTION"} and "no item was updated" in message


def error_from_response(response: Reply) -> DaprError:
    """The typed error for a non-success answer from the sidecar."""
    status = response.status_code
    code, message, details = "", response.text.strip(), []
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("errorCode") or "")
        message = str(body.get("message") or message)
        raw_details = body.get("details")
        if isinstance(raw_details, list):
            details = [d for d in raw_details if isinstance(d, dict)]
    if not message:
        message = response.reason_phrase or f"HTTP {status}"
    if _is_concurrency(status, code, message):
        return ConcurrencyError(status, code, message, details)
    if code in _COMPONENT_NOT_FOUND:
        return ComponentNotFoundError(status, code, message, details)
    return DaprError(status, code, message, details)

"""The state API (``/v1.0/state/...`` and the alpha query route), as daprd answers it.

Handlers validate and translate; stores only store. Status codes, error codes and messages
follow daprd's ``pkg/api/http/http.go``: ETag mismatches are 409 on save and delete but
500 inside a transaction, a missing key is a 204, and bad JSON is a 400 before any store
is touched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from daprforge.sidecar import errors, gojson
from daprforge.sidecar.errors import DaprError
from daprforge.sidecar.request import BodyTooLargeError, DaprRequest
from daprforge.sidecar.responses import JSON, RawResponse, no_content
from daprforge.sidecar.routing import Route, route
from daprforge.sidecar.runtime import StateStoreBinding
from daprforge.sidecar.state.base import (
    FEATURE_QUERY_API,
    FEATURE_TRANSACTIONAL,
    BulkGetResult,
    DeleteRequest,
    ETagInvalidError,
    ETagMismatchError,
    Operation,
    Query,
    SetRequest,
    StateItem,
    StateStoreError,
)
from daprforge.sidecar.state.keys import IllegalKeyError, check_key, original_key

_CONCURRENCY = ("first-write", "last-write")
_CONSISTENCY = ("strong", "eventual")


class _StoreError(Exception):
    """A request option the store rejects: daprd reports these as store errors (500)."""


# --- request decoding -----------------------------------------------------------------


def _store(call: DaprRequest) -> tuple[str, StateStoreBinding]:
    name = call.params["storeName"]
    runtime = call.runtime
    if not runtime.state_stores:
        raise errors.state_store_not_configured(name, runtime.app_id)
    binding = runtime.state_stores.get(name)
    if binding is None:
        raise errors.state_store_not_found(name, runtime.app_id)
    return name, binding


async def _json_body(call: DaprRequest) -> Any:
    try:
        return gojson.decode(await call.body())
    except BodyTooLargeError as exc:
        raise errors.malformed_request(str(exc)) from None
    except gojson.DecodeError as exc:
        raise errors.malformed_request(str(exc)) from None


def _unmarshal_error(value: Any, go_type: str) -> DaprError:
    return errors.malformed_request(
        f"json: cannot unmarshal {gojson.go_type_name(value)} into Go value of type {go_type}"
    )


def _fields(item: Any, go_type: str) -> dict[str, Any]:
    """An object's fields by lower-cased name: Go matches JSON field names case-insensitively."""
    if not isinstance(item, dict):
        raise _unmarshal_error(item, go_type)
    return {str(name).lower(): value for name, value in item.items()}


def _string(value: Any, go_type: str) -> str:
    if not isinstance(value, str):
        raise _unmarshal_error(value, go_type)
    return value


def _string_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _unmarshal_error(value, "map[string]string")
    return dict(value)


def _prefixed(store: str, binding: StateStoreBinding, key: str) -> str:
    try:
        check_key(key)
    except IllegalKeyError as exc:
        raise errors.state_illegal_key(store, key, str(exc)) from None
    return binding.prefix + key


def _ttl(metadata: dict[str, str]) -> int | None:
    raw = metadata.get("ttlInSeconds")
    if raw is None:
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise _StoreError(f"incorrect value for metadata 'ttlInSeconds': {raw!r}") from None
    if ttl < -1 or ttl > 2**31 - 1:
        raise _StoreError(f"incorrect value for metadata 'ttlInSeconds': {ttl} is out of range")
    return ttl if ttl > 0 else None


def _options(fields: dict[str, Any]) -> bool:
    """Validate ``options`` and say whether the request asks for first-write."""
    options = _fields(fields.get("options") or {}, "state.SetStateOption")
    concurrency = _string(options.get("concurrency") or "", "string")
    consistency = _string(options.get("consistency") or "", "string")
    if concurrency and concurrency not in _CONCURRENCY:
        raise _StoreError(f"invalid concurrency value: {concurrency!r}")
    if consistency and consistency not in _CONSISTENCY:
        raise _StoreError(f"invalid consistency value: {consistency!r}")
    return concurrency == "first-write"


def _etag(fields: dict[str, Any]) -> str | None:
    etag = fields.get("etag")
    if etag is None:
        return None
    return _string(etag, "string") or None


def _set_request(
    store: str, binding: StateStoreBinding, fields: dict[str, Any], url_metadata: dict[str, str]
) -> SetRequest:
    metadata = {**_string_map(fields.get("metadata")), **url_metadata}
    return SetRequest(
        key=_prefixed(store, binding, fields.get("key") or ""),
        value=gojson.encode(fields.get("value")),
        etag=_etag(fields),
        first_write=_options(fields),
        ttl_seconds=_ttl(metadata),
    )


def _delete_request(
    store: str, binding: StateStoreBinding, fields: dict[str, Any]
) -> DeleteRequest:
    return DeleteRequest(
        key=_prefixed(store, binding, fields.get("key") or ""),
        etag=_etag(fields),
        first_write=_options(fields),
    )


def _store_failure(exc: Exception) -> tuple[int, str]:
    """daprd's ``stateErrorResponse``: status and message for a store error."""
    if isinstance(exc, ETagMismatchError):
        return 409, f"possible etag mismatch. error from state store: {exc}"
    if isinstance(exc, ETagInvalidError):
        return 400, f"invalid etag value: {exc}"
    return 500, str(exc)


# --- responses ------------------------------------------------------------------------


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _item_metadata(item: StateItem) -> dict[str, str]:
    return {"ttlExpireTime": _rfc3339(item.expires_at)} if item.expires_at else {}


def _raw_json(value: bytes) -> str:
    """Stored bytes as an embedded JSON value (binary values saved over gRPC as a string)."""
    text = value.decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(text)
    return text


def _json_response(body: str, status: int = 200) -> Response:
    return Response(body.encode(), status_code=status, media_type="application/json")


# --- handlers -------------------------------------------------------------------------


async def get_state(call: DaprRequest) -> Response:
    store, binding = _store(call)
    key = call.params["key"]
    try:
        item = await binding.store.get(_prefixed(store, binding, key))
    except DaprError:
        raise
    except Exception as exc:
        raise DaprError(
            500, "ERR_STATE_GET", f"fail to get {key} from state store {store}: {exc}"
        ) from None
    if item is None:
        return no_content()
    headers = [JSON]
    if item.etag is not None:
        headers.append((b"etag", item.etag.encode("latin-1")))
    for name, value in _item_metadata(item).items():
        headers.append((f"metadata.{name}".encode(), value.encode("latin-1")))
    return RawResponse(item.value, headers=headers)


async def save_state(call: DaprRequest) -> Response:
    store, binding = _store(call)
    items = await _json_body(call)
    if not isinstance(items, list):
        raise _unmarshal_error(items, "[]state.SetRequest")
    if not items:
        return no_content()
    url_metadata = call.metadata()
    requests: list[SetRequest] = []
    try:
        for item in items:
            fields = _fields(item, "state.SetRequest")
            if not _string(fields.get("key") or "", "string"):
                raise errors.malformed_request('"key" is a required field')
            requests.append(_set_request(store, binding, fields, url_metadata))
    except _StoreError as exc:
        raise DaprError(
            500, "ERR_STATE_SAVE", f"failed saving state in state store {store}: {exc}"
        ) from None

    # daprd's BulkSet: every item on its own, in parallel; saved items stay saved.
    if len(requests) == 1:
        failures: list[BaseException] = []
        try:
            await binding.store.set(requests[0])
        except Exception as exc:
            failures.append(exc)
    else:
        outcomes = await asyncio.gather(
            *(binding.store.set(r) for r in requests), return_exceptions=True
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        failure = _first_failure(failures)
        status, message = _store_failure(failure)
        raise DaprError(
            status, "ERR_STATE_SAVE", f"failed saving state in state store {store}: {message}"
        )
    return no_content()


def _first_failure(failures: Sequence[BaseException]) -> Exception:
    for failure in failures:
        if not isinstance(failure, Exception):
            raise failure  # cancellation and the like must propagate
    # An etag error anywhere decides the status, as daprd unwraps joined errors.
    for kind in (ETagMismatchError, ETagInvalidError):
        for failure in failures:
            if isinstance(failure, kind):
                return failure
    first = failures[0]
    assert isinstance(first, Exception)
    return first


async def delete_state(call: DaprRequest) -> Response:
    store, binding = _store(call)
    key = call.params["key"]
    concurrency = call.query.get("concurrency", "")
    consistency = call.query.get("consistency", "")
    # The header's presence is what counts; an empty If-Match is an empty (no) etag.
    etag = call.header("if-match") or None
    prefixed = _prefixed(store, binding, key)
    try:
        if concurrency and concurrency not in _CONCURRENCY:
            raise _StoreError(f"invalid concurrency value: {concurrency!r}")
        if consistency and consistency not in _CONSISTENCY:
            raise _StoreError(f"invalid consistency value: {consistency!r}")
        await binding.store.delete(
            DeleteRequest(prefixed, etag=etag, first_write=concurrency == "first-write")
        )
    except Exception as exc:
        status, message = _store_failure(exc)
        raise DaprError(
            status, "ERR_STATE_DELETE", f"failed deleting state with key {key}: {message}"
        ) from None
    return no_content()


async def bulk_get_state(call: DaprRequest) -> Response:
    store, binding = _store(call)
    body = _fields(await _json_body(call), "http.BulkGetRequest")
    keys = body.get("keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _unmarshal_error(keys, "[]string")
    if not keys:
        return _json_response("[]")
    prefixed = [_prefixed(store, binding, key) for key in keys]
    try:
        results = await binding.store.bulk_get(prefixed)
    except Exception as exc:
        raise DaprError(500, "ERR_STATE_BULK_GET", str(exc)) from None
    return _json_response("[" + ",".join(_bulk_entry(r) for r in results) + "]")


def _bulk_entry(result: BulkGetResult) -> str:
    key = json.dumps(original_key(result.key), ensure_ascii=False)
    if result.error is not None:
        return f'{{"key":{key},"error":{json.dumps(result.error)}}}'
    item = result.item
    if item is None:
        return f'{{"key":{key}}}'
    parts = [f'"key":{key}', f'"data":{_raw_json(item.value)}']
    if item.etag is not None:
        parts.append(f'"etag":{json.dumps(item.etag)}')
    metadata = _item_metadata(item)
    if metadata:
        parts.append(f'"metadata":{json.dumps(metadata)}')
    return "{" + ",".join(parts) + "}"


async def transaction(call: DaprRequest) -> Response:
    store, binding = _store(call)
    if FEATURE_TRANSACTIONAL not in binding.store.features:
        raise errors.state_transactions_not_supported(store)
    body = _fields(await _json_body(call), "http.stateTransactionRequestBody")
    operations = body.get("operations") or []
    if not isinstance(operations, list):
        raise _unmarshal_error(operations, "[]http.stateTransactionRequestBodyOperation")
    if not operations:
        return no_content()
    _string_map(body.get("metadata"))  # validated like daprd, passed to no store of ours
    url_metadata = call.metadata()
    parsed: list[Operation] = []
    try:
        for operation in operations:
            fields = _fields(operation, "http.stateTransactionRequestBodyOperation")
            kind = fields.get("operation")
            request = _fields(fields.get("request") or {}, "state.SetRequest")
            if "key" in request:
                _string(request["key"], "string")
            if kind == "upsert":
                parsed.append(_set_request(store, binding, request, url_metadata))
            elif kind == "delete":
                parsed.append(_delete_request(store, binding, request))
            else:
                raise DaprError(
                    400,
                    "ERR_NOT_SUPPORTED_STATE_OPERATION",
                    f"operation type {kind} not supported",
                )
        await binding.store.multi(parsed)
    except DaprError:
        raise
    except Exception as exc:
        # Always 500 inside a transaction, even for an etag mismatch, but with its text.
        _, message = _store_failure(exc)
        raise DaprError(
            500, "ERR_STATE_TRANSACTION", f"error while executing state transaction: {message}"
        ) from None
    return no_content()


async def query_state(call: DaprRequest) -> Response:
    store, binding = _store(call)
    if FEATURE_QUERY_API not in binding.store.features:
        raise errors.state_query_not_supported(store)
    try:
        body = await call.body()
    except BodyTooLargeError as exc:
        raise errors.malformed_request(str(exc)) from None
    try:
        # Like daprd, a query is not limited to this app's key prefix.
        query = _parse_query(body)
        result = await binding.store.query(query)
    except (StateStoreError, ValueError) as exc:
        raise errors.state_query_failed(store, str(exc)) from None
    if not result.items:
        return no_content()
    entries = []
    for key, item in result.items:
        entry = [f'"key":{json.dumps(original_key(key), ensure_ascii=False)}']
        entry.append(f'"data":{_raw_json(item.value)}')
        if item.etag:
            entry.append(f'"etag":{json.dumps(item.etag)}')
        entries.append("{" + ",".join(entry) + "}")
    parts = ['"results":[' + ",".join(entries) + "]"]
    if result.token:
        parts.append(f'"token":{json.dumps(result.token)}')
    return _json_response("{" + ",".join(parts) + "}")


def _parse_query(body: bytes) -> Query:
    try:
        document = json.loads(body or b"{}")
    except ValueError as exc:
        raise ValueError(f"failed to parse JSON query body: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("the query must be a JSON object")
    filter_ = document.get("filter")
    if filter_ is not None and not isinstance(filter_, dict):
        raise ValueError("'filter' must be an object")
    sort = []
    for entry in document.get("sort") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise ValueError("each 'sort' entry needs a 'key'")
        order = str(entry.get("order") or "ASC").upper()
        if order not in ("ASC", "DESC"):
            raise ValueError(f"sort order must be ASC or DESC, not {order!r}")
        sort.append((entry["key"], order == "DESC"))
    page = document.get("page") or {}
    if not isinstance(page, dict):
        raise ValueError("'page' must be an object")
    limit = page.get("limit", 0)
    token = page.get("token")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError("page.limit must be a non-negative integer")
    if token is not None and not isinstance(token, str):
        raise ValueError("page.token must be a string")
    return Query(filter=filter_, sort=tuple(sort), limit=limit, token=token)


ROUTES: list[Route] = [
    route(["GET"], "v1.0/state/{storeName}/{key}", get_state),
    route(["POST", "PUT"], "v1.0/state/{storeName}", save_state),
    route(["DELETE"], "v1.0/state/{storeName}/{key}", delete_state),
    route(["POST", "PUT"], "v1.0/state/{storeName}/bulk", bulk_get_state),
    route(["POST", "PUT"], "v1.0/state/{storeName}/transaction", transaction),
    route(["POST", "PUT"], "v1.0-alpha1/state/{storeName}/query", query_state),
]

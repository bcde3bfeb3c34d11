"""Service invocation: reference §3.1 (``/v1.0/invoke/{app-id}/method/{path}`` for every
verb, multi-segment paths, the ``dapr-app-id`` header form), §3.2 (query string, headers and
body forwarded; ``dapr-caller-app-id`` / ``dapr-callee-app-id``; the caller's
``dapr-api-token`` not forwarded, the callee's APP_API_TOKEN added), §3.3 (status, headers
and body passed through, also non-2xx; 500 ERR_DIRECT_INVOKE when there is no app answer),
§3.4 (sidecars started separately find each other; the sqlite resolver's Configuration),
§0.1 (no app id → 404), and streamed answers arriving as they are sent.

Two sidecars that share a ``DAPRFORGE_DATA_DIR`` (caller → callee) and two that use a
Configuration with ``nameResolution: sqlite`` (caller-b → callee-b); all four started
separately, without the runner. The tests for an unknown app and a missing app id also run
against a real daprd (``DAPR_CONFORMANCE_HTTP_URL``).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from ._apps import AppProcess, Record, start_recorder
from ._pubsub import wait_healthy
from ._support import (
    INVOKE_NO_APP_ID,
    SidecarProcess,
    assert_legacy_error,
    describe,
    new_key,
    start_sidecar,
)

REMOTE_URL = os.environ.get("DAPR_CONFORMANCE_HTTP_URL", "").rstrip("/")
OWN = pytest.mark.own_process
CALLER, CALLEE, DOWN = "inv-caller", "inv-callee", "inv-down"
CALLER_B, CALLEE_B = "inv-caller-b", "inv-callee-b"
CALLER_TOKEN = "caller-api-token-91c2"
CALLEE_APP_TOKEN = "callee-app-token-0d7e"
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
CHUNKS = ["first chunk\n", "second chunk\n", "third chunk\n"]
CHUNK_DELAY = 0.4
SCRIPTS: dict[str, list[dict[str, Any]]] = {
    "/created": [
        {"status": 201, "body": "made", "headers": {"X-Reply": "yes", "Content-Type": "text/plain"}}
    ],
    "/redirect": [{"status": 302, "headers": {"Location": "/elsewhere"}}],
    "/status/404": [{"status": 404, "json": {"error": "no such order"}}],
    "/status/418": [{"status": 418, "body": "teapot", "headers": {"X-Reply": "short"}}],
    "/status/500": [{"status": 500, "json": {"error": "boom"}}],
    "/status/503": [{"status": 503, "body": "", "headers": {"Retry-After": "1"}}],
    "/stream": [
        {"chunks": CHUNKS, "chunk_delay": CHUNK_DELAY, "headers": {"Content-Type": "text/plain"}}
    ],
}


@dataclass
class InvokeEnv:
    caller: httpx.AsyncClient
    """Client of the caller sidecar (sends the caller's DAPR_API_TOKEN)."""
    caller_b: httpx.AsyncClient
    app: AppProcess
    down_app: AppProcess
    registry: Path
    processes: list[SidecarProcess]

    def logs(self) -> str:
        return "\n".join(f"--- {p.app_id}\n{p.log()[-3000:]}" for p in self.processes)


def name_resolution_config(path: Path, registry: Path) -> Path:
    doc = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "sqlite-names"},
        "spec": {
            "nameResolution": {
                "component": "sqlite",
                "configuration": {"connectionString": str(registry)},
            }
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InvokeEnv]:
    tmp = tmp_path_factory.mktemp("invoke")
    empty = tmp / "resources"
    empty.mkdir()
    shared = {"DAPRFORGE_DATA_DIR": str(tmp / "shared-data")}
    registry = tmp / "names" / "registry.db"
    config = name_resolution_config(tmp / "names.yaml", registry)
    app, down_app = await asyncio.gather(
        start_recorder(tmp / "app", scripts=SCRIPTS, name="callee-app"),
        start_recorder(tmp / "down-app", name="down-app"),
    )
    starts = {
        CALLEE: {"app_port": app.port, "env": {**shared, "APP_API_TOKEN": CALLEE_APP_TOKEN}},
        CALLER: {"env": {**shared, "DAPR_API_TOKEN": CALLER_TOKEN}},
        DOWN: {"app_port": down_app.port, "env": shared},
        CALLEE_B: {"app_port": app.port, "extra_args": ["--config", str(config)]},
        CALLER_B: {"extra_args": ["--config", str(config)]},
    }
    results = await asyncio.gather(
        *(
            start_sidecar(tmp / app_id, app_id=app_id, resources=[empty], **kwargs)
            for app_id, kwargs in starts.items()
        ),
        return_exceptions=True,
    )
    processes = [p for p in results if isinstance(p, SidecarProcess)]
    try:
        for result in results:
            if isinstance(result, BaseException):
                raise result
        await asyncio.gather(*(wait_healthy(p) for p in processes))
        by_id = {p.app_id: p for p in processes}
        async with (
            httpx.AsyncClient(
                base_url=by_id[CALLER].url,
                timeout=15.0,
                headers={"dapr-api-token": CALLER_TOKEN},
            ) as caller,
            httpx.AsyncClient(base_url=by_id[CALLER_B].url, timeout=15.0) as caller_b,
        ):
            yield InvokeEnv(caller, caller_b, app, down_app, registry, processes)
    finally:
        await asyncio.gather(*(p.stop() for p in processes))
        await asyncio.gather(app.stop(), down_app.stop())


def invoke_path(app_id: str, method: str) -> str:
    return f"/v1.0/invoke/{app_id}/method/{method.lstrip('/')}"


async def the_record(app: AppProcess, path: str) -> Record:
    records = await app.records(path)
    assert len(records) == 1, f"{path}: {len(records)} requests reached the app"
    return records[0]


# --------------------------------------------------------------------------- forwarding


@OWN
@pytest.mark.parametrize("verb", ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_every_verb(env: InvokeEnv, verb: str) -> None:
    path = f"/verbs/{new_key(verb.lower())}"
    body = b"" if verb in ("GET", "HEAD") else f"{verb} body".encode()
    resp = await env.caller.request(verb, invoke_path(CALLEE, path), content=body)
    assert resp.status_code == 200, describe(resp)
    record = await the_record(env.app, path)
    assert record.method == verb
    assert record.body == body
    if verb != "HEAD":
        assert resp.json()["method"] == verb, "the app's answer comes back"


@OWN
async def test_multi_segment_method_path(env: InvokeEnv) -> None:
    key = new_key()
    resp = await env.caller.post(invoke_path(CALLEE, f"api/v1/orders/{key}/items"), content=b"x")
    assert resp.status_code == 200, describe(resp)
    await the_record(env.app, f"/api/v1/orders/{key}/items")


@OWN
async def test_query_string_is_forwarded_unchanged(env: InvokeEnv) -> None:
    key = new_key()
    query = "b=2&a=1&a=3&sp=x%20y&plus=a+b&empty=&enc=%2F%3F"
    resp = await env.caller.get(f"{invoke_path(CALLEE, f'q/{key}')}?{query}")
    assert resp.status_code == 200, describe(resp)
    assert (await the_record(env.app, f"/q/{key}")).query == query


@OWN
async def test_headers_and_body_are_forwarded(env: InvokeEnv) -> None:
    key = new_key()
    body = "<order id='1'>ü</order>".encode()
    resp = await env.caller.put(
        invoke_path(CALLEE, f"h/{key}"),
        content=body,
        headers={"X-Custom-Header": "custom value", "Content-Type": "application/xml"},
    )
    assert resp.status_code == 200, describe(resp)
    record = await the_record(env.app, f"/h/{key}")
    assert record.body == body
    assert record.header("x-custom-header") == "custom value"
    assert record.header("content-type") == "application/xml"


@OWN
async def test_caller_and_callee_ids_and_tokens(env: InvokeEnv) -> None:
    key = new_key()
    resp = await env.caller.get(
        invoke_path(CALLEE, f"ids/{key}"),
        headers={"dapr-caller-app-id": "spoofed", "dapr-callee-app-id": "spoofed"},
    )
    assert resp.status_code == 200, describe(resp)
    record = await the_record(env.app, f"/ids/{key}")
    assert record.header_values("dapr-caller-app-id") == [CALLER], record.headers
    assert record.header_values("dapr-callee-app-id") == [CALLEE], record.headers
    # the caller's API token is consumed by its sidecar; the callee's app token is added
    assert record.header_values("dapr-api-token") == [CALLEE_APP_TOKEN], record.headers


@OWN
async def test_trace_context_is_propagated(env: InvokeEnv) -> None:
    key, trace_id = new_key(), "0af7651916cd43dd8448eb211c80319c"
    resp = await env.caller.get(
        invoke_path(CALLEE, f"trace/{key}"),
        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
    )
    assert resp.status_code == 200, describe(resp)
    record = await the_record(env.app, f"/trace/{key}")
    match = TRACEPARENT_RE.match(record.header("traceparent") or "")
    assert match, record.headers
    assert match.group(1) == trace_id


@OWN
async def test_dapr_app_id_header_form(env: InvokeEnv) -> None:
    key = new_key()
    resp = await env.caller.post(
        f"/any/path/{key}?q=1", content=b"by header", headers={"dapr-app-id": CALLEE}
    )
    assert resp.status_code == 200, describe(resp)
    record = await the_record(env.app, f"/any/path/{key}")
    assert record.method == "POST"
    assert record.query == "q=1"
    assert record.body == b"by header"
    assert record.header("dapr-app-id") is None, "the header is removed before forwarding"
    assert record.header("dapr-caller-app-id") == CALLER


# --------------------------------------------------------------------------- responses


@OWN
@pytest.mark.parametrize(
    ("path", "status", "body", "headers"),
    [
        ("/created", 201, b"made", {"x-reply": "yes", "content-type": "text/plain"}),
        ("/redirect", 302, b"", {"location": "/elsewhere"}),
        ("/status/404", 404, b'{"error": "no such order"}', {"content-type": "application/json"}),
        ("/status/418", 418, b"teapot", {"x-reply": "short"}),
        ("/status/500", 500, b'{"error": "boom"}', {"content-type": "application/json"}),
        ("/status/503", 503, b"", {"retry-after": "1"}),
    ],
)
async def test_app_response_is_passed_through(
    env: InvokeEnv, path: str, status: int, body: bytes, headers: dict[str, str]
) -> None:
    resp = await env.caller.post(invoke_path(CALLEE, path), content=b"{}")
    assert resp.status_code == status, describe(resp)
    assert resp.content == body, describe(resp)
    for name, value in headers.items():
        assert resp.headers.get(name) == value, dict(resp.headers)


@OWN
async def test_streamed_answer_arrives_incrementally(env: InvokeEnv) -> None:
    arrivals: list[tuple[float, bytes]] = []
    start = time.monotonic()
    async with env.caller.stream("GET", invoke_path(CALLEE, "stream")) as resp:
        assert resp.status_code == 200
        async for chunk in resp.aiter_raw():
            arrivals.append((time.monotonic() - start, chunk))
    assert b"".join(c for _, c in arrivals) == "".join(CHUNKS).encode()
    first = next(t for t, c in arrivals if c)
    last = arrivals[-1][0]
    assert last - first >= CHUNK_DELAY * 1.5, (
        f"the first bytes came {first:.2f}s in, the last {last:.2f}s in: not streamed"
    )


# --------------------------------------------------------------------------- failures


@dataclass
class Api:
    client: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def remote_api() -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=REMOTE_URL, timeout=15.0) as client:
        yield Api(client)


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Api:
    """The real daprd of DAPR_CONFORMANCE_HTTP_URL, or the caller sidecar (a sync fixture:
    an async one cannot start another async fixture on demand)."""
    if REMOTE_URL:
        remote: Api = request.getfixturevalue("remote_api")
        return remote
    env: InvokeEnv = request.getfixturevalue("env")
    return Api(env.caller)


async def test_unknown_app_is_500(api: Api) -> None:
    target = f"no-such-app-{new_key()}"
    resp = await api.client.post(invoke_path(target, "x"), content=b"{}")
    assert_legacy_error(
        resp,
        500,
        "ERR_DIRECT_INVOKE",
        re.compile(rf"^failed to invoke, id: {re.escape(target)}, err: .+"),
    )


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/orders/1"), ("POST", "/v1.0/invoke"), ("PUT", "/")]
)
async def test_no_app_id_is_404(api: Api, method: str, path: str) -> None:
    resp = await api.client.request(method, path, content=b"x")
    assert resp.status_code == 404, describe(resp)
    assert resp.json() == {"errorCode": "ERR_DIRECT_INVOKE", "message": INVOKE_NO_APP_ID}


@OWN
async def test_target_app_down_is_500(env: InvokeEnv) -> None:
    resp = await env.caller.get(invoke_path(DOWN, "before"))
    assert resp.status_code == 200, f"{describe(resp)}\n{env.logs()}"
    await env.down_app.stop()
    resp = await env.caller.get(invoke_path(DOWN, "after"))
    assert_legacy_error(
        resp, 500, "ERR_DIRECT_INVOKE", re.compile(rf"^failed to invoke, id: {DOWN}, err: .+")
    )


# --------------------------------------------------------------------------- name resolution


@OWN
async def test_sqlite_name_resolution_configuration(env: InvokeEnv) -> None:
    key = new_key()
    resp = await env.caller_b.post(invoke_path(CALLEE_B, f"nr/{key}"), content=b"via sqlite")
    assert resp.status_code == 200, f"{describe(resp)}\n{env.logs()}"
    record = await the_record(env.app, f"/nr/{key}")
    assert record.header("dapr-caller-app-id") == CALLER_B
    assert record.header("dapr-callee-app-id") == CALLEE_B
    assert record.body == b"via sqlite"

    assert env.registry.is_file(), "the resolver's database is the configured file"
    with sqlite3.connect(env.registry) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(hosts)")}
        apps = {row[0] for row in db.execute("SELECT app_id FROM hosts")}
    assert {"registration_id", "address", "app_id", "namespace", "last_update"} <= columns
    assert {CALLER_B, CALLEE_B} <= apps
    assert CALLEE not in apps, "sidecars without the Configuration use their own registry"


@OWN
async def test_separate_registries_do_not_see_each_other(env: InvokeEnv) -> None:
    resp = await env.caller_b.get(invoke_path(CALLEE, "x"))
    assert_legacy_error(
        resp, 500, "ERR_DIRECT_INVOKE", re.compile(rf"^failed to invoke, id: {CALLEE}, err: ")
    )

"""Health and metadata: reference §5.1 (healthz, outbound, ?appid), §5.2 (waiting for the app
port), §6 (calls into the app carry APP_API_TOKEN), §5.4 (GET/PUT metadata, capability
strings), §12 item 10 (TRANSACTIONAL, not TRANSACTION).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import pytest_asyncio

from ._support import (
    Sidecar,
    assert_json_content_type,
    assert_kit_error,
    assert_no_content,
    component,
    describe,
    error_body,
    error_info,
    free_port,
    new_key,
    start_sidecar,
    write_components,
)

TYPES = {
    "in-memory": ("state.in-memory", "v1"),
    "sqlite": ("state.sqlite", "v1"),
    "postgresql-v1": ("state.postgresql", "v1"),
    "postgresql-v2": ("state.postgresql", "v2"),
}


async def test_healthz(sidecar: Sidecar) -> None:
    assert_no_content(await sidecar.client.get("/v1.0/healthz"))
    assert_no_content(await sidecar.client.get("/v1.0/healthz/outbound"))


async def test_healthz_with_matching_appid(sidecar: Sidecar) -> None:
    resp = await sidecar.client.get("/v1.0/healthz", params={"appid": sidecar.app_id})
    assert_no_content(resp)


async def test_healthz_with_other_appid_is_500(sidecar: Sidecar) -> None:
    resp = await sidecar.client.get("/v1.0/healthz", params={"appid": "some-other-app"})
    assert resp.status_code == 500, describe(resp)
    assert_json_content_type(resp)
    assert resp.json()["errorCode"] == "ERR_HEALTH_APPID_NOT_MATCH"


async def test_metadata(sidecar: Sidecar) -> None:
    resp = await sidecar.client.get("/v1.0/metadata")
    assert resp.status_code == 200, describe(resp)
    assert_json_content_type(resp)
    meta = resp.json()
    assert meta["id"] == sidecar.app_id
    version = meta["extended"]["daprRuntimeVersion"]
    assert isinstance(version, str)
    assert version
    assert "actorRuntime" in meta, "actorRuntime is the one field never omitted"
    for empty in ("httpEndpoints", "subscriptions", "actors"):
        assert empty not in meta or meta[empty], f"{empty} must be omitted when empty: {meta}"
    comps = [c for c in meta["components"] if c["name"] == sidecar.store]
    assert len(comps) == 1, meta["components"]
    comp = comps[0]
    if sidecar.kind in TYPES:
        assert (comp["type"], comp["version"]) == TYPES[sidecar.kind]
    caps = comp.get("capabilities", [])
    assert all(isinstance(c, str) for c in caps), caps
    assert {"ETAG", "TRANSACTIONAL"} <= set(caps), caps
    assert "TRANSACTION" not in caps, caps
    if sidecar.kind in ("sqlite", "postgresql-v1", "postgresql-v2"):
        assert "TTL" in caps, caps
    if sidecar.kind != "other":
        assert ("QUERY_API" in caps) == (sidecar.kind == "postgresql-v1"), caps


async def test_put_metadata_attribute(sidecar: Sidecar) -> None:
    name = f"conf{new_key('attr').replace('-', '')}"
    resp = await sidecar.client.put(f"/v1.0/metadata/{name}", content=b"first value")
    assert_no_content(resp)
    meta = (await sidecar.client.get("/v1.0/metadata")).json()
    assert meta["extended"][name] == "first value"
    assert meta["extended"]["daprRuntimeVersion"]
    assert_no_content(await sidecar.client.put(f"/v1.0/metadata/{name}", content=b"second"))
    assert (await sidecar.client.get("/v1.0/metadata")).json()["extended"][name] == "second"


async def test_put_metadata_key_is_url_decoded(sidecar: Sidecar) -> None:
    name = f"conf{new_key('x').replace('-', '')}"
    resp = await sidecar.client.put(f"/v1.0/metadata/{name}%2Bplus", content=b"v")
    assert_no_content(resp)
    extended = (await sidecar.client.get("/v1.0/metadata")).json()["extended"]
    assert extended.get(f"{name}+plus") == "v", extended


# ----------------------------------------------------------------- waiting for the app port


APP_TOKEN = "app-token-for-the-app"


class _NotFoundApp(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict[str, str]]]] = []

    def do_GET(self) -> None:  # /dapr/subscribe and anything else: no subscriptions
        self.requests.append(
            (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def app_port() -> int:
    return free_port()


@pytest_asyncio.fixture(loop_scope="session")
async def waiting_sidecar(tmp_path: Path, app_port: int) -> AsyncIterator[Sidecar]:
    resources = tmp_path / "resources"
    write_components(
        resources / "components.yaml",
        component("statestore", "state.in-memory"),
        component("pubsub", "pubsub.in-memory"),
    )
    process = await start_sidecar(
        tmp_path,
        app_id="waiting-app",
        resources=[resources],
        app_port=app_port,
        env={"APP_API_TOKEN": APP_TOKEN},
    )
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10.0) as client:
            yield Sidecar(process.url, "statestore", "waiting-app", "in-memory", client, process)
    finally:
        await process.stop()


@pytest.mark.own_process
async def test_healthz_waits_for_the_app_port(waiting_sidecar: Sidecar, app_port: int) -> None:
    sc = waiting_sidecar
    resp = await sc.client.get("/v1.0/healthz")
    body = error_body(resp, 500, "ERR_HEALTH_NOT_READY")
    assert re.match(r"^dapr is not ready", body["message"]), body
    # outbound is ready before the app port: the app can use Dapr while it starts (§5.1)
    assert_no_content(await sc.client.get("/v1.0/healthz/outbound"))
    key = new_key()
    await sc.save_ok(key, "during startup")
    assert (await sc.get(key)).json() == "during startup"
    meta = (await sc.client.get("/v1.0/metadata")).json()
    conn = meta["appConnectionProperties"]
    assert conn["port"] == app_port
    assert conn["protocol"] == "http"
    assert conn["channelAddress"] == "127.0.0.1"

    server = ThreadingHTTPServer(("127.0.0.1", app_port), _NotFoundApp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5.0  # daprd dials every 100 ms; allow for a loaded CI box
        while (resp := await sc.client.get("/v1.0/healthz")).status_code != 204:
            assert sc.process is not None
            assert time.monotonic() < deadline, (
                f"still not ready: {describe(resp)}\n{sc.process.log()}"
            )
            await asyncio.sleep(0.1)
        assert_no_content(resp)
        # calls into the app carry APP_API_TOKEN (§6); /dapr/subscribe is fetched once the port
        # is open (§5.2), as a GET
        subscribe = [r for r in _NotFoundApp.requests if r[1] == "/dapr/subscribe"]
        assert subscribe, f"app saw {_NotFoundApp.requests}"
        assert subscribe[0][0] == "GET"
        assert subscribe[0][2].get("dapr-api-token") == APP_TOKEN, subscribe[0]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.own_process
async def test_no_state_store_configured(tmp_path: Path) -> None:
    resources = tmp_path / "resources"
    resources.mkdir()
    process = await start_sidecar(tmp_path, app_id="bare-app", resources=[resources])
    try:
        async with httpx.AsyncClient(base_url=process.url, timeout=10.0) as client:
            sc = Sidecar(process.url, "statestore", "bare-app", "other", client, process)
            responses = [
                await sc.get("k"),
                await sc.save([{"key": "k", "value": 1}]),
                await sc.delete("k"),
                await sc.bulk({"keys": ["k"]}),
                await sc.transaction({"operations": []}),
                await sc.query({}),
            ]
            for resp in responses:
                body = assert_kit_error(
                    resp,
                    500,
                    "ERR_STATE_STORE_NOT_CONFIGURED",
                    "DAPR_STATE_NOT_CONFIGURED",
                )
                assert "not configured" in body["message"], body
                assert error_info(body).get("metadata") == {"appID": "bare-app"}, body
            secret = await client.get("/v1.0/secrets/any/key")
            error_body(secret, 500, "ERR_SECRET_STORES_NOT_CONFIGURED")
            meta = (await client.get("/v1.0/metadata")).json()
            assert meta["id"] == "bare-app"
            assert "components" not in meta, meta  # omitted when empty
            assert_no_content(await client.get("/v1.0/healthz"))
    finally:
        await process.stop()

"""Helpers for the conformance suite: sidecar processes, component YAML, error-body checks.

Nothing here imports daprforge: the suite talks to the sidecar over HTTP only, so it can be
pointed at a real daprd (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from daprforge.launch import free_port

POSTGRES_URL = os.environ.get("DAPRFORGE_TEST_POSTGRES_URL") or (
    "postgres://postgres@{}:{}/test?sslmode=disable".format(
        os.environ.get("DAPRFORGE_TEST_POSTGRES_HOST", "127.0.0.1"),
        os.environ.get("DAPRFORGE_TEST_POSTGRES_PORT", "5432"),
    )
)
STORE_KINDS = ("in-memory", "sqlite", "postgresql-v1", "postgresql-v2")
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RESOURCE_INFO = "type.googleapis.com/google.rpc.ResourceInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
RFC3339_UTC_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
INVOKE_NO_APP_ID = "failed getting app id either from the URL path or the header dapr-app-id"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# Slow work started at session start so it overlaps the tests (see conftest.early_starts):
# name -> task. Whoever needs a result pops its task; leftovers are cleaned up at session end.
EARLY: dict[str, asyncio.Task[Any]] = {}

# Variables a sidecar must not inherit from the test runner by accident.
_SCRUBBED_ENV = ("DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "DAPR_HTTP_PORT", "APP_PORT")


def new_key(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def quote_segment(segment: str) -> str:
    """Percent-encode one path segment (``/`` too), as a Dapr client must."""
    return quote(segment, safe="")


# --------------------------------------------------------------------------- components


def component(
    name: str,
    type_: str,
    *,
    version: str | None = "v1",
    metadata: Mapping[str, Any] | Sequence[tuple[str, Any]] = (),
    scopes: Sequence[str] | None = None,
    secret_store: str | None = None,
    ignore_errors: bool | None = None,
) -> dict[str, Any]:
    """A Dapr Component document. A metadata value that is a dict (``secretKeyRef``/``envRef``)
    is merged into the entry as-is; anything else becomes ``value``."""
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    entries: list[dict[str, Any]] = []
    for key, value in items:
        if isinstance(value, dict):
            entries.append({"name": key, **value})
        else:
            entries.append({"name": key, "value": value})
    spec: dict[str, Any] = {"type": type_}
    if version is not None:
        spec["version"] = version
    if ignore_errors is not None:
        spec["ignoreErrors"] = ignore_errors
    spec["metadata"] = entries
    doc: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
    }
    if secret_store is not None:
        doc["auth"] = {"secretStore": secret_store}
    doc["spec"] = spec
    if scopes is not None:
        doc["scopes"] = list(scopes)
    return doc


def write_components(path: Path, *docs: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def store_component(kind: str, *, name: str, tmp: Path, pg_prefix: str) -> dict[str, Any]:
    """The state store component used for one store kind of the parametrized suite."""
    if kind == "in-memory":
        return component(name, "state.in-memory")
    if kind == "sqlite":
        return component(name, "state.sqlite", metadata={"connectionString": str(tmp / "state.db")})
    if kind == "postgresql-v1":
        return component(
            name,
            "state.postgresql",
            metadata={
                "connectionString": POSTGRES_URL,
                "tableName": f"{pg_prefix}_v1",
                "metadataTableName": f"{pg_prefix}_v1_meta",
            },
        )
    if kind == "postgresql-v2":
        return component(
            name,
            "state.postgresql",
            version="v2",
            metadata={
                "connectionString": POSTGRES_URL,
                "tablePrefix": f"{pg_prefix}_v2_",
                "metadataTableName": f"{pg_prefix}_v2_meta",
            },
        )
    raise ValueError(kind)


def store_kind_from_metadata(comp: Mapping[str, Any]) -> str:
    type_, version = comp.get("type", ""), comp.get("version", "")
    if type_ == "state.in-memory":
        return "in-memory"
    if type_ == "state.sqlite":
        return "sqlite"
    if type_ in ("state.postgresql", "state.postgres"):
        return "postgresql-v2" if version == "v2" else "postgresql-v1"
    return "other"


def wrong_etag(kind: str) -> str:
    """A well-formed etag for ``kind`` that matches no row (Postgres v1 etags are uint32)."""
    return "4294967290" if kind == "postgresql-v1" else str(uuid.uuid4())


# --------------------------------------------------------------------------- processes


def sidecar_command(
    *,
    app_id: str,
    port: int,
    resources: Iterable[Path] | None,
    app_port: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    cmd = [sys.executable, "-m", "daprforge", "sidecar", "--app-id", app_id]
    cmd += ["--dapr-http-port", str(port)]
    for path in resources or ():
        cmd += ["--resources-path", str(path)]
    if app_port is not None:
        cmd += ["--app-port", str(app_port)]
    cmd += list(extra_args)
    return cmd


def sidecar_env(tmp: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    base = {k: v for k, v in base.items() if not k.startswith("DAPR_CONFORMANCE_")}
    base["DAPRFORGE_DATA_DIR"] = str(tmp / "data")
    base["PYTHONUNBUFFERED"] = "1"
    base.update(env or {})
    return base


@dataclass
class SidecarProcess:
    proc: asyncio.subprocess.Process
    port: int
    app_id: str
    log_path: Path
    cmd: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_ready(self, limit: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self.proc.returncode is not None:
                    pytest.fail(
                        f"sidecar {self.app_id} exited with {self.proc.returncode} before it "
                        f"was ready\ncommand: {self.cmd}\n--- output ---\n{self.log()}",
                        pytrace=False,
                    )
                with contextlib.suppress(httpx.HTTPError):
                    resp = await client.get(f"{self.url}/v1.0/healthz/outbound")
                    if resp.status_code == 204:
                        return
                if time.monotonic() > deadline:
                    await self.stop()
                    pytest.fail(
                        f"sidecar {self.app_id} not ready after {limit}s\ncommand: {self.cmd}"
                        f"\n--- output ---\n{self.log()}",
                        pytrace=False,
                    )
                await asyncio.sleep(0.05)

    async def stop(self, limit: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then SIGKILL after ``limit`` seconds; returns the exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), limit)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode


async def spawn_sidecar(
    tmp: Path,
    *,
    app_id: str,
    resources: Iterable[Path] | None,
    env: Mapping[str, str] | None = None,
    app_port: int | None = None,
    extra_args: Sequence[str] = (),
    cwd: Path | None = None,
) -> SidecarProcess:
    """Start a sidecar process (not waiting for it); output goes to a log file in ``tmp``."""
    port = free_port()
    cmd = sidecar_command(
        app_id=app_id, port=port, resources=resources, app_port=app_port, extra_args=extra_args
    )
    log_path = _log_path(tmp, f"sidecar-{app_id}-{port}.log")
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - a local file, opened once
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=sidecar_env(tmp, env),
            cwd=str(cwd or tmp),
        )
    return SidecarProcess(proc=proc, port=port, app_id=app_id, log_path=log_path, cmd=cmd)


def _log_path(tmp: Path, name: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp / name


async def start_sidecar(tmp: Path, **kwargs: Any) -> SidecarProcess:
    """Start a sidecar and wait until ``/v1.0/healthz/outbound`` answers 204."""
    process = await spawn_sidecar(tmp, **kwargs)
    await process.wait_ready()
    return process


async def run_until_exit(tmp: Path, limit: float = 30.0, **kwargs: Any) -> tuple[int, str]:
    """Start a sidecar that is expected to fail at startup; return (exit code, output)."""
    process = await spawn_sidecar(tmp, **kwargs)
    try:
        await asyncio.wait_for(process.proc.wait(), limit)
    except TimeoutError:
        await process.stop()
        return -999, process.log()  # still running: the caller's assertion reports it
    assert process.proc.returncode is not None
    return process.proc.returncode, process.log()


# --------------------------------------------------------------------------- the API client


@dataclass
class Sidecar:
    """A running sidecar (ours or a real daprd) plus one shared HTTP client."""

    url: str
    store: str
    app_id: str
    kind: str
    client: httpx.AsyncClient
    process: SidecarProcess | None = None
    backend: dict[str, str] = field(default_factory=dict)
    """Where the data lives (``sqlite_path``, ``table``); empty against a real daprd."""
    expiring: ExpiringKeys | None = None
    """Keys saved with a 2 s TTL right after startup (see ``seed_expiring_keys``)."""

    def state_path(self, key: str | None = None, store: str | None = None) -> str:
        path = f"/v1.0/state/{quote_segment(store or self.store)}"
        return path if key is None else f"{path}/{quote_segment(key)}"

    async def save(
        self,
        items: Any,
        *,
        params: Mapping[str, str] | None = None,
        store: str | None = None,
        method: str = "POST",
    ) -> httpx.Response:
        return await self.client.request(
            method, self.state_path(store=store), json=items, params=params
        )

    async def save_ok(self, key: str, value: Any, **item: Any) -> None:
        resp = await self.save([{"key": key, "value": value, **item}])
        assert resp.status_code == 204, resp.text

    async def get(
        self, key: str, *, params: Mapping[str, str] | None = None, store: str | None = None
    ) -> httpx.Response:
        return await self.client.get(self.state_path(key, store), params=params)

    async def get_etag(self, key: str) -> str:
        resp = await self.get(key)
        assert resp.status_code == 200, resp.text
        etag = resp.headers.get("etag")
        assert etag, f"GET {key} returned no ETag header: {dict(resp.headers)}"
        return etag

    async def delete(
        self,
        key: str,
        *,
        etag: str | None = None,
        params: Mapping[str, str] | None = None,
        store: str | None = None,
    ) -> httpx.Response:
        headers = {"If-Match": etag} if etag is not None else {}
        return await self.client.delete(self.state_path(key, store), headers=headers, params=params)

    async def bulk(self, body: Any, *, store: str | None = None) -> httpx.Response:
        return await self.client.post(f"{self.state_path(store=store)}/bulk", json=body)

    async def transaction(
        self, body: Any, *, params: Mapping[str, str] | None = None, store: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            f"{self.state_path(store=store)}/transaction", json=body, params=params
        )

    async def query(self, body: Any, *, store: str | None = None) -> httpx.Response:
        path = f"/v1.0-alpha1/state/{quote_segment(store or self.store)}/query"
        return await self.client.post(path, json=body)


@dataclass
class ExpiringKeys:
    """Keys saved with ``ttlInSeconds=2`` in every way the API allows (§1.4, §1.8).

    The sidecar fixture seeds them at startup so that ``test_keys_expire`` usually finds them
    already expired instead of sleeping."""

    started: float
    item_ttl: str
    query_ttl: str
    stale: str
    first_write: str
    tx_ttl: str
    stale_etag: str
    present_after_save: bool

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.item_ttl, self.query_ttl, self.stale, self.first_write, self.tx_ttl)


async def seed_expiring_keys(sc: Sidecar) -> ExpiringKeys:
    item_ttl, query_ttl, stale, first_write, tx_ttl = (new_key("ttl") for _ in range(5))
    started = time.monotonic()
    await sc.save_ok(item_ttl, "a", metadata={"ttlInSeconds": "2"})
    resp = await sc.save(
        [{"key": k, "value": "b"} for k in (query_ttl, stale, first_write)],
        params={"metadata.ttlInSeconds": "2"},
    )
    assert resp.status_code == 204, describe(resp)
    ops = [{"operation": "upsert", "request": {"key": tx_ttl, "value": "c"}}]
    resp = await sc.transaction({"operations": ops}, params={"metadata.ttlInSeconds": "2"})
    assert resp.status_code == 204, describe(resp)
    stale_etag = await sc.get_etag(stale)
    present = (await sc.get(item_ttl)).status_code == 200
    return ExpiringKeys(
        started, item_ttl, query_ttl, stale, first_write, tx_ttl, stale_etag, present
    )


async def try_seed_expiring_keys(sc: Sidecar) -> None:
    """Seed if possible; a failure here is reported by the TTL test itself, not the fixture."""
    with contextlib.suppress(Exception, pytest.fail.Exception):
        sc.expiring = await seed_expiring_keys(sc)


# --------------------------------------------------------------------------- assertions


def describe(resp: httpx.Response) -> str:
    return f"{resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text[:2000]!r}"


def assert_json_content_type(resp: httpx.Response) -> None:
    ctype = resp.headers.get("content-type", "")
    assert ctype.split(";")[0].strip() == "application/json", (
        f"Content-Type {ctype!r}: {describe(resp)}"
    )


def assert_no_content(resp: httpx.Response) -> None:
    assert resp.status_code == 204, describe(resp)
    assert resp.content == b"", describe(resp)


def error_body(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, describe(resp)
    assert_json_content_type(resp)
    body = resp.json()
    assert isinstance(body, dict), describe(resp)
    assert body.get("errorCode") == code, describe(resp)
    assert isinstance(body.get("message"), str), describe(resp)
    return body


def assert_legacy_error(
    resp: httpx.Response,
    status: int,
    code: str,
    message: str | re.Pattern[str] | None = None,
    *,
    exact_keys: bool = True,
) -> dict[str, Any]:
    """Legacy APIError: ``{"errorCode": ..., "message": ...}`` and nothing else."""
    body = error_body(resp, status, code)
    if exact_keys:
        assert set(body) == {"errorCode", "message"}, describe(resp)
    check_message(body["message"], message, resp)
    return body


def check_message(
    actual: str, expected: str | re.Pattern[str] | None, resp: httpx.Response
) -> None:
    if expected is None:
        return
    if isinstance(expected, re.Pattern):
        assert expected.search(actual), f"message {actual!r} !~ {expected.pattern!r}"
    else:
        assert actual == expected, describe(resp)


def find_details(body: Mapping[str, Any], type_url: str) -> list[dict[str, Any]]:
    details = body.get("details")
    assert isinstance(details, list), f"no details list in {body!r}"
    return [d for d in details if isinstance(d, dict) and d.get("@type") == type_url]


def assert_kit_error(
    resp: httpx.Response,
    status: int,
    code: str,
    reason: str,
    message: str | re.Pattern[str] | None = None,
) -> dict[str, Any]:
    """Kit error: legacy fields plus ``details`` with exactly one ErrorInfo (``domain`` dapr.io)."""
    body = error_body(resp, status, code)
    check_message(body["message"], message, resp)
    infos = find_details(body, ERROR_INFO)
    assert len(infos) == 1, f"expected one ErrorInfo detail: {body!r}"
    assert infos[0].get("reason") == reason, body
    assert infos[0].get("domain") == "dapr.io", body
    return body


def error_info(body: Mapping[str, Any]) -> dict[str, Any]:
    return find_details(body, ERROR_INFO)[0]


def json_body(resp: httpx.Response) -> Any:
    try:
        return json.loads(resp.content)
    except ValueError:
        pytest.fail(f"not JSON: {describe(resp)}", pytrace=False)

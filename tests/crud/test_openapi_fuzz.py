"""Schemathesis against the OpenAPI document of a freshly generated crud-api, served by
uvicorn in a subprocess next to a real sidecar (SQLite state): whatever the document
allows a client to send, the service never answers 5xx. The number of examples per
operation is bounded (``FUZZ_EXAMPLES``, default 30) so the suite stays quick."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import schemathesis.specs.openapi.schemas  # imported up front: see below
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from typer.testing import CliRunner

from daprforge.cli import app as cli
from daprforge.launch import free_port
from daprforge.testing import Sidecar, component, start_sidecar

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
# schemathesis imports its OpenAPI modules on first use, which is in the fuzzing thread;
# pytest's assertion rewriting then parses them there while the event loop's thread also
# compiles, and CPython 3.11's AST recursion tracking is not thread-safe (a rare
# "SystemError: AST constructor recursion depth mismatch" in CI). So they are imported at
# collection, in the main thread.


def generate(root: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["new", "crud-api", "fuzzed", "--resource", "exercise", "--defaults", "--dir", str(root)],
    )
    assert result.exit_code == 0, result.output


@contextlib.asynccontextmanager
async def uvicorn_app(root: Path, sidecar: Sidecar) -> AsyncIterator[str]:
    """The generated app in its own process (schemathesis calls are blocking)."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DAPR_", "APP_", "PYTEST_")) and key != "API_KEY"
    }
    env |= {"DAPR_HTTP_ENDPOINT": sidecar.url, "LOG_LEVEL": "WARNING", "LOG_JSON": "false"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
        cwd=root, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client, asyncio.timeout(30):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/ready")).status_code == 200:
                        break
                assert process.returncode is None, "the app exited during start-up"
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await process.wait()


def fuzz(base_url: str, existing_id: str) -> tuple[list[str], dict[str, set[int]]]:
    """Every operation, up to ``EXAMPLES`` times each for valid and for invalid requests:
    (the 5xx answers, statuses seen per operation)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.config.update(base_url=base_url)
    failures: list[str] = []
    seen: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        if operation.path.startswith("/exercises"):  # /health, /ready...: tested elsewhere
            fuzz_operation(
                operation, existing_id, failures, seen.setdefault(operation.label, set())
            )
    return failures, seen


def fuzz_operation(operation: Any, existing_id: str, failures: list[str], seen: set[int]) -> None:
    # Valid requests and, as often, requests that break the document's rules.
    cases = operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE)

    @given(case=cases, real=st.booleans())
    @settings(
        max_examples=2 * EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any, real: bool) -> None:
        if real and case.path_parameters and "item_id" in case.path_parameters:
            case.path_parameters["item_id"] = existing_id  # reach stored items too
        response = case.call(timeout=10)
        seen.add(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

    check()


async def test_no_input_the_openapi_document_allows_makes_a_5xx(tmp_path: Path) -> None:
    root = tmp_path / "fuzzed"
    await asyncio.to_thread(generate, root)
    sidecar = await start_sidecar(
        tmp_path / "sidecar",
        app_id="fuzzed",
        resources=[
            component("statestore", "state.sqlite", {"connectionString": tmp_path / "s.db"}),
            component("pubsub", "pubsub.in-memory"),
        ],
    )
    try:
        async with uvicorn_app(root, sidecar) as url, httpx.AsyncClient(base_url=url) as client:
            created = await client.post("/exercises", json={"name": "seed"})
            assert created.status_code == 201
            failures, seen = await asyncio.to_thread(fuzz, url, created.json()["id"])
            assert failures == []
            # Every operation was exercised, and reached past validation somewhere.
            assert len(seen) == 6, seen
            assert {200, 422} <= seen["GET /exercises"], seen
            assert 201 in seen["POST /exercises"], seen
            assert 404 in seen["GET /exercises/{item_id}"], seen
            assert 200 in seen["GET /exercises/{item_id}"], seen

            # The service is still healthy and its data readable after the barrage.
            assert (await client.get("/exercises", params={"limit": 100})).status_code == 200
    finally:
        await sidecar.stop()


@pytest.fixture(autouse=True)
def _no_hypothesis_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # hypothesis writes .hypothesis/ in the working directory

"""Each kind, freshly generated, comes up under ``daprforge run`` with its own dapr.yaml and
local components (SQLite state, in-memory pub/sub, env secrets) and serves a real request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import httpx
import pytest
from typer.testing import CliRunner

from daprforge.cli import app
from daprforge.launch import free_port
from tests.generated.conftest import child_env


def _ai(client: httpx.Client) -> None:
    answer = client.post("/process", json={"prompt": "Explain Python lists"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["provider"] == "offline"
    assert "Lists" in answer.json()["response"]  # the offline tutor's explanation


def _crud(client: httpx.Client) -> None:
    created = client.post("/items", json={"name": "First"})
    assert created.status_code == 201, created.text
    url, etag = created.headers["location"], created.headers["etag"]
    updated = client.put(url, json={"name": "Second"}, headers={"If-Match": etag})
    assert updated.status_code == 200, updated.text
    assert client.get(url).json()["name"] == "Second"


def _events(client: httpx.Client) -> None:
    assert client.get("/stats").json()["totals"]["events"] == 0
    topics = {entry["topic"] for entry in client.get("/dapr/subscribe").json()}
    assert "learning-events" in topics


def _code(client: httpx.Client) -> None:
    result = client.post("/execute", json={"code": "print(6 * 7)"})
    assert result.status_code == 200, result.text
    assert result.json()["stdout"] == "42\n"


REQUESTS: dict[str, Callable[[httpx.Client], None]] = {
    "ai-agent": _ai,
    "crud-api": _crud,
    "event-processor": _events,
    "code-executor": _code,
}


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_daprforge_run_serves_the_generated_project(kind: str, tmp_path: Path) -> None:
    port = free_port()
    root = tmp_path / "svc"
    result = CliRunner().invoke(
        app, ["new", kind, "svc", "--dir", str(root), "--port", str(port), "--defaults"]
    )
    assert result.exit_code == 0, result.output
    log = (tmp_path / "run.log").open("w+")
    env = {**child_env(), "DAPRFORGE_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [sys.executable, "-m", "daprforge", "run", "--grace-period", "5"],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            _wait_ready(client, process, log)
            REQUESTS[kind](client)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0, _tail(log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    assert (root / ".data" / "state.db").exists()  # the local SQLite state store was used


def _wait_ready(client: httpx.Client, process: subprocess.Popen[bytes], log: TextIO) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, _tail(log)
        try:
            if client.get("/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the app never became ready:\n{_tail(log)}")


def _tail(log: TextIO) -> str:
    log.flush()
    log.seek(0)
    return "".join(log.read().splitlines(keepends=True)[-40:])

"""App processes for the pub/sub and invocation tests: the scriptable recorder app
(``apps/recorder.py``) and helpers to read what it recorded.

Like ``_support``, nothing here imports daprforge: the apps are plain HTTP servers, and a
sidecar (ours or daprd) talks to them over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._support import STOP_TIMEOUT, free_port

APPS = Path(__file__).parent / "apps"
APP_READY_TIMEOUT = 20.0


@dataclass(frozen=True)
class Record:
    """One request the app received."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    time: float

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            pytest.fail(f"{self.method} {self.path}: body is not JSON: {self.body!r}")

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Record:
        return cls(
            method=raw["method"],
            path=raw["path"],
            query=raw["query"],
            headers=tuple((k, v) for k, v in raw["headers"]),
            body=base64.b64decode(raw["body"]),
            time=float(raw["time"]),
        )


@dataclass
class AppProcess:
    """A running app process and a client for its control endpoints."""

    proc: asyncio.subprocess.Process
    port: int
    log_path: Path
    cmd: list[str]
    client: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10.0)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_ready(self, path: str = "/__recorder/health") -> None:
        deadline = time.monotonic() + APP_READY_TIMEOUT
        while True:
            if self.proc.returncode is not None:
                pytest.fail(
                    f"app exited with {self.proc.returncode}\ncommand: {self.cmd}\n{self.log()}",
                    pytrace=False,
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await self.client.get(path, timeout=2.0)).status_code < 500:
                    return
            if time.monotonic() > deadline:
                await self.stop()
                pytest.fail(f"app not ready after {APP_READY_TIMEOUT}s\n{self.log()}", False)
            await asyncio.sleep(0.05)

    async def records(self, path: str | None = None) -> list[Record]:
        params = {"path": path} if path is not None else None
        resp = await self.client.get("/__recorder/records", params=params)
        resp.raise_for_status()
        return [Record.parse(r) for r in resp.json()]

    async def wait_records(
        self, path: str, count: int = 1, limit: float = 10.0, *, what: str = ""
    ) -> list[Record]:
        """Wait until ``path`` got at least ``count`` requests; returns all of them."""
        deadline = time.monotonic() + limit
        while True:
            found = await self.records(path)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{path}: {len(found)} request(s) after {limit}s, expected {count}"
                    f"{' (' + what + ')' if what else ''}",
                    pytrace=False,
                )
            await asyncio.sleep(0.05)

    async def script(self, scripts: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        resp = await self.client.post("/__recorder/script", json=dict(scripts))
        resp.raise_for_status()

    async def stop(self, limit: float = STOP_TIMEOUT) -> None:
        await self.client.aclose()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), limit)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


async def spawn_app(
    tmp: Path,
    cmd: Sequence[str],
    *,
    port: int,
    name: str,
    env: Mapping[str, str] | None = None,
) -> AppProcess:
    log_path = _prepare(tmp) / f"{name}-{port}.log"
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - a local file, opened once
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(tmp),
        )
    return AppProcess(proc=proc, port=port, log_path=log_path, cmd=list(cmd))


async def start_recorder(
    tmp: Path,
    *,
    subscriptions: Sequence[Mapping[str, Any]] = (),
    scripts: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    name: str = "recorder",
    port: int | None = None,
) -> AppProcess:
    """Start ``apps/recorder.py`` and wait until it answers."""
    port = port or free_port()
    config = _write_json(
        _prepare(tmp) / f"{name}-{port}.json",
        {"subscriptions": list(subscriptions), "scripts": dict(scripts or {})},
    )
    cmd = [sys.executable, str(APPS / "recorder.py"), str(port), str(config)]
    app = await spawn_app(tmp, cmd, port=port, name=name)
    await app.wait_ready()
    return app


def _prepare(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


async def wait_quiet(seconds: float) -> None:
    """Let redeliveries that must not happen have their chance to happen."""
    await asyncio.sleep(seconds)

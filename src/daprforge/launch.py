"""Start a ``daprforge sidecar`` process on a free port and wait until it serves.

Used by the demo, the test fixtures and the runner. It talks to the sidecar only through
its command line and HTTP API, never by importing it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx


class SidecarStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SidecarProcess:
    """``async with SidecarProcess("my-app") as sidecar:`` then use ``sidecar.url``."""

    def __init__(
        self,
        app_id: str,
        *,
        resources_paths: Sequence[Path] = (),
        app_port: int | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        log_file: Path | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        self.app_id = app_id
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.resources_paths = list(resources_paths)
        self.app_port = app_port
        self.env = {**os.environ, **(env or {})}
        self.extra_args = list(extra_args)
        # A file, not a pipe: a pipe nobody reads fills up and stalls a chatty sidecar.
        self.log_file = log_file or Path(tempfile.mkdtemp(prefix="daprforge-")) / "sidecar.log"
        self.ready_timeout = ready_timeout
        self.process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "daprforge", "sidecar", "--app-id", self.app_id]
        command += ["--dapr-http-port", str(self.port)]
        for path in self.resources_paths:
            command += ["--resources-path", str(path)]
        if self.app_port is not None:
            command += ["--app-port", str(self.app_port)]
        return command + self.extra_args

    async def start(self) -> None:
        output = await asyncio.to_thread(self.log_file.open, "ab")
        with output:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(), env=self.env, stdout=output, stderr=asyncio.subprocess.STDOUT
            )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise SidecarStartError(
                        f"sidecar exited with code {self.process.returncode}:\n"
                        + await asyncio.to_thread(self.output)
                    )
                try:
                    response = await client.get(f"{self.url}/v1.0/healthz/outbound")
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 204:
                    return
                await asyncio.sleep(0.05)
        await self.stop()
        raise SidecarStartError(
            f"sidecar not ready after {self.ready_timeout:.0f}s:\n"
            + await asyncio.to_thread(self.output)
        )

    def output(self) -> str:
        """Everything the process has printed so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
        process = self.process
        if process is None or process.returncode is not None:
            return process.returncode if process else None
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()
        return process.returncode

    async def __aenter__(self) -> SidecarProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

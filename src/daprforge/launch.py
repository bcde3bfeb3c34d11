"""Start a ``daprforge sidecar`` process on a free port and wait until it serves.

Used by the demo, the test fixtures and the runner. It talks to the sidecar only through
its command line and HTTP API, never by importing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx


class SidecarStartError(RuntimeError):
    pass


def free_port() -> int:
    """A port nothing listens on, chosen outside the kernel's ephemeral range. A port the
    kernel hands out (``bind(0)``) is in that range, so an outgoing connection can take it
    before our server binds it, and so can a client polling it before the server listens
    (a TCP connection to a closed local port can connect to itself)."""
    low, high = _ephemeral_ports()
    for _ in range(200):
        port = random.randint(10_000, 65_535)
        if low <= port <= high:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


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
        cwd: Path | None = None,
        capture_output: bool = False,
        new_session: bool = False,
    ) -> None:
        """``capture_output=True``: stdout and stderr go to one pipe, ``process.stdout``,
        which the caller must read continuously (no log file is written). ``new_session=True``:
        the process leads its own session and process group, and ``stop()`` signals the
        whole group, so its children stop with it."""
        self.app_id = app_id
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.resources_paths = list(resources_paths)
        self.app_port = app_port
        self.env = {**os.environ, **(env or {})}
        self.extra_args = list(extra_args)
        self.cwd = cwd
        self.capture_output = capture_output
        self.new_session = new_session
        # A file, not a pipe, unless the caller reads the pipe itself (capture_output):
        # a pipe nobody reads fills up and stalls a chatty sidecar.
        self.log_file: Path | None = None
        if not capture_output:
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
        await self.spawn()
        await self.wait_ready()

    async def spawn(self) -> asyncio.subprocess.Process:
        """Start the process without waiting for it to serve."""
        if self.log_file is None:
            self.process = await self._exec(asyncio.subprocess.PIPE)
        else:
            output = await asyncio.to_thread(self.log_file.open, "ab")
            with output:
                self.process = await self._exec(output)
        return self.process

    async def _exec(self, stdout: Any) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.command(),
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL if self.new_session else None,
            stdout=stdout,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=self.new_session,
        )

    async def wait_ready(self) -> None:
        """Poll ``/v1.0/healthz/outbound`` until 204; raise SidecarStartError on exit/timeout."""
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
        """Everything the process has printed so far ("" when the caller reads the pipe)."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
        process = self.process
        if process is None or process.returncode is not None:
            return process.returncode if process else None
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await process.wait()
        return process.returncode

    def _signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            if self.new_session:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)

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

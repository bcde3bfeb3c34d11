"""Child processes of a run: spawned in their own session (so a signal reaches their whole
process group, grandchildren included), their output read continuously and stopped with
SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from rich.text import Text

from daprforge.launch import SidecarProcess
from daprforge.runner.output import Output, Source
from daprforge.runner.plan import AppPlan

TAIL_LINES = 50
_CHUNK = 64 * 1024
_LONGEST_LINE = 64 * 1024  # a longer line without a newline is printed in pieces


class DaprdProcess(SidecarProcess):
    """The real daprd, started and awaited like our sidecar (same readiness probe)."""

    def __init__(self, daprd: str, plan: AppPlan, *, ready_timeout: float) -> None:
        super().__init__(
            plan.app_id,
            port=plan.dapr_http_port,
            env=plan.daprd_env(os.environ),
            cwd=plan.app.app_dir,
            capture_output=True,
            new_session=True,
            ready_timeout=ready_timeout,
        )
        self.argv = [daprd, *plan.daprd_args()]

    def command(self) -> list[str]:
        return list(self.argv)


def make_sidecar(plan: AppPlan, daprd: str | None, ready_timeout: float) -> SidecarProcess:
    """The sidecar for one app: ``daprforge sidecar``, or daprd when ``daprd`` is its path.
    Runs in the app's folder, in its own session, with its output on a pipe for us."""
    if daprd is not None:
        return DaprdProcess(daprd, plan, ready_timeout=ready_timeout)
    return SidecarProcess(
        plan.app_id,
        port=plan.dapr_http_port,
        resources_paths=plan.resources_paths,
        app_port=plan.app.app_port,
        extra_args=plan.sidecar_args(),
        cwd=plan.app.app_dir,
        capture_output=True,
        new_session=True,
        ready_timeout=ready_timeout,
    )


async def spawn(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """Exec ``argv`` directly (no shell) as the leader of a new session."""
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


class ManagedProcess:
    """A running child: its output pumped to the terminal/log file, the last lines kept."""

    def __init__(
        self,
        app_id: str,
        source: Source,
        process: asyncio.subprocess.Process,
        output: Output,
        *,
        console: bool,
        log_file: TextIO | None,
    ) -> None:
        self.app_id = app_id
        self.source = source
        self.process = process
        self.output = output
        self.console = console
        self.log_file = log_file
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.stopping = False
        self._pump = asyncio.create_task(self._pump_output(), name=f"pump {app_id} {source}")

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def last_lines(self, count: int = 20) -> list[str]:
        return list(self.tail)[-count:]

    async def wait(self) -> int:
        """Wait for the process to exit and (briefly) for its last output to be read."""
        code = await self.process.wait()
        await self.drained(1.0)
        return code

    async def drained(self, limit: float) -> None:
        """Wait until the pipe is at EOF; a grandchild holding it open does not block us."""
        await asyncio.wait({self._pump}, timeout=limit)

    async def stop(self, grace: float, force: asyncio.Event | None = None) -> None:
        """SIGTERM to the process group; SIGKILL to it after ``grace`` seconds (or at once
        when ``force`` is set) if the leader or any other member is still running."""
        self.stopping = True
        group = self.process.pid  # leader of its own session, so pgid == pid
        # Once the leader and all its children are gone, the number is not signalled again:
        # it could belong to a new process by now (a pgid is not reused while a member lives).
        if self.process.returncode is None or await _group_alive(group):
            await self._terminate_group(group, grace, force)
        await self.drained(0.5)
        if not self._pump.done():  # something outside the group still holds the pipe
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def _terminate_group(self, group: int, grace: float, force: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        signal_group(group, signal.SIGTERM)
        deadline = loop.time() + grace
        while loop.time() < deadline and not (force is not None and force.is_set()):
            if self.process.returncode is not None and not await _group_alive(group):
                return
            await asyncio.sleep(0.05)
        if self.process.returncode is None or await _group_alive(group):
            signal_group(group, signal.SIGKILL)
        await self.process.wait()
        for _ in range(50):  # SIGKILL is not instant for the rest of the group
            if not await _group_alive(group):
                return
            await asyncio.sleep(0.02)

    async def _pump_output(self) -> None:
        stream = self.process.stdout
        if stream is None:  # pragma: no cover - always a pipe here
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while chunk := await stream.read(_CHUNK):
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                self._emit(line)
            while len(pending) > _LONGEST_LINE:
                self._emit(pending[:_LONGEST_LINE])
                pending = pending[_LONGEST_LINE:]
        pending += decoder.decode(b"", final=True)
        if pending:
            self._emit(pending)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        self.tail.append(Text.from_ansi(line).plain if "\x1b" in line else line)
        self.output.line(self.app_id, self.source, line, console=self.console, file=self.log_file)


def signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


async def _group_alive(group: int) -> bool:
    return await asyncio.to_thread(group_alive, group)


def group_alive(group: int) -> bool:
    """Is any process of the group still running? Zombies do not count: in a container whose
    init does not reap, a killed grandchild can stay a zombie forever."""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: ask the kernel (zombies count then)
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == group and fields[0] != b"Z":
            return True
    return False

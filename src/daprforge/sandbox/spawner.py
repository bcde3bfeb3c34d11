"""A small process per slot that starts the slot's sandboxes, so they are born in its cgroups.

Moving a process into a cgroup v1 hierarchy waits for an RCU grace period (several
milliseconds, more on a busy host): the bulk of a trivial run's overhead. A child inherits
its parent's cgroups for free, so each slot keeps one spawner inside its cgroups; the
supervisor hands it the command and the descriptors (``SCM_RIGHTS`` over a socketpair), the
spawner ``posix_spawn``s bwrap (vfork-fast), reports its exit status, and kills it when
asked. Without a cgroup pool the spawners are the same, just not in a cgroup.

The spawner runs outside the sandbox, as the service's user, and never reads anything the
sandbox produces. It exits (killing its child; bwrap's ``--die-with-parent`` takes the rest)
when the service closes the socket or dies.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Sequence

SOURCE = r"""
def _spawner():
    import fcntl, json, os, select, signal, socket, sys
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    for fd in sys.argv[2].split(",") if sys.argv[2] else ():
        os.write(int(fd), b"0")
        os.close(int(fd))
    child = pidfd = None
    while True:
        ready = select.select([sock] + ([pidfd] if pidfd is not None else []), [], [])[0]
        if pidfd is not None and pidfd in ready:
            status = os.waitpid(child, 0)[1]
            os.close(pidfd)
            child = pidfd = None
            try:
                sock.send(b"E" + str(os.waitstatus_to_exitcode(status)).encode())
            except OSError:  # the service is gone
                return
            continue
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 16, socket.MSG_CMSG_CLOEXEC)
        except ConnectionResetError:  # closed with a report of ours still unread
            message = b""
        if not message:
            if child is not None:
                os.kill(child, signal.SIGKILL)
            return
        if message[:1] == b"K":
            if child is not None:
                os.kill(child, signal.SIGKILL)
            continue
        request = json.loads(message[1:])
        # Out of the way of the target numbers (0-5) before any dup2.
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in fds]
        for fd in fds:
            os.close(fd)
        targets = request["targets"]
        actions = [(os.POSIX_SPAWN_DUP2, fd, to) for fd, to in zip(moved, targets)]
        argv, env = request["argv"], request["env"]
        try:
            child = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
            pidfd = os.pidfd_open(child)
            sock.send(b"P" + str(child).encode())
        except OSError as error:
            child = None
            sock.send(b"F" + str(error).encode())
        for fd in moved:
            os.close(fd)
_spawner()
"""


class SpawnerGone(RuntimeError):
    """The spawner process is not there any more (killed, crashed)."""


class Spawner:
    """The service's side of one spawner."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.sock = sock

    @classmethod
    def start(cls, python: str, cgroup_fds: Sequence[int]) -> Spawner:
        """Blocking (process start): call it from a thread."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen(
                [
                    python,
                    "-I",
                    "-S",
                    "-B",
                    "-c",
                    SOURCE,
                    str(theirs.fileno()),
                    ",".join(str(fd) for fd in cgroup_fds),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={},
                pass_fds=(theirs.fileno(), *cgroup_fds),
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(process, ours)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.sock.fileno() != -1 and self.process.poll() is None

    async def spawn(
        self, argv: Sequence[str], env: dict[str, str], fds: Sequence[tuple[int, int]]
    ) -> int:
        """Start ``argv`` with each ``(fd, target)`` at ``target``; returns its pid."""
        message = (
            b"R"
            + json.dumps(
                {"argv": list(argv), "env": env, "targets": [target for _, target in fds]}
            ).encode()
        )
        try:
            socket.send_fds(self.sock, [message], [fd for fd, _ in fds])
        except OSError as error:
            raise SpawnerGone(str(error)) from error
        reply = await self._receive()
        if reply[:1] == b"P":
            return int(reply[1:])
        raise OSError(f"the sandbox could not be started: {reply[1:].decode(errors='replace')}")

    async def wait(self) -> int:
        """The exit status of the started process (negative: the signal that ended it)."""
        reply = await self._receive()
        if reply[:1] != b"E":
            raise SpawnerGone(f"unexpected message {reply[:20]!r}")
        return int(reply[1:])

    def kill(self) -> None:
        try:
            self.sock.send(b"K")
        except OSError as error:
            raise SpawnerGone(str(error)) from error

    async def _receive(self) -> bytes:
        loop = asyncio.get_running_loop()
        reply = await loop.sock_recv(self.sock, 4096)
        if not reply:
            raise SpawnerGone("the spawner closed its socket")
        return reply

    def abandon(self) -> None:
        """Give up on this spawner (its conversation is out of step, e.g. after a cancelled
        request): kill it, and its run with it (``--die-with-parent``). The next run starts a
        new one; :meth:`close` or the next poll reaps it."""
        self.sock.close()
        self.process.kill()

    def close(self) -> None:
        """Blocking (waits for the process): call it from a thread."""
        self.sock.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

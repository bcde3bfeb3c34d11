"""The bwrap command line of one run.

Every namespace is new (user, mount, PID, IPC, UTS, network, cgroup); the root is an empty
tmpfs holding read-only binds of the Python runtime only, then remounted read-only; /tmp
and /dev/shm are fresh size-capped tmpfs mounts that die with the run; /proc and /dev are
fresh; the environment is cleared; the process gets its own session (no TIOCSTI on the
service's terminal), dies with its parent, keeps no capabilities, cannot create user
namespaces again, and starts under the seccomp filter.
"""

from __future__ import annotations

from dataclasses import dataclass

from daprforge.sandbox.bootstrap import SOURCE
from daprforge.sandbox.limits import Limits
from daprforge.sandbox.rootfs import PythonRuntime

# The unprivileged ids inside the sandbox ("nobody").
SANDBOX_ID = "65534"
WORK_DIR = "/tmp"
# The JSON value a `call` may return, at most (bytes).
VALUE_CAP = 1024 * 1024
# The orders message, at most (bytes): the bootstrap reads no more.
ORDERS_CAP = 64 * 1024


@dataclass(frozen=True)
class Descriptors:
    """Descriptor numbers the run inherits (same numbers inside)."""

    control: int
    channel: int
    seccomp: int | None


def python_argv(runtime: PythonRuntime, fds: Descriptors) -> list[str]:
    return [
        runtime.executable,
        "-I",  # no PYTHON* variables, no user site, no script directory on sys.path
        "-S",  # no site: nothing from site-packages, no .pth hooks
        "-B",  # the root is read-only anyway; do not even try to write bytecode
        "-c",
        SOURCE,
        str(fds.control),
        str(fds.channel),
    ]


def orders(limits: Limits, call: str | None) -> bytes:
    """What a started sandbox is told when its run begins (the bootstrap's format): its
    rlimits, then the expression to evaluate, if any. The program and stdin travel beside
    it as sealed memfds."""
    numbers = ",".join(
        str(number)
        for number in (
            max(1, round(limits.cpu_seconds + 0.499)),
            # Address space: room for the interpreter's own mappings and thread stacks on top
            # of the memory limit; the cgroup is what holds the real line.
            (limits.memory_mb * 2 + 64) * 1024 * 1024,
            limits.processes,
            limits.file_size_kb * 1024,
            limits.open_files,
            VALUE_CAP,
        )
    )
    # The numbers hold no NUL: the call is everything after the first one.
    message = f"{numbers}\0{call or ''}".encode("utf-8", "surrogatepass")
    if len(message) > ORDERS_CAP:
        raise ValueError(f"the call expression is too long (orders over {ORDERS_CAP} bytes)")
    return message


def environment(runtime: PythonRuntime) -> dict[str, str]:
    return {
        "PATH": f"{runtime.prefix}/bin",
        "HOME": WORK_DIR,
        "TMPDIR": WORK_DIR,
        "LANG": "C.UTF-8",
        # One malloc arena: threads do not each reserve 64 MiB of address space.
        "MALLOC_ARENA_MAX": "1",
    }


def bwrap_argv(bwrap: str, runtime: PythonRuntime, fds: Descriptors, tmp_mb: int) -> list[str]:
    argv = [
        bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--unshare-cgroup",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        SANDBOX_ID,
        "--gid",
        SANDBOX_ID,
        "--hostname",
        "sandbox",
        "--clearenv",
    ]
    for name, value in environment(runtime).items():
        argv += ["--setenv", name, value]
    for directory in runtime.binds:
        argv += ["--ro-bind", directory, directory]
    for path in runtime.files:
        argv += ["--ro-bind", path, path]
    for hidden in runtime.hidden:
        argv += ["--tmpfs", hidden, "--remount-ro", hidden]
    for target, path in runtime.symlinks:
        argv += ["--symlink", target, path]
    tmp_bytes = str(tmp_mb * 1024 * 1024)
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        tmp_bytes,
        "--tmpfs",
        WORK_DIR,
        "--perms",
        "1777",
        "--size",
        tmp_bytes,
        "--tmpfs",
        "/dev/shm",
        "--remount-ro",
        "/",
        "--chdir",
        WORK_DIR,
    ]
    if fds.seccomp is not None:
        argv += ["--seccomp", str(fds.seccomp)]
    return [*argv, "--", *python_argv(runtime, fds)]

"""What came of one run, and how the supervisor names it."""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass
from typing import Literal, get_args

Status = Literal[
    "ok", "runtime_error", "timeout", "memory_limit", "output_limit", "killed", "internal_error"
]
STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True)
class Execution:
    status: Status
    exit_code: int | None
    """The program's exit code; None when a signal ended it."""
    signal: int | None
    stdout: str
    """Decoded as UTF-8, invalid bytes replaced: any byte sequence is safe to return."""
    stderr: str
    truncated: bool
    """stdout or stderr was cut at the output limit."""
    duration_ms: float
    cpu_ms: int | None
    """CPU time of the whole sandbox (None where no cgroup measures it)."""
    memory_kb: int | None
    """Peak memory of the whole sandbox (None where no cgroup measures it)."""
    exception: str | None = None
    """Name of the uncaught exception, as the sandbox reported it (an observation)."""
    value: bytes | None = None
    """JSON of a ``call``'s value, as the sandbox reported it (an observation)."""


@dataclass(frozen=True)
class Evidence:
    """What the supervisor saw, measured outside the sandbox (except ``exception``)."""

    started: bool
    returncode: int | None
    output_overflow: bool
    wall_expired: bool
    cpu_exceeded: bool
    oom_killed: bool
    exception: str | None


def split_returncode(returncode: int | None) -> tuple[int | None, int | None]:
    """(exit code, signal). bwrap exits with 128+N when its child died of signal N; a
    negative code is bwrap itself killed (by us)."""
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    if 128 < returncode <= 128 + 64:
        return None, returncode - 128
    return returncode, None


def classify(evidence: Evidence) -> Status:
    """Limits first (they explain a kill), then how the program ended."""
    if not evidence.started:
        return "internal_error"
    if evidence.output_overflow:
        return "output_limit"
    if evidence.wall_expired or evidence.cpu_exceeded:
        return "timeout"
    if evidence.returncode is None:
        return "killed"  # torn down with no exit status (the service shutting down)
    exit_code, signal = split_returncode(evidence.returncode)
    if signal == signals.SIGXCPU:
        return "timeout"
    if evidence.oom_killed or evidence.exception == "MemoryError":
        return "memory_limit"
    if exit_code == 0:
        return "ok"
    if signal == signals.SIGKILL:
        return "killed"
    return "runtime_error"

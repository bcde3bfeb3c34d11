"""How the supervisor names what it saw (pure logic)."""

from __future__ import annotations

import signal

import pytest

from daprforge.sandbox.verdicts import Evidence, classify, split_returncode

BASE = Evidence(
    started=True,
    returncode=0,
    output_overflow=False,
    wall_expired=False,
    cpu_exceeded=False,
    oom_killed=False,
    exception=None,
)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, "ok"),
        ({"started": False, "returncode": 1}, "internal_error"),
        ({"output_overflow": True, "returncode": -9}, "output_limit"),
        ({"wall_expired": True, "returncode": -9}, "timeout"),
        ({"cpu_exceeded": True, "returncode": 128 + signal.SIGKILL}, "timeout"),
        ({"returncode": 128 + signal.SIGXCPU}, "timeout"),
        ({"oom_killed": True, "returncode": 128 + signal.SIGKILL}, "memory_limit"),
        ({"exception": "MemoryError", "returncode": 1}, "memory_limit"),
        ({"returncode": 128 + signal.SIGKILL}, "killed"),
        ({"returncode": None}, "killed"),
        ({"returncode": 1, "exception": "ValueError"}, "runtime_error"),
        ({"returncode": 128 + signal.SIGSEGV}, "runtime_error"),
        # Limits explain a kill before anything else does.
        ({"output_overflow": True, "wall_expired": True, "oom_killed": True}, "output_limit"),
    ],
)
def test_classify(changes: dict[str, object], status: str) -> None:
    assert classify(Evidence(**{**BASE.__dict__, **changes})) == status  # type: ignore[arg-type]


def test_split_returncode() -> None:
    assert split_returncode(0) == (0, None)
    assert split_returncode(3) == (3, None)
    assert split_returncode(128 + 11) == (None, 11)
    assert split_returncode(-9) == (None, 9)
    assert split_returncode(None) == (None, None)

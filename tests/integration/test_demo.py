"""`make demo` runs `daprforge demo`: it must pass end to end, Redis step included."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.redis
def test_demo_runs_every_step() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daprforge", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 10 steps returned the status" in result.stdout
    assert "lessons=['loops']" in result.stdout
    assert "source=learner-api" in result.stdout

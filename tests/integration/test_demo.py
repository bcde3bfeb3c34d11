"""`make demo` runs `daprforge demo`: it must pass end to end, Redis step included (the
subprocess timeout only keeps a hung demo from hanging the suite)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.redis
def test_demo_runs_every_step() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daprforge", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "COLUMNS": "160",
            "PATH": "/usr/bin:/bin",
            # The demo drops these: the generated ai-agent must answer offline all the same.
            "OPENAI_API_KEY": "sk-not-used",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        },
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "All 18 steps returned the expected status and answer." in out
    # The two apps with Redis pub/sub.
    assert "lessons=['loops']" in out
    assert "source=learner-api" in out
    # The generated services, run together by one `daprforge run`.
    assert "daprforge run: 4 apps ready in" in out
    assert "offline=True" in out
    assert re.search(r"crud-api: update, stale ETag .* 412 .* Precondition Failed", out), out
    assert "events=1  completed=1" in out
    assert "stdout=42  status=ok" in out
    assert re.search(r"daprforge run stopped in [\d.]+s \(exit code 0\)", out), out
    removed = re.search(r"^removed (\S+)$", out, re.MULTILINE)
    assert removed is not None, out
    assert not Path(removed.group(1)).exists()

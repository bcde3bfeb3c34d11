"""A real sandbox per test (bwrap, seccomp, the cgroup pool of this machine), checked empty
and removed afterwards: no process and no cgroup outlives a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from daprforge.sandbox import Limits, Sandbox

# Small limits keep the battery quick; each test may ask for others. The wall limit is
# generous: on a busy machine a CPU-bound run gets its CPU second late.
LIMITS = Limits(cpu_seconds=1.0, wall_seconds=8.0, memory_mb=64, output_kb=16, processes=16)


def _exists(path: Path) -> bool:
    return path.exists()


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await Sandbox.start(
        slots=2, queue=4, ceiling=Limits(wall_seconds=10, cpu_seconds=10, output_kb=2048)
    )
    assert not box.insecure
    parents = list(box._pool.parents) if box._pool else []
    try:
        yield box
        assert await box.leftovers() == [], "a process outlived its run"
    finally:
        await box.aclose()
    assert not any(map(_exists, parents)), "a cgroup was left behind"

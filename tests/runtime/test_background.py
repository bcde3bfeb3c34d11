"""BackgroundTasks: work outlives its request, and shutdown waits for it (within a budget)."""

from __future__ import annotations

import asyncio

from daprforge.service import BackgroundTasks


async def test_drain_waits_for_spawned_work_and_gives_up_after_its_budget() -> None:
    background = BackgroundTasks()
    done: list[str] = []

    async def work(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        done.append(name)

    quick = background.spawn(work("quick", 0.01))
    slow = background.spawn(work("slow", 10))
    await background.drain(timeout=0.2)
    assert done == ["quick"]
    assert quick.done()
    assert not slow.done()  # past the budget: left running, not awaited
    slow.cancel()

"""Ordinary programs and an exercise: what learners normally send."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from daprforge.sandbox import Limits, Sandbox
from daprforge.sandbox.validate import Case, normalize_output, same_json, validate

from .conftest import LIMITS


async def test_stdin_to_stdout(sandbox: Sandbox) -> None:
    code = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper())\n"
    result = await sandbox.run(code, b"ada\nlovelace\n", LIMITS)
    assert (result.status, result.stdout, result.exit_code) == ("ok", "ADA\nLOVELACE\n", 0)
    assert result.cpu_ms is not None
    assert result.memory_kb is not None


async def test_an_exception_gives_a_clean_traceback(sandbox: Sandbox) -> None:
    code = "def divide(a, b):\n    return a / b\n\nprint('before')\ndivide(1, 0)\n"
    result = await sandbox.run(code, limits=LIMITS)
    assert (result.status, result.exit_code, result.stdout) == ("runtime_error", 1, "before\n")
    assert result.stderr.splitlines() == [
        "Traceback (most recent call last):",
        '  File "/tmp/main.py", line 5, in <module>',
        "    divide(1, 0)",
        '  File "/tmp/main.py", line 2, in divide',
        "    return a / b",
        "           ~~^~~",
        "ZeroDivisionError: division by zero",
    ]


async def test_a_syntax_error(sandbox: Sandbox) -> None:
    result = await sandbox.run("print(1\n", limits=LIMITS)
    assert result.status == "runtime_error"
    assert "SyntaxError" in result.stderr
    assert result.exception == "SyntaxError"


async def test_sys_exit_code(sandbox: Sandbox) -> None:
    result = await sandbox.run("import sys\nsys.exit(3)\n", limits=LIMITS)
    assert (result.status, result.exit_code, result.signal) == ("runtime_error", 3, None)


async def test_unicode_in_and_out(sandbox: Sandbox) -> None:
    result = await sandbox.run("print(input()[::-1], '✓ 日本')", "héllo".encode(), LIMITS)
    assert (result.status, result.stdout) == ("ok", "olléh ✓ 日本\n")


async def test_large_but_allowed_output(sandbox: Sandbox) -> None:
    limits = replace(LIMITS, output_kb=1024)
    result = await sandbox.run("print('x' * (1000 * 1000 - 1))", limits=limits)
    assert (result.status, result.truncated, len(result.stdout)) == ("ok", False, 1000 * 1000)


async def test_limits_are_capped_by_the_ceiling(sandbox: Sandbox) -> None:
    asked = Limits(cpu_seconds=1000, wall_seconds=1000, memory_mb=10**6)
    capped = asked.capped(sandbox.ceiling)
    assert (capped.cpu_seconds, capped.wall_seconds) == (10, 10)
    assert capped.memory_mb == sandbox.ceiling.memory_mb


EXERCISE = (
    "def add(a, b):\n"
    "    return a + b\n"
    "\n"
    "def slow():\n"
    "    while True:\n"
    "        pass\n"
    "\n"
    "if __name__ == '__main__':\n"
    "    import sys\n"
    "    data = sys.stdin.read().split()\n"
    "    if data:\n"
    "        print(add(int(data[0]), int(data[1])))\n"
)


async def test_an_exercise_with_passing_failing_timing_out_and_hidden_tests(
    sandbox: Sandbox,
) -> None:
    cases = [
        Case("adds", expected=5, call="add(2, 3)"),
        Case("stdin", expected="7  \n\n", stdin="3 4"),
        Case("wrong", expected=6, call="add(2, 3)"),
        Case("slow", expected=None, call="slow()", timeout=0.5),
        Case("hidden-pass", expected=[1, 2], call="add([1], [2])", hidden=True),
        Case("hidden-fail", expected="SECRET", call="add('a', 'b')", hidden=True),
    ]
    report = await validate(sandbox, EXERCISE, cases, LIMITS)
    summary = [(r.name, r.passed, r.status) for r in report.results]
    assert summary == [
        ("adds", True, "ok"),
        ("stdin", True, "ok"),
        ("wrong", False, "ok"),
        ("slow", False, "timeout"),
        ("hidden-pass", True, "ok"),
        ("hidden-fail", False, "ok"),
    ]
    assert (report.passed, report.total, report.score) == (3, 6, 0.5)
    assert report.graded  # failing and timing-out tests are grades, not sandbox failures
    wrong = report.results[2]
    assert (wrong.expected, wrong.actual) == (6, 5)
    for hidden in report.results[4:]:
        assert (hidden.expected, hidden.actual) == (None, None)


async def test_a_test_the_sandbox_could_not_run_leaves_the_exercise_ungraded() -> None:
    box = await Sandbox.start(slots=1, warm=False)
    try:
        box.runtime = replace(box.runtime, binds=(*box.runtime.binds, "/nonexistent/runtime"))
        report = await validate(box, "x = 1", [Case(name="x", call="x", expected=1)], LIMITS)
        assert report.results[0].status == "internal_error"
        assert not report.graded
    finally:
        await box.aclose()


def test_comparison_is_strict_about_json_types() -> None:
    assert same_json(2, 2.0)
    assert not same_json(True, 1)
    assert not same_json(None, 0)
    assert not same_json("1", 1)
    assert same_json({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]})
    assert not same_json([1, 2], [2, 1])
    assert normalize_output("a  \nb\n\n\n") == normalize_output("a\nb")


async def test_a_dead_spawner_is_replaced(sandbox: Sandbox) -> None:
    # Kill every slot's spawner (as the OOM killer or an operator might): the next runs
    # start new ones, and nothing of the old ones is left in the slots.
    for slot in sandbox._slots:
        slot.spawner.process.kill()
        await asyncio.to_thread(slot.spawner.process.wait)
    for _ in range(3):
        result = await sandbox.run("print('again')", limits=LIMITS)
        assert (result.status, result.stdout) == ("ok", "again\n")
    assert all(slot.spawner.process.poll() is None for slot in sandbox._slots)


async def test_a_cancelled_run_leaves_the_slot_usable(sandbox: Sandbox) -> None:
    # A client that goes away mid-run: the run is killed, the slots stay in step.
    for delay in (0.0, 0.001, 0.3):
        task = asyncio.ensure_future(sandbox.run("import time\ntime.sleep(30)", limits=LIMITS))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for _ in range(3):
        result = await sandbox.run("print('fine')", limits=LIMITS)
        assert (result.status, result.stdout) == ("ok", "fine\n")

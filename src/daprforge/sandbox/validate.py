"""Exercise validation: the learner's program against a list of tests, judged outside.

Each test is its own sandboxed run (a fresh interpreter: nothing one test does leaks into
the next). The sandbox only reports *observations*: the program's stdout for an ``stdin``
test, the JSON value of the ``call`` expression for a ``call`` test, read from the result
channel, never from stdout. Expected values never enter the sandbox, and the comparison
runs here, on plain JSON values: printing "PASS", exiting early, or returning an object
whose ``__eq__`` always says yes cannot pass a test (attack cases 31-33).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from daprforge.sandbox.limits import Limits
from daprforge.sandbox.supervisor import Sandbox, Slot
from daprforge.sandbox.verdicts import Status


@dataclass(frozen=True)
class Case:
    name: str
    expected: Any
    """For an ``stdin`` test, the expected stdout (str); for a ``call`` test, a JSON value."""
    stdin: str | None = None
    call: str | None = None
    """A Python expression evaluated after the program ran, in its namespace."""
    hidden: bool = False
    timeout: float | None = None
    """Wall-clock (and CPU) seconds for this test, capped by the run's limits."""


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    status: Status
    expected: Any
    actual: Any
    hidden: bool
    duration_ms: float


@dataclass(frozen=True)
class Report:
    passed: int
    total: int
    score: float
    results: list[CaseResult]

    @property
    def graded(self) -> bool:
        """False when a test could not run at all (``internal_error``: a failure of the
        sandbox, never of the program): the score then says nothing about the learner."""
        return all(result.status != "internal_error" for result in self.results)


def normalize_output(text: str) -> str:
    """Judge0's comparison: trailing spaces of each line and trailing blank lines ignored."""
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def same_json(left: Any, right: Any) -> bool:
    """Equality of plain JSON values, strict about types (``True`` is not ``1``), numbers
    compared by value (``2`` equals ``2.0``)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same_json, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_json(left[k], right[k]) for k in left)
    if left is None or right is None:
        return left is right
    return type(left) is type(right) is str and bool(left == right)


async def validate(
    sandbox: Sandbox,
    code: str,
    cases: Sequence[Case],
    limits: Limits | None = None,
    *,
    slot: Slot | None = None,
) -> Report:
    """Run every case (all of them: partial credit stays meaningful) in one reserved slot."""
    if slot is None:
        async with sandbox.reserve() as reserved:
            return await validate(sandbox, code, cases, limits, slot=reserved)
    base = limits or Limits()
    results = [await _one(sandbox, slot, code, case, base) for case in cases]
    passed = sum(result.passed for result in results)
    total = len(results)
    return Report(
        passed=passed,
        total=total,
        score=round(passed / total, 4) if total else 0.0,
        results=results,
    )


async def _one(sandbox: Sandbox, slot: Slot, code: str, case: Case, base: Limits) -> CaseResult:
    limits = base
    if case.timeout is not None:
        seconds = min(case.timeout, base.wall_seconds)
        limits = replace(base, wall_seconds=seconds, cpu_seconds=min(seconds, base.cpu_seconds))
    started = time.perf_counter()
    stdin = (case.stdin or "").encode("utf-8", "surrogatepass")
    execution = await sandbox.run(code, stdin, limits, call=case.call, slot=slot)
    actual: Any = None
    passed = False
    if case.call is not None:
        if execution.status == "ok" and execution.value is not None:
            try:
                actual = json.loads(execution.value)
            except (ValueError, RecursionError):
                actual = None  # not JSON the bootstrap wrote: a forged frame
            else:
                passed = same_json(actual, case.expected)
    else:
        actual = execution.stdout
        passed = (
            execution.status == "ok"
            and isinstance(case.expected, str)
            and normalize_output(actual) == normalize_output(case.expected)
        )
    return CaseResult(
        name=case.name,
        passed=passed,
        status=execution.status,
        expected=None if case.hidden else case.expected,
        actual=None if case.hidden else actual,
        hidden=case.hidden,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )

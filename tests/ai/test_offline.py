"""Offline mode's help for each tutoring role: real analysis, deterministic, never a run
of the learner's code."""

from __future__ import annotations

from pathlib import Path

import pytest

from daprforge.ai import offline_answer
from daprforge.ai.offline.concepts import CONCEPTS, find_concept
from daprforge.ai.offline.review import extract_code, lint, review_code, syntax_problem
from daprforge.ai.offline.triage import classify


def test_syntax_errors_come_from_python_itself() -> None:
    problem = syntax_problem("for item in items\n    print(item)\n")
    assert problem is not None
    assert (problem.line, problem.message) == (1, "expected ':'")
    assert "end with ':'" in problem.hint

    answer = review_code("x = (1, 2\nprint(x)\n")
    assert "does not compile" in answer
    assert "was never closed" in answer

    indented = syntax_problem("def f():\nreturn 1\n")
    assert indented is not None
    assert "Indentation" in indented.hint


def test_compile_only_errors_are_found() -> None:
    """Errors the parser accepts but the compiler refuses (return outside a function)."""
    problem = syntax_problem("return 5\n")
    assert problem is not None
    assert "outside function" in problem.message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import os\nprint(1)\n", "`os` is imported but never used"),
        ("def f(items=[]):\n    return items\n", "mutable default argument"),
        ("try:\n    x = 1\nexcept:\n    pass\n", "bare `except:`"),
        ("if value == None:\n    pass\n", "is None"),
        ("for i in range(len(xs)):\n    print(xs[i])\n", "enumerate"),
        ("def f():\n    unused = 1\n    return 2\n", "`unused` is assigned but never used"),
        ("list = [1, 2]\n", "hides the built-in `list`"),
        ("def f():\n    return 1\n    print('never')\n", "can never run"),
        ("while True:\n    print('x')\n", "never ends"),
        ("if flag == True:\n    pass\n", "== True"),
        ("x = 'a' * 200  # " + "y" * 100 + "\n", "characters long"),
    ],
)
def test_lint_findings(code: str, expected: str) -> None:
    assert any(expected in finding.message for finding in lint(code)), lint(code)


def test_code_too_deep_to_walk_is_answered_not_raised() -> None:
    code = "x = " + "-" * 600 + "1\n"  # compiles, but a recursive walk of its tree cannot
    assert "too deeply nested" in review_code(code)


def test_clean_code_has_no_findings() -> None:
    code = "def total(items):\n    return sum(items)\n\n\nprint(total([1, 2]))\n"
    assert lint(code) == []
    assert "found nothing to change" in review_code(code)


def test_reviewed_code_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit(3)\n"
    answer = offline_answer("code-review", f"```python\n{code}```")
    assert "compiles" in answer
    assert not marker.exists()


def test_code_is_found_in_fences_context_or_the_prompt() -> None:
    assert extract_code("see\n```python\nx = 1\n```\nthanks", None) == "x = 1\n"
    assert extract_code("review please", {"code": "y = 2"}) == "y = 2"
    assert extract_code("def f(x):\n    return x", None) == "def f(x):\n    return x"
    assert extract_code("What is a list?", None) is None


@pytest.mark.parametrize(
    ("text", "category", "line"),
    [
        (
            'Traceback (most recent call last):\n  File "main.py", line 7, in <module>\n'
            "    print(total)\nNameError: name 'total' is not defined",
            "runtime error (NameError)",
            7,
        ),
        ("I get IndexError: list index out of range", "runtime error (IndexError)", None),
        (
            "ModuleNotFoundError: No module named 'requests'",
            "environment (ModuleNotFoundError)",
            None,
        ),
        ("my program never stops, it runs forever", "logic", None),
        ("it prints 5 but I expected 6, wrong output", "logic", None),
        ("what is a dictionary", "concept gap", None),
        ("help", "unclear", None),
    ],
)
def test_triage_classifies(text: str, category: str, line: int | None) -> None:
    triage = classify(text)
    assert triage.category == category
    assert triage.line == line


def test_triage_compiles_code_without_an_error_message() -> None:
    triage = classify("why does this fail?", {"code": "if x > 1\n    y = 2\n"})
    assert triage.category == "syntax (SyntaxError)"
    assert triage.line == 1


def test_concepts_are_matched_by_their_words() -> None:
    assert find_concept("Explain list comprehensions") is not None
    assert find_concept("Explain list comprehensions").name == "List comprehensions"  # type: ignore[union-attr]
    assert find_concept("how does a for loop work").name == "For loops"  # type: ignore[union-attr]
    assert find_concept("good morning") is None
    for concept in CONCEPTS:  # every example is valid Python
        compile(concept.example, concept.name, "exec")


def test_each_role_answers_in_its_own_way() -> None:
    code = "```python\ndef f(x)\n    return x\n```"
    assert "does not compile" in offline_answer("code-review", code)
    assert "Category: syntax" in offline_answer("triage", code)
    assert offline_answer("concepts", "What are decorators?").count("Decorators") >= 1
    assert "Send the code" in offline_answer("code-review", "is my code ok?")
    assert "could not tell" in offline_answer("concepts", "hello there")
    for role in ("general", "triage", "concepts", "code-review"):
        answer = offline_answer(role, "Explain dictionaries")  # type: ignore[arg-type]
        assert answer.startswith("Offline help")
        assert answer == offline_answer(role, "Explain dictionaries")  # type: ignore[arg-type]


def test_general_picks_what_fits() -> None:
    assert "NameError" in offline_answer("general", "NameError: name 'x' is not defined")
    assert "compiles" in offline_answer("general", "```python\nx = 1\n```")
    assert "Dictionaries" in offline_answer("general", "Explain dictionaries")
    assert "Offline I can" in offline_answer("general", "hi")

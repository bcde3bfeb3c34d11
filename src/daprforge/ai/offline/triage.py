"""Offline triage: classify a learner's problem from the error message, the traceback and
the code, with rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daprforge.ai.offline.concepts import find_concept
from daprforge.ai.offline.review import extract_code, syntax_problem


@dataclass(frozen=True, slots=True)
class Triage:
    category: str
    problem: str
    cause: str
    next_step: str
    line: int | None = None

    def render(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return (
            f"Category: {self.category}\nProblem: {self.problem}{where}\n"
            f"Likely cause: {self.cause}\nNext step: {self.next_step}"
        )


# exception -> (category, likely cause, next step)
_EXCEPTIONS: dict[str, tuple[str, str, str]] = {
    "SyntaxError": ("syntax", "Python could not read the code: a missing ':', bracket or "
                    "quote, or a typo in a keyword.", "Look at the marked line and the line "
                    "before it."),
    "IndentationError": ("syntax", "The lines of a block do not start at the same column.",
                         "Indent each block with four spaces, consistently."),
    "TabError": ("syntax", "Tabs and spaces are mixed in the indentation.",
                 "Re-indent with spaces only."),
    "NameError": ("runtime error", "A name is used before it is defined, or it is misspelt.",
                  "Check the spelling and that the variable is assigned before that line."),
    "UnboundLocalError": ("runtime error", "A function assigns to a name and reads it before "
                          "the assignment.", "Pass the value in as a parameter instead."),
    "TypeError": ("runtime error", "An operation got a value of the wrong type (e.g. adding "
                  "a str and an int) or a function got the wrong number of arguments.",
                  "Print the type() of the values on that line."),
    "ValueError": ("runtime error", "The value has the right type but an unusable content, "
                   "e.g. int('abc').", "Check the input before converting it."),
    "IndexError": ("runtime error", "A position past the end of a list or string was used.",
                   "Remember indexes run from 0 to len(x) - 1."),
    "KeyError": ("runtime error", "A dict was asked for a key it does not have.",
                 "Use `key in d` or `d.get(key)` first."),
    "AttributeError": ("runtime error", "The object has no attribute or method of that name "
                       "(often None, or a typo).", "Check what the object is and its spelling."),
    "ZeroDivisionError": ("runtime error", "A division by zero.",
                          "Check the divisor before dividing."),
    "RecursionError": ("runtime error", "A recursive function never reaches its base case.",
                       "Check the base case and that each call gets closer to it."),
    "ModuleNotFoundError": ("environment", "The module is not installed or its name is "
                            "misspelt.", "Check the name, then install it with pip in the "
                            "environment you run."),
    "ImportError": ("environment", "The module exists but does not have that name.",
                    "Check the import line against the module's documentation."),
    "FileNotFoundError": ("environment", "The file path does not exist from where the "
                          "program runs.", "Print the working directory and the path."),
    "AssertionError": ("logic", "A check in the code or a test failed: the result is not "
                       "what was expected.", "Compare the expected and the actual values."),
}  # fmt: skip

_EXCEPTION = re.compile(r"\b([A-Z][A-Za-z]*(?:Error|Exception))\b(?::\s*(.*))?")
_LINE = re.compile(r"\bline (\d+)")
_SIGNS: tuple[tuple[str, tuple[str, str, str, str]], ...] = (
    (
        r"infinite loop|never (?:ends|stops)|hangs|freez|runs forever|stuck",
        ("logic", "The program does not finish.", "A loop whose condition never becomes false.",
         "Print the loop variable each time round and check it changes toward the end."),
    ),
    (
        r"wrong (?:answer|output|result)|expected .* but|instead of|incorrect|not what i",
        ("logic", "The program runs but gives the wrong result.", "The steps do not match "
         "the intent (an off-by-one, a wrong condition or operator).", "Work through a small "
         "input by hand and compare each step with a print()."),
    ),
    (
        r"pip |install|venv|virtual env|command not found|not recognized",
        ("environment", "The tools or packages are not set up.", "The package or Python is "
         "missing from the environment that runs the code.", "Check `python -m pip --version` "
         "and install into that environment."),
    ),
)  # fmt: skip


def classify(prompt: str, context: Mapping[str, Any] | None = None) -> Triage:
    text = prompt
    if context and isinstance(context.get("error"), str):
        text = f"{context['error']}\n{prompt}"
    matches = [m for m in _EXCEPTION.finditer(text) if m.group(1) in _EXCEPTIONS]
    if matches:
        last = matches[-1]  # a traceback's last line is the exception that ended it
        name = last.group(1)
        category, cause, step = _EXCEPTIONS[name]
        lines = _LINE.findall(text[: last.end()])
        detail = (last.group(2) or "").strip().splitlines()
        problem = f"{name}: {detail[0]}" if detail and detail[0] else name
        return Triage(f"{category} ({name})", problem, cause, step,
                      int(lines[-1]) if lines else None)  # fmt: skip
    code = extract_code(prompt, context)
    if code is not None:
        found = syntax_problem(code)
        if found is not None:
            _, cause, step = _EXCEPTIONS["SyntaxError"]
            return Triage("syntax (SyntaxError)", found.message, found.hint or cause, step,
                          found.line)  # fmt: skip
    lowered = text.lower()
    for pattern, (category, problem, cause, step) in _SIGNS:
        if re.search(pattern, lowered):
            return Triage(category, problem, cause, step)
    concept = find_concept(text)
    if concept is not None:
        return Triage(
            "concept gap",
            f"A question about {concept.name.lower()}.",
            f"Understanding how {concept.name.lower()} work.",
            f"Ask the concepts service about {concept.name.lower()}.",
        )
    return Triage(
        "unclear",
        "Not enough to classify the problem.",
        "No error message, code or symptom was recognised.",
        "Include the full error message (the traceback) and the code that produced it.",
    )

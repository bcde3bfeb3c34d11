"""Offline code review: Python's own compiler and a few simple lint checks.

The code is compiled, never run: ``compile()`` turns text into a code object and reports
the syntax errors Python itself would, and the checks walk the syntax tree.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_CODE_HINT = re.compile(
    r"^\s*(def |class |import |from \w+ import |for |while |if |print\(|return\b|\w+\s*=)",
    re.MULTILINE,
)
_SHADOWED = frozenset(
    {"list", "dict", "set", "str", "int", "float", "tuple", "sum", "max", "min", "len",
     "input", "id", "type", "range", "sorted", "map", "filter", "object", "next", "iter",
     "open", "format", "all", "any", "bytes", "hash", "vars", "dir", "print"}
)  # fmt: skip
MAX_LINE = 100


@dataclass(frozen=True, slots=True)
class Finding:
    line: int
    message: str


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    line: int
    column: int
    message: str
    text: str
    hint: str


def extract_code(prompt: str, context: Mapping[str, Any] | None) -> str | None:
    """The learner's code: ``context["code"]``, fenced blocks, or the prompt itself when
    it reads as Python."""
    if context and isinstance(context.get("code"), str) and context["code"].strip():
        return str(context["code"])
    blocks = _FENCE.findall(prompt)
    if blocks:
        return "\n".join(blocks)
    if len(_CODE_HINT.findall(prompt)) >= 1 and "\n" in prompt.strip():
        return prompt
    return None


def syntax_problem(code: str) -> SyntaxProblem | None:
    try:
        compile(code, "<your code>", "exec", dont_inherit=True)
    except SyntaxError as error:
        line = error.lineno or 1
        lines = code.splitlines()
        text = lines[line - 1] if 0 < line <= len(lines) else (error.text or "").rstrip("\n")
        message = error.msg
        return SyntaxProblem(line, error.offset or 1, message, text, _syntax_hint(error))
    except (RecursionError, MemoryError, ValueError):
        return SyntaxProblem(1, 1, "the code is too deeply nested to compile", "", "")
    return None


def _syntax_hint(error: SyntaxError) -> str:
    message = error.msg.lower()
    if isinstance(error, TabError):
        return "Mix of tabs and spaces: indent with four spaces only."
    if isinstance(error, IndentationError):
        return (
            "Indentation is part of Python's syntax: every line of a block starts at the same "
            "column, and a line ending in ':' must be followed by an indented block."
        )
    hints = (
        ("expected ':'", "Lines that start a block (if, for, while, def, class ...) end with ':'."),
        ("was never closed", "A bracket or parenthesis is opened but not closed."),
        ("unmatched", "There is a closing bracket without its opening one."),
        ("unterminated string", "A string is missing its closing quote."),
        ("unterminated triple-quoted", "A triple-quoted string is missing its closing quotes."),
        ("missing parentheses in call to 'print'", "In Python 3 print is a function: print(x)."),
        ("outside function", "return and yield only work inside a def."),
        ("outside loop", "break and continue only work inside a for or while loop."),
        ("cannot assign", "'=' assigns to a name; to compare two values use '=='."),
        ("perhaps you forgot a comma", "Items of a list, tuple or call are separated by commas."),
        ("invalid decimal literal", "Names cannot start with a digit."),
    )
    for needle, hint in hints:
        if needle in message:
            return hint
    return "Look at the marked spot and the end of the line before it."


class _Checks(ast.NodeVisitor):
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, node: ast.AST, message: str) -> None:
        self.findings.append(Finding(getattr(node, "lineno", 1), message))

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.add(
                node,
                "A bare `except:` also catches KeyboardInterrupt and SystemExit; name the "
                "exception you expect (e.g. `except ValueError:`).",
            )
        if len(node.body) == 1 and isinstance(node.body[0], ast.Pass):
            self.add(node, "The error is silently ignored (`pass`); handle it or let it raise.")
        self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if isinstance(default, ast.List | ast.Dict | ast.Set) or (
                isinstance(default, ast.Call)
                and isinstance(default.func, ast.Name)
                and default.func.id in ("list", "dict", "set")
            ):
                self.add(
                    default,
                    f"`{node.name}` has a mutable default argument: it is shared between "
                    "calls. Use `None` and create the value inside the function.",
                )
        arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        for argument in arguments:
            if argument.arg in _SHADOWED:
                self.add(
                    argument, f"The parameter `{argument.arg}` hides the built-in of that name."
                )
        if node.name in _SHADOWED:
            self.add(node, f"The function `{node.name}` hides the built-in of that name.")
        self._unused_locals(node)
        self.generic_visit(node)

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _unused_locals(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        stored: dict[str, ast.Name] = {}
        loaded: set[str] = set()
        declared: set[str] = set()
        for child in ast.walk(node):
            if isinstance(child, ast.Global | ast.Nonlocal):
                declared.update(child.names)
            elif isinstance(child, ast.Name):
                if isinstance(child.ctx, ast.Store):
                    stored.setdefault(child.id, child)
                else:
                    loaded.add(child.id)
        for name, where in stored.items():
            if name not in loaded and name not in declared and not name.startswith("_"):
                self.add(where, f"`{name}` is assigned but never used.")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id in _SHADOWED:
                self.add(target, f"`{target.id} = ...` hides the built-in `{target.id}`.")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Eq | ast.NotEq) and isinstance(right, ast.Constant):
                if right.value is None:
                    self.add(node, "Compare with None using `is None` / `is not None`.")
                elif isinstance(right.value, bool):
                    self.add(node, f"`== {right.value}` is not needed: test the value itself.")
            if (
                isinstance(op, ast.Is | ast.IsNot)
                and isinstance(right, ast.Constant)
                and isinstance(right.value, str | int | float)
                and not isinstance(right.value, bool)
            ):
                self.add(node, "`is` compares identity; compare values with `==`.")
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        it = node.iter
        if (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "range"
            and len(it.args) == 1
            and isinstance(it.args[0], ast.Call)
            and isinstance(it.args[0].func, ast.Name)
            and it.args[0].func.id == "len"
        ):
            self.add(
                node,
                "`for i in range(len(items))`: loop over the items directly, or use "
                "`enumerate(items)` when you need the index too.",
            )
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        endless = isinstance(node.test, ast.Constant) and node.test.value is True
        exits = any(isinstance(n, ast.Break | ast.Return | ast.Raise) for n in ast.walk(node))
        if endless and not exits:
            self.add(node, "`while True` with no break, return or raise never ends.")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.add(node, "`global` makes code hard to follow; pass values in and return them.")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if any(alias.name == "*" for alias in node.names):
            self.add(node, f"`from {node.module} import *` hides where names come from.")

    def generic_visit(self, node: ast.AST) -> None:
        for body in _blocks(node):
            for before, statement in itertools.pairwise(body):
                if isinstance(before, ast.Return | ast.Raise | ast.Break | ast.Continue):
                    self.add(statement, "This line can never run: it follows a jump.")
                    break
        super().generic_visit(node)


def _blocks(node: ast.AST) -> Iterator[list[ast.stmt]]:
    for name in ("body", "orelse", "finalbody"):
        value = getattr(node, name, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            yield value


def _unused_imports(tree: ast.Module) -> list[Finding]:
    imported: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            for alias in node.names:
                if alias.name != "*":
                    imported[(alias.asname or alias.name).split(".")[0]] = node
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    if "__all__" in used:
        return []
    return [
        Finding(node.lineno, f"`{name}` is imported but never used.")
        for name, node in imported.items()
        if name not in used
    ]


def lint(code: str, tree: ast.Module | None = None) -> list[Finding]:
    """Findings for code that compiles (``tree``: its parse, if made already), sorted by
    line."""
    tree = ast.parse(code) if tree is None else tree
    checks = _Checks()
    checks.visit(tree)
    findings = checks.findings + _unused_imports(tree)
    for number, line in enumerate(code.splitlines(), start=1):
        if len(line) > MAX_LINE:
            findings.append(Finding(number, f"The line is {len(line)} characters long; "
                                            f"keep lines under {MAX_LINE}."))  # fmt: skip
    unique = {(f.line, f.message): f for f in findings}
    return sorted(unique.values(), key=lambda f: f.line)


def review_code(code: str, *, limit: int = 12) -> str:
    problem = syntax_problem(code)
    if problem is not None:
        marker = " " * (max(problem.column, 1) - 1) + "^"
        parts = [
            f"Your code does not compile: line {problem.line}, column {problem.column}: "
            f"{problem.message}.",
        ]
        if problem.text:
            gutter = " " * len(str(problem.line))
            parts.append(f"\n    {problem.line} | {problem.text}\n    {gutter} | {marker}")
        if problem.hint:
            parts.append(f"\nHint: {problem.hint}")
        return "\n".join(parts)
    try:
        tree = ast.parse(code)
        findings = lint(code, tree)
    except (RecursionError, MemoryError):
        # compile() accepts some nesting that a recursive walk of the tree cannot take.
        return "Your code compiles, but it is too deeply nested to check; split it up."
    functions = sum(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(tree))
    classes = sum(isinstance(n, ast.ClassDef) for n in ast.walk(tree))
    lines = len(code.splitlines())
    summary = (
        f"Your code compiles ({lines} line{'s' * (lines != 1)}, {functions} function"
        f"{'s' * (functions != 1)}, {classes} class{'es' * (classes != 1)})."
    )
    if not findings:
        return (
            f"{summary} The automatic checks found nothing to change. Next: test it with a "
            "few inputs, including an empty one and a very large one."
        )
    shown = findings[:limit]
    items = "\n".join(f"- Line {f.line}: {f.message}" for f in shown)
    more = f"\n- ... and {len(findings) - limit} more." if len(findings) > limit else ""
    return f"{summary} {len(findings)} thing{'s' * (len(findings) != 1)} to look at:\n{items}{more}"

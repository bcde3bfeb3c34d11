"""Routing-rule expressions: the subset of CEL that Dapr's docs use for ``match``.

Supported: field access on ``event`` (``event.type``, ``event.data.order.total``),
string/number/bool/null literals, ``== != < <= > >=``, ``&&``, ``||``, ``!``, parentheses,
``x in [a, b]``, and the string methods ``startsWith``, ``endsWith`` and ``contains``.
Anything else is a compile error reported when the subscription is loaded, so an
unsupported expression never silently routes events to the wrong place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?u?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>&&|\|\||==|!=|<=|>=|[<>!().,\[\]])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_STRING_METHODS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith,
    "endsWith": str.endswith,
    "contains": str.__contains__,
}

Event = Mapping[str, Any]
Expr = Callable[[Event], Any]


class MatchSyntaxError(ValueError):
    pass


class _NoValue(Exception):
    """A field is missing or a comparison has mismatched types: the rule does not match."""


@dataclass
class _Tokens:
    items: list[tuple[str, str]]
    pos: int = 0

    def peek(self) -> tuple[str, str]:
        return self.items[self.pos] if self.pos < len(self.items) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            found = token[1] or "end of expression"
            raise MatchSyntaxError(f"expected {value!r}, found {found!r}")
        self.pos += 1
        return token


def _tokenize(text: str) -> _Tokens:
    items: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise MatchSyntaxError(f"unexpected character {text[pos:].strip()[:1]!r} at {pos}")
        kind = match.lastgroup
        assert kind is not None
        items.append((kind, match.group(kind)))
        pos = match.end()
    return _Tokens(items)


def _literal(kind: str, text: str) -> Any:
    if kind == "number":
        text = text.removesuffix("u")
        return float(text) if any(c in text for c in ".eE") else int(text)
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _compare(op: str, left: Any, right: Any) -> bool:
    numbers = (int, float)
    if op in ("==", "!="):
        if isinstance(left, numbers) and isinstance(right, numbers):
            equal = float(left) == float(right)
        elif type(left) is not type(right) and not (left is None or right is None):
            raise _NoValue  # CEL: no matching overload
        else:
            equal = left == right
        return equal if op == "==" else not equal
    if isinstance(left, bool) or isinstance(right, bool):
        raise _NoValue
    same_kind = (isinstance(left, numbers) and isinstance(right, numbers)) or (
        isinstance(left, str) and isinstance(right, str)
    )
    if not same_kind:
        raise _NoValue
    outcome: bool = {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]
    return outcome


class _Parser:
    def __init__(self, tokens: _Tokens) -> None:
        self.tokens = tokens

    def parse(self) -> Expr:
        expr = self.or_expr()
        if self.tokens.peek()[0] != "end":
            raise MatchSyntaxError(f"unexpected {self.tokens.peek()[1]!r}")
        return expr

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.tokens.peek()[1] == "||":
            self.tokens.take()
            right = self.and_expr()
            left = (lambda a, b: lambda e: _truthy(a, e) or _truthy(b, e))(left, right)
        return left

    def and_expr(self) -> Expr:
        left = self.comparison()
        while self.tokens.peek()[1] == "&&":
            self.tokens.take()
            right = self.comparison()
            left = (lambda a, b: lambda e: _truthy(a, e) and _truthy(b, e))(left, right)
        return left

    def comparison(self) -> Expr:
        left = self.unary()
        kind, op = self.tokens.peek()
        if op in ("==", "!=", "<", "<=", ">", ">="):
            self.tokens.take()
            right = self.unary()
            return lambda e: _compare(op, left(e), right(e))
        if kind == "name" and op == "in":
            self.tokens.take()
            options = self.unary()
            return lambda e: any(_compare("==", left(e), o) for o in _as_list(options(e)))
        return left

    def unary(self) -> Expr:
        if self.tokens.peek()[1] == "!":
            self.tokens.take()
            operand = self.unary()
            return lambda e: not _truthy(operand, e)
        return self.postfix(self.primary())

    def postfix(self, expr: Expr) -> Expr:
        while self.tokens.peek()[1] == ".":
            self.tokens.take()
            kind, name = self.tokens.take()
            if kind != "name":
                raise MatchSyntaxError(f"expected a field name after '.', found {name!r}")
            if self.tokens.peek()[1] == "(":
                expr = self.method(expr, name)
            else:
                expr = (lambda inner, field: lambda e: _field(inner(e), field))(expr, name)
        return expr

    def method(self, target: Expr, name: str) -> Expr:
        if name not in _STRING_METHODS:
            raise MatchSyntaxError(f"unsupported function {name!r}")
        self.tokens.take("(")
        argument = self.or_expr()
        self.tokens.take(")")
        function = _STRING_METHODS[name]

        def call(e: Event) -> bool:
            value, arg = target(e), argument(e)
            if not isinstance(value, str) or not isinstance(arg, str):
                raise _NoValue
            return function(value, arg)

        return call

    def primary(self) -> Expr:
        kind, text = self.tokens.take()
        if kind in ("number", "string"):
            value = _literal(kind, text)
            return lambda e: value
        if kind == "name":
            if text in ("true", "false", "null"):
                constant = {"true": True, "false": False, "null": None}[text]
                return lambda e: constant
            if text != "event":
                raise MatchSyntaxError(f"unknown identifier {text!r}; rules read 'event'")
            return lambda e: e
        if text == "(":
            inner = self.or_expr()
            self.tokens.take(")")
            return inner
        if text == "[":
            elements: list[Expr] = []
            while self.tokens.peek()[1] != "]":
                elements.append(self.or_expr())
                if self.tokens.peek()[1] == ",":
                    self.tokens.take()
            self.tokens.take("]")
            return lambda e: [element(e) for element in elements]
        raise MatchSyntaxError(f"unexpected {text or 'end of expression'!r}")


def _field(value: Any, name: str) -> Any:
    if not isinstance(value, Mapping) or name not in value:
        raise _NoValue
    return value[name]


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _NoValue
    return value


def _truthy(expr: Expr, event: Event) -> bool:
    value = expr(event)
    if not isinstance(value, bool):
        raise _NoValue
    return value


@dataclass(frozen=True, slots=True)
class Rule:
    """``match`` → ``path``; an empty match always matches (the default route)."""

    match: str
    path: str
    compiled: Expr | None = None

    @classmethod
    def build(cls, match: str, path: str) -> Rule:
        if not match.strip():
            return cls("", path)
        return cls(match, path, _Parser(_tokenize(match)).parse())

    def matches(self, event: Event) -> bool:
        if self.compiled is None:
            return True
        try:
            return _truthy(self.compiled, event)
        except _NoValue:
            return False


def find_route(rules: list[Rule], event: Event) -> str | None:
    """The path of the first matching rule, or ``None`` (the event is dropped)."""
    for rule in rules:
        if rule.matches(event):
            return rule.path
    return None

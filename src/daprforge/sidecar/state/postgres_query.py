"""Translate a Dapr state query into SQL over the ``state.postgresql`` v1 table.

The translation follows components-contrib's ``postgresql_query.go`` so that a query
returns what daprd returns, quirks included:

* A dotted key ``a.b`` reads ``value->'a'->>'b'``: the *text* of the JSON field. Every
  comparison is text against text, so ``{"GT": {"n": 5}}`` does not match ``n = 10``
  ('10' < '5'), and ``{"EQ": {"n": 1}}`` matches both ``1`` and ``"1"``.
* A filter value becomes text the way Go's ``fmt.Sprint`` prints a JSON-decoded value.
  Numbers are float64 there, so ``1000000`` prints as ``1e+06`` and never equals a stored
  ``1000000``.
* GT, GTE, LT and LTE refuse string values; IN needs at least one value; AND and OR need
  at least two operands.
* The page token is the offset of the next page. It comes back whenever a limit is set,
  even on the last page: the client stops when a page is empty.

Unlike the Go code, path segments and values are always bound parameters, never spliced
into the SQL text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, LiteralString

from psycopg import sql

from daprforge.sidecar.state.base import Query, QueryError

_COMPARISONS: dict[str, LiteralString] = {
    "EQ": "=",
    "NEQ": "<>",
    "GT": ">",
    "GTE": ">=",
    "LT": "<",
    "LTE": "<=",
}
_ORDERING = frozenset({"GT", "GTE", "LT", "LTE"})
_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    statement: sql.Composed
    params: list[Any]
    offset: int
    """Rows skipped by this page (the incoming token, or 0)."""
    limit: int
    """Page size; 0 when the query has no limit (and then no token is returned)."""

    def next_token(self, returned: int) -> str | None:
        return str(self.offset + returned) if self.limit else None


def compile_query(table: sql.Composable, query: Query) -> CompiledQuery:
    """Build ``SELECT key, value, etag`` for ``query`` over a v1 state table."""
    builder = _Builder()
    conditions: list[sql.Composable] = [
        # Expired rows are invisible to every other read, so to queries as well.
        sql.SQL("(expiredate IS NULL OR expiredate >= CURRENT_TIMESTAMP)")
    ]
    if query.filter:
        conditions.append(builder.filter(query.filter))

    order: list[sql.Composable] = []
    for key, descending in query.sort:
        if not isinstance(key, str):
            raise QueryError(f"sort key must be a string, not {key!r}")
        direction = sql.SQL(" DESC") if descending else sql.SQL(" ASC")
        order.append(sql.Composed([builder.field(key), direction]))
    # A final tie-breaker, so that offset paging is stable between requests.
    order.append(sql.SQL("key"))

    parts: list[sql.Composable] = [
        sql.SQL("SELECT key, value::text, xmin::text FROM {} WHERE ").format(table),
        sql.SQL(" AND ").join(conditions),
        sql.SQL(" ORDER BY "),
        sql.SQL(", ").join(order),
    ]
    limit = query.limit if query.limit > 0 else 0
    if limit:
        parts.append(sql.SQL(" LIMIT %s"))
        builder.params.append(limit)
    offset = _parse_token(query.token)
    if offset:
        parts.append(sql.SQL(" OFFSET %s"))
        builder.params.append(offset)
    return CompiledQuery(sql.Composed(parts), builder.params, offset, limit)


def _parse_token(token: str | None) -> int:
    # Go: strconv.ParseInt(token, 10, 64); an empty token means the first page.
    if not token:
        return 0
    if not _GO_INT.fullmatch(token) or abs(int(token)) > _INT64_MAX:
        raise QueryError(f"invalid query token {token!r}")
    offset = int(token)
    if offset < 0:
        raise QueryError("invalid query token: OFFSET must not be negative")
    return offset


class _Builder:
    """Turns filter nodes into SQL, collecting parameters in the order they appear."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def field(self, key: str) -> sql.Composed:
        # "a.b.c" -> value -> 'a' -> 'b' ->> 'c', each segment a parameter. Empty
        # segments ("a..b") are kept, as strings.Split keeps them in Go.
        segments = key.split(".")
        parts: list[sql.Composable] = [sql.SQL("(value")]
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            parts.append(sql.SQL(" ->> %s::text") if last else sql.SQL(" -> %s::text"))
            self.params.append(segment)
        parts.append(sql.SQL(")"))
        return sql.Composed(parts)

    def compare(self, op: str, key: str, value: Any) -> sql.Composed:
        left = self.field(key)
        self.params.append(go_sprint(value))
        return sql.Composed([left, sql.SQL(" "), sql.SQL(_COMPARISONS[op]), sql.SQL(" %s::text")])

    def filter(self, node: Any) -> sql.Composable:
        if not isinstance(node, Mapping):
            raise QueryError("filter unit must be a map")
        if len(node) != 1:
            raise QueryError("filter unit must have a single element")
        ((op, body),) = node.items()
        if op in _COMPARISONS:
            key, value = _single_pair(op, body)
            if op in _ORDERING and isinstance(value, str):
                raise QueryError(f"unsupported type of value {value}; string type not permitted")
            return self.compare(op, key, value)
        if op == "IN":
            key, values = _single_pair(op, body)
            if not isinstance(values, list):
                raise QueryError("IN filter value must be an array")
            if not values:
                raise QueryError(f'empty IN operator for key "{key}"')
            alternatives = [self.compare("EQ", key, value) for value in values]
            return sql.Composed([sql.SQL("("), sql.SQL(" OR ").join(alternatives), sql.SQL(")")])
        if op in ("AND", "OR"):
            if not isinstance(body, list):
                raise QueryError(f"{op} filter must be an array")
            if len(body) < 2:
                raise QueryError(f"{op} filter must contain at least two entries")
            joiner = sql.SQL(" AND ") if op == "AND" else sql.SQL(" OR ")
            operands = [self.filter(child) for child in body]
            return sql.Composed([sql.SQL("("), joiner.join(operands), sql.SQL(")")])
        raise QueryError(f'unsupported filter "{op}"')


def _single_pair(op: str, body: Any) -> tuple[str, Any]:
    if not isinstance(body, Mapping):
        raise QueryError(f"{op} filter must be a map")
    if len(body) != 1:
        raise QueryError(f"{op} filter must contain a single key/value pair")
    ((key, value),) = body.items()
    if not isinstance(key, str):
        raise QueryError(f"{op} filter key must be a string")
    return key, value


def go_sprint(value: Any) -> str:
    """``fmt.Sprint`` of what Go's ``encoding/json`` decodes ``value`` into."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            return go_float(float(value))
        except OverflowError:
            raise QueryError(f"number out of range: {value}") from None
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_sprint(item) for item in value) + "]"
    if isinstance(value, Mapping):
        # Go prints maps with their keys sorted.
        items = sorted(value.items(), key=lambda item: str(item[0]))
        return "map[" + " ".join(f"{key}:{go_sprint(item)}" for key, item in items) + "]"
    raise QueryError(f"unsupported filter value {value!r}")


def go_float(number: float) -> str:
    """Go's ``%v`` for a float64: shortest digits, ``%e`` below 1e-4 or from 1e6 up."""
    if not math.isfinite(number):
        raise QueryError(f"number out of range: {number}")
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    sign = "-" if number < 0 else ""
    # repr() gives the shortest digits that round-trip, which is what Go uses too.
    decimal = Decimal(repr(abs(number))).as_tuple()
    digits = [str(d) for d in decimal.digits]
    exponent = int(decimal.exponent)
    while len(digits) > 1 and digits[-1] == "0":
        digits.pop()
        exponent += 1
    while len(digits) > 1 and digits[0] == "0":
        digits.pop(0)
    count = len(digits)
    point = count + exponent  # position of the decimal point relative to the digits
    exp10 = point - 1
    text = "".join(digits)
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if count > 1 else "")
        return f"{sign}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{text}"
    if point >= count:
        return f"{sign}{text}{'0' * (point - count)}"
    return f"{sign}{text[:point]}.{text[point:]}"

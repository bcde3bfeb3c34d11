"""Route matching with daprd's path rules.

daprd serves its API with a chi router behind two middlewares: ``path.Clean`` on the
*escaped* path, then trailing-slash stripping. Route parameters are then decoded one by one
with Go's ``url.QueryUnescape`` (so ``%2F`` becomes ``/`` and ``+`` becomes a space inside a
key), and a segment that does not decode is a plain-text 400. Any path or method that no
route takes goes to the fallback handler (service invocation), never to a 404/405 page.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.responses import Response

    from daprforge.sidecar.request import DaprRequest

Handler = Callable[["DaprRequest"], Awaitable["Response"]]

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})|%")


class UnescapeError(ValueError):
    """A path parameter holds an invalid ``%`` escape."""


def query_unescape(text: str) -> str:
    """Go's ``url.QueryUnescape``: ``+`` is a space and every ``%`` needs two hex digits."""
    if "%" not in text and "+" not in text:
        return text
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        out += text[pos : match.start()].replace("+", " ").encode()
        if match.group(1) is None:
            bad = text[match.start() : match.start() + 3]
            raise UnescapeError(f'invalid URL escape "{bad}"')
        out.append(int(match.group(1), 16))
        pos = match.end()
    out += text[pos:].replace("+", " ").encode()
    return out.decode("utf-8", errors="replace")


def clean_path(path: str) -> str:
    """Go's ``path.Clean`` followed by chi's trailing-slash strip."""
    if path.startswith("/") and "//" not in path and "/." not in path and path[-1] != "/":
        return path  # already clean: the common case, kept cheap
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


@dataclass(frozen=True, slots=True)
class Route:
    """``pattern`` is relative to the root, e.g. ``v1.0/state/{storeName}/{key}``.

    A ``{name}`` segment matches one non-empty segment; a final ``*`` matches the rest of
    the path (chi's catch-all, used by pub/sub topics that contain slashes).
    """

    methods: frozenset[str]
    pattern: str
    handler: Handler
    segments: tuple[str, ...] = field(init=False)
    catch_all: bool = field(init=False)

    def __post_init__(self) -> None:
        segments = tuple(self.pattern.strip("/").split("/"))
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "catch_all", segments[-1] == "*")

    def specificity(self) -> tuple[int, ...]:
        # chi's radix tree tries static children before parameters at every depth.
        return tuple(0 if not s.startswith("{") and s != "*" else 1 for s in self.segments)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        segments = self.segments
        if self.catch_all:
            if len(parts) < len(segments) - 1:
                return None
        elif len(parts) != len(segments):
            return None
        params: dict[str, str] = {}
        for i, segment in enumerate(segments):
            if segment == "*":
                params["*"] = "/".join(parts[i:])
                return params
            if segment.startswith("{"):
                params[segment[1:-1]] = parts[i]
            elif segment != parts[i]:
                return None
        return params


def route(methods: Iterable[str], pattern: str, handler: Handler) -> Route:
    return Route(frozenset(methods), pattern, handler)


class Router:
    def __init__(self, routes: Iterable[Route], fallback: Handler) -> None:
        ordered = sorted(routes, key=Route.specificity)
        self.fallback = fallback
        # Candidates by method and the first two (static) segments, e.g. GET v1.0/state:
        # a request tries only the few routes that could match it, in chi's
        # static-before-parameter order.
        self._index: dict[tuple[str, str, str], list[Route]] = {}
        for candidate in ordered:
            first, second = (*candidate.segments[:2], "")[:2]
            if first.startswith("{") or second.startswith("{") or "*" in (first, second):
                raise ValueError(
                    f"route {candidate.pattern!r}: the first two segments must be static"
                )
            for method in candidate.methods:
                self._index.setdefault((method, first, second), []).append(candidate)

    def resolve(self, method: str, escaped_path: str) -> tuple[Handler, dict[str, str]]:
        """Find the handler and its *still escaped* parameters for a cleaned path."""
        parts = escaped_path.strip("/").split("/") if escaped_path != "/" else []
        key = (method, parts[0] if parts else "", parts[1] if len(parts) > 1 else "")
        for candidate in self._index.get(key, ()):
            params = candidate.match(parts)
            if params is not None:
                return candidate.handler, params
        return self.fallback, {}


def unescape_params(params: dict[str, str]) -> dict[str, str]:
    """Decode every parameter, raising :class:`UnescapeError` with daprd's message."""
    decoded = {}
    for name, value in params.items():
        try:
            decoded[name] = query_unescape(value)
        except UnescapeError as exc:
            raise UnescapeError(
                f'failed to unescape request parameter "{name}". Error: {exc}'
            ) from None
    return decoded

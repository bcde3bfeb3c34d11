"""W3C Trace Context: the trace the current request belongs to, and passing it on.

The service kit sets the current context for every request (continuing the caller's
``traceparent`` or starting a trace); the client sends it with every sidecar call, so a
publish, an invocation or a state call joins the caller's trace, and the CloudEvent daprd
builds carries the same trace id to the subscriber. The context lives in a ``ContextVar``,
so concurrent requests never see each other's.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace

# version-traceid-parentid-flags; lowercase hex only, as the spec requires.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = "01"
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @classmethod
    def parse(cls, traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
        """The context in a ``traceparent`` header, or None when it is absent or invalid
        (an invalid header starts a new trace, as the W3C spec says)."""
        if not traceparent:
            return None
        match = _TRACEPARENT.match(traceparent.strip())
        if match is None:
            return None
        version, trace_id, span_id, flags, rest = match.groups()
        if version == "ff" or (version == "00" and rest):
            return None
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, flags, tracestate or None)

    @classmethod
    def new(cls) -> TraceContext:
        """A new trace. Sampled, as an OpenTelemetry root span is by default; daprd's own
        sampling rate still decides for spans it starts itself."""
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    def child(self) -> TraceContext:
        """The same trace with a new span id: this service's span under the caller's."""
        return replace(self, span_id=secrets.token_hex(8))


_current: ContextVar[TraceContext | None] = ContextVar("daprforge_trace_context", default=None)


def current_trace() -> TraceContext | None:
    return _current.get()


@contextlib.contextmanager
def use_trace(context: TraceContext | None) -> Iterator[TraceContext | None]:
    """Make ``context`` current inside the ``with`` block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)

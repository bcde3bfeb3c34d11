"""Server-Sent Events out: named events, keep-alive comments, and a stream that stops as
soon as the client goes away.

``EventStreamResponse`` is an ASGI response like Starlette's ``StreamingResponse`` with
three differences that matter for model output: it watches for the client's disconnect
the whole time (not only when a write fails), so the event source is closed at once and
its ``finally`` blocks stop the upstream request; it writes a comment line after
``keepalive`` seconds of silence, so proxies and load balancers keep the connection open
while a model thinks; and it sets the headers that keep proxies from buffering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

KEEPALIVE = b": keep-alive\n\n"
HEADERS = {
    "cache-control": "no-cache",
    # nginx (and proxies that copy it) pass each event on at once instead of buffering.
    "x-accel-buffering": "no",
}


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: Mapping[str, Any]

    def encode(self) -> bytes:
        # JSON has no raw line breaks, so the data is always a single "data:" line.
        data = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {self.event}\ndata: {data}\n\n".encode()


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[ServerSentEvent, None],
        *,
        keepalive: float = 15.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.events = events
        self.keepalive = keepalive
        self.status_code = 200
        self.background = None
        self.init_headers({**HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        lock = asyncio.Lock()
        last_write = loop.time()

        async def write(body: bytes) -> None:
            nonlocal last_write
            async with lock:  # events and keep-alives never interleave
                await send({"type": "http.response.body", "body": body, "more_body": True})
                last_write = loop.time()

        async def pump() -> None:
            async with contextlib.aclosing(self.events) as events:
                async for event in events:
                    await write(event.encode())

        async def keep_alive() -> None:
            while True:
                wait = last_write + self.keepalive - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    await write(KEEPALIVE)

        async def disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        streaming = asyncio.create_task(pump())
        watching = asyncio.create_task(disconnect())
        pinging = asyncio.create_task(keep_alive())
        try:
            await asyncio.wait((streaming, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A disconnect cancels the pump: the events' finally blocks run right away.
            for task in (streaming, watching, pinging):
                task.cancel()
            await asyncio.gather(streaming, watching, pinging, return_exceptions=True)
        if streaming.cancelled():  # the client left first
            return
        error = streaming.exception()
        if isinstance(error, OSError):  # the client went away while we wrote
            return
        if error is not None:
            raise error
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

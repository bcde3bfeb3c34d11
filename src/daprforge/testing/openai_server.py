"""A local OpenAI-compatible server for testing AI services without a network.

It speaks enough of the Chat Completions API for the official SDK: ``POST
/v1/chat/completions`` (plain and ``stream=true`` with server-sent events, including the
final usage chunk when ``stream_options.include_usage`` is set) and ``GET /v1/models``.
Answers are scripted per test and fully deterministic:

    openai_server.reply("Hello there")                      # next answer
    openai_server.reply(tool_calls=[ToolCall("lookup", {"id": 7})])
    openai_server.fail(429, "Rate limit reached", code="rate_limit_exceeded")
    openai_server.reply("slow", delay=2.0)                  # wait before answering
    openai_server.reply("Half an answer", error_after=2)    # an in-band error mid-stream
    openai_server.reply("No usage", stream_usage=False)     # ignores include_usage
    openai_server.fail(500, times=3)                        # the next three requests fail
    openai_server.always("Same every time", chunk_delay=0.01)  # the unscripted answer
    openai_server.reject_stream_options = True              # 400 for stream_options

With nothing scripted it echoes the last user message. Token usage counts words. Every
request is recorded in ``openai_server.requests``; streams the client left before their
end are counted in ``openai_server.disconnects`` (``await wait_for_disconnect()``).

``python -m daprforge.testing.openai_server --port 8400`` serves it on its own (for
benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from daprforge.testing.server import serve_app


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: content (None: echo), tool calls, or an error status."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    status: int = 200
    error_message: str = ""
    error_type: str = "server_error"
    error_code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before the response starts."""
    chunk_delay: float = 0.0
    """Seconds between streamed chunks."""
    finish_reason: str | None = None
    error_after: int | None = None
    """Streams only: send an in-band error event after this many content chunks."""
    stream_usage: bool = True
    """Streams only: False ignores ``stream_options.include_usage`` (no usage chunk)."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any


def _words(text: str) -> int:
    return len(text.split())


def _text(content: Any) -> str:
    """A message's text, whether content is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class OpenAIServer:
    def __init__(
        self, api_key: str | None = "test-key", model: str = "test-model", *, record: bool = True
    ) -> None:
        """``api_key=None`` accepts any key (or none). ``record=False`` keeps no
        ``requests`` (a long benchmark would grow them without end)."""
        self.api_key = api_key
        self.model = model
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        """Streams that ended because the client went away before their end."""
        self.completed_streams = 0
        self.reject_stream_options = False
        """Answer 400 to requests with ``stream_options``, as some providers do."""
        self.default = Reply()
        """The answer when nothing is scripted (``Reply()``: echo)."""
        self._script: deque[Reply] = deque()
        self._disconnected = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        self.url = ""
        """The base URL for clients, e.g. ``http://127.0.0.1:PORT/v1``."""

    # --- scripting ----------------------------------------------------------------------

    def reply(
        self,
        content: str | None = None,
        *,
        tool_calls: list[ToolCall] | tuple[ToolCall, ...] = (),
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        finish_reason: str | None = None,
        error_after: int | None = None,
        stream_usage: bool = True,
        times: int = 1,
    ) -> None:
        """Queue the next successful answer (``times`` times)."""
        reply = Reply(
            content=content,
            tool_calls=tuple(tool_calls),
            delay=delay,
            chunk_delay=chunk_delay,
            finish_reason=finish_reason,
            error_after=error_after,
            stream_usage=stream_usage,
        )
        self._script.extend([reply] * times)

    def always(
        self,
        content: str | None = None,
        *,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        stream_usage: bool = True,
    ) -> None:
        """The answer to every unscripted request from now on."""
        self.default = Reply(
            content=content, delay=delay, chunk_delay=chunk_delay, stream_usage=stream_usage
        )

    async def wait_for_disconnect(self) -> None:
        """Until a client has left a stream before its end (bound it with
        ``asyncio.timeout``)."""
        await self._disconnected.wait()

    def fail(
        self,
        status: int,
        message: str = "scripted failure",
        *,
        type: str = "server_error",
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Queue an error answer in OpenAI's error format (``times`` times)."""
        reply = Reply(
            status=status,
            error_message=message,
            error_type=type,
            error_code=code,
            headers=dict(headers or {}),
            delay=delay,
        )
        self._script.extend([reply] * times)

    # --- serving ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OpenAIServer]:
        async with serve_app(self.app) as server:
            self.url = f"{server.url}/v1"
            yield self

    def _unauthorized(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return _error(
            401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
        )

    async def _models(self, request: Request) -> Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        return JSONResponse(
            {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "test"}]}
        )

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if self.record:
            self.requests.append(
                RecordedRequest(request.method, request.url.path, dict(request.headers), body)
            )
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is required.", "invalid_request_error")
        if self.reject_stream_options and "stream_options" in body:
            return _error(400, "property 'stream_options' is unsupported", "invalid_request_error")
        reply = self._script.popleft() if self._script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status >= 400:
            return _error(
                reply.status,
                reply.error_message,
                reply.error_type,
                reply.error_code,
                reply.headers,
            )
        messages = body["messages"]
        content = reply.content
        if content is None and not reply.tool_calls:
            users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            content = _text(users[-1].get("content")) if users else ""
        completion = _Completion(
            model=str(body.get("model") or self.model),
            content=content,
            tool_calls=reply.tool_calls,
            finish_reason=reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
            prompt_tokens=sum(
                _words(_text(m.get("content"))) for m in messages if isinstance(m, dict)
            ),
        )
        if body.get("stream"):
            options = body.get("stream_options") or {}
            usage = isinstance(options, dict) and bool(options.get("include_usage"))
            chunks = completion.chunks(
                usage and reply.stream_usage, reply.chunk_delay, reply.error_after
            )
            return StreamingResponse(self._watched(chunks), media_type="text/event-stream")
        return JSONResponse(completion.response())

    async def _watched(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The chunks, counting a stream the client left early (Starlette cancels the
        response when the client disconnects)."""
        finished = False
        try:
            async for chunk in chunks:
                yield chunk
            finished = True
        finally:
            if finished:
                self.completed_streams += 1
            else:
                self.disconnects += 1
                self._disconnected.set()


def _error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        status_code=status,
        headers=dict(headers or {}),
    )


@dataclass(slots=True)
class _Completion:
    model: str
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    prompt_tokens: int
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:16]}")
    created: int = field(default_factory=lambda: int(time.time()))

    def usage(self) -> dict[str, int]:
        completion = _words(self.content or "") + sum(
            _words(json.dumps(call.arguments)) for call in self.tool_calls
        )
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def _tool_calls(self, with_index: bool) -> list[dict[str, Any]]:
        calls = []
        for index, call in enumerate(self.tool_calls):
            entry: dict[str, Any] = {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            if with_index:
                entry["index"] = index
            calls.append(entry)
        return calls

    def response(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self._tool_calls(with_index=False)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": self.usage(),
        }

    def _chunk(self, choices: list[dict[str, Any]], usage: bool, final: bool = False) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage:
            # With include_usage every chunk has "usage": null, and one last chunk (with no
            # choices) carries the totals, as the OpenAI API does.
            chunk["usage"] = self.usage() if final else None
        return f"data: {json.dumps(chunk)}\n\n".encode()

    async def chunks(
        self, usage: bool, delay: float, error_after: int | None = None
    ) -> AsyncIterator[bytes]:
        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]

        yield self._chunk(choice({"role": "assistant", "content": ""}), usage)
        for index, piece in enumerate(re.findall(r"\S+\s*|\s+", self.content or "")):
            if index == error_after:
                # As the API reports a failure after the stream started: an in-band error
                # event, and no [DONE].
                error = {"message": "The server had an error.", "type": "server_error"}
                yield f"data: {json.dumps({'error': error})}\n\n".encode()
                return
            if delay:
                await asyncio.sleep(delay)
            yield self._chunk(choice({"content": piece}), usage)
        if self.tool_calls:
            yield self._chunk(choice({"tool_calls": self._tool_calls(with_index=True)}), usage)
        yield self._chunk(choice({}, self.finish_reason), usage)
        if usage:
            yield self._chunk([], usage, final=True)
        yield b"data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    """Serve on a port until interrupted (for benchmarks): ``--port``, ``--reply``,
    ``--chunk-delay``; any API key is accepted."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", default=None, help="the answer (default: echo)")
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = OpenAIServer(api_key=None, record=False)
    server.always(args.reply, chunk_delay=args.chunk_delay)
    uvicorn.run(server.app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

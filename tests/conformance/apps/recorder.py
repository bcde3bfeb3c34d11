"""A scriptable app for the conformance suite (stdlib only, run as its own process).

    python recorder.py PORT CONFIG_JSON

It records every request it gets (method, path, query, headers, body, arrival time) and
answers each path as scripted, so a test can see exactly what a sidecar sends to its app
and choose what the app answers.

CONFIG_JSON (a file) holds ``{"subscriptions": [...], "scripts": {path: [response, ...]}}``:

- ``GET /dapr/subscribe`` answers ``subscriptions`` (unless a script for it exists);
- a script is a list of responses used one after the other, the last one repeating; a
  response is ``{"status": 200, "body": "text" | "json": value | "chunks": ["a", ...],
  "headers": {...}, "delay": seconds, "chunk_delay": seconds}``;
- an unscripted path answers 200 with a JSON echo of the request (no ``status`` key, so a
  sidecar counts it as a successful delivery).

Control endpoints (never recorded), under ``/__recorder/``:

- ``GET health``; ``GET records[?path=/p]`` → the records, oldest first, bodies base64;
- ``POST script`` with ``{path: [response, ...]}`` replaces those paths' scripts.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CONTROL = "/__recorder/"
LOCK = threading.Lock()
RECORDS: list[dict[str, Any]] = []
SCRIPTS: dict[str, list[dict[str, Any]]] = {}
SUBSCRIPTIONS: Any = []


def next_response(path: str) -> dict[str, Any] | None:
    with LOCK:
        script = SCRIPTS.get(path)
        if not script:
            return None
        return script.pop(0) if len(script) > 1 else script[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "content-length" not in {h.lower() for h in headers}:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _control(self, path: str, query: str) -> None:
        name = path[len(CONTROL) :]
        if name == "health":
            self._json(200, {"ok": True})
        elif name == "records":
            wanted = parse_qs(query).get("path")
            with LOCK:
                found = [r for r in RECORDS if not wanted or r["path"] in wanted]
            self._json(200, found)
        elif name == "script" and self.command == "POST":
            update = json.loads(self._body())
            with LOCK:
                SCRIPTS.update({p: list(rs) for p, rs in update.items()})
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": f"no control endpoint {name}"})

    def _handle(self) -> None:
        url = urlsplit(self.path)
        if url.path.startswith(CONTROL):
            self._control(url.path, url.query)
            return
        body = self._body()
        record = {
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": base64.b64encode(body).decode(),
            "time": time.time(),
        }
        with LOCK:
            RECORDS.append(record)
        response = next_response(url.path)
        if response is None:
            if url.path == "/dapr/subscribe":
                self._json(200, SUBSCRIPTIONS)
                return
            echo = {k: v for k, v in record.items() if k != "time"}
            echo["headers"] = {k.lower(): v for k, v in self.headers.items()}
            self._json(200, echo)
            return
        self._scripted(response)

    def _scripted(self, response: dict[str, Any]) -> None:
        time.sleep(float(response.get("delay", 0)))
        status = int(response.get("status", 200))
        headers = dict(response.get("headers") or {})
        if "chunks" in response:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index, chunk in enumerate(response["chunks"]):
                if index:
                    time.sleep(float(response.get("chunk_delay", 0)))
                data = chunk.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if "json" in response:
            body = json.dumps(response["json"]).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            body = str(response.get("body", "")).encode()
        self._send(status, body, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def main() -> None:
    global SUBSCRIPTIONS
    port = int(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as file:
        config = json.load(file)
    SUBSCRIPTIONS = config.get("subscriptions", [])
    SCRIPTS.update({p: list(rs) for p, rs in (config.get("scripts") or {}).items()})
    server = Server(("127.0.0.1", port), Handler)
    print(f"recorder listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

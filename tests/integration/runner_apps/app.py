"""A tiny app for the runner tests (stdlib only). What it does is chosen by environment:

- always: prints what the runner told it (APP_ID, ports, GREETING from the template's env);
  appends its pid to ``PID_FILE`` when set
- ``SAVE_KEY``: saves that key through its sidecar's state API before listening
- ``CHATTY``: prints that many long lines at once (more than a pipe buffer holds)
- ``EXIT_CODE``: prints a last line and exits with that code after ``EXIT_AFTER`` seconds
- ``IGNORE_SIGTERM``: says so and keeps running on SIGTERM; ``SPAWN_CHILD``: starts a child
  (a grandchild of the runner) that ignores SIGTERM too
- ``APP_PORT`` set and ``NEVER_LISTEN`` unset: serves HTTP on it (GET / → "hello from <id>",
  GET /dapr/subscribe → [])
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

APP_ID = os.environ.get("APP_ID", "?")


def say(message: str) -> None:
    print(message, flush=True)


def record_pid(pid: int) -> None:
    if path := os.environ.get("PID_FILE"):
        with open(path, "a") as file:
            file.write(f"{pid}\n")


def save_state(key: str) -> None:
    url = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/state/statestore"
    body = json.dumps([{"key": key, "value": {"saved_by": APP_ID}}]).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        say(f"saved {key} through the sidecar: HTTP {response.status}")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # The sidecar asks for programmatic subscriptions: there are none.
        subscribe = self.path == "/dapr/subscribe"
        body = b"[]" if subscribe else f"hello from {APP_ID}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if subscribe else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        say(f"request: {format % args}")


def main() -> None:
    if os.environ.get("CHILD_OF"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        record_pid(os.getpid())
        say(f"child of {os.environ['CHILD_OF']} running (ignores SIGTERM)")
        while True:
            time.sleep(1)

    record_pid(os.getpid())
    say(
        f"starting {APP_ID}: APP_PORT={os.environ.get('APP_PORT')} "
        f"DAPR_HTTP_PORT={os.environ.get('DAPR_HTTP_PORT')} "
        f"APP_PROTOCOL={os.environ.get('APP_PROTOCOL')} "
        f"APP_CHANNEL_ADDRESS={os.environ.get('APP_CHANNEL_ADDRESS')} "
        f"DAPR_GRPC_PORT={os.environ.get('DAPR_GRPC_PORT')} "
        f"GREETING={os.environ.get('GREETING')} cwd={os.getcwd()}"
    )
    if os.environ.get("IGNORE_SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: say("got SIGTERM, ignoring it"))
    if os.environ.get("SPAWN_CHILD"):
        env = {**os.environ, "CHILD_OF": APP_ID}
        subprocess.Popen([sys.executable, __file__], env=env)
    for index in range(int(os.environ.get("CHATTY", "0"))):
        print(f"chatty line {index} " + "x" * 200)
    sys.stdout.flush()
    if key := os.environ.get("SAVE_KEY"):
        save_state(key)
    if code := os.environ.get("EXIT_CODE"):
        time.sleep(float(os.environ.get("EXIT_AFTER", "0")))
        say(f"{APP_ID} is giving up now")
        sys.exit(int(code))
    port = os.environ.get("APP_PORT")
    if port and not os.environ.get("NEVER_LISTEN"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
        say(f"{APP_ID} listening on port {port}")
        server.serve_forever()
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()

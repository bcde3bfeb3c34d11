"""Serve a generated event-processor with failures injected, for the reliability test.

    python tests/events/_chaos_app.py PROJECT_DIR PORT

(``CHAOS_WORKERS`` processes share the port, like the replicas of a Deployment.)

The project's own app (``app.main.build_app``, settings from the environment), with two
kinds of failure that a real deployment meets and the test cannot otherwise cause on
demand (this is the only thing not real in that test):

- ``CHAOS_FAIL_RATE``: the handler's business logic raises, before anything is committed
  (a bug or a dependency hiccup): the sidecar retries per its Resiliency policy.
- ``CHAOS_LOSE_RATE``: the handler ran and committed, but the sidecar is told 500 (the
  answer lost on the way): the sidecar delivers a processed event again.

``CHAOS_SEED`` makes both repeatable.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any


def create() -> Any:
    """The app with failures injected (uvicorn calls this in each worker process)."""
    root = Path(os.environ["CHAOS_PROJECT"])
    sys.path.insert(0, str(root))
    # Each worker draws its own failures, repeatably.
    chance = random.Random(f"{os.environ.get('CHAOS_SEED', '0')}-{os.getpid()}")
    fail_rate = float(os.environ.get("CHAOS_FAIL_RATE", "0"))
    lose_rate = float(os.environ.get("CHAOS_LOSE_RATE", "0"))

    from app.services import processor  # the generated project's module

    apply = processor.apply

    def flaky_apply(*args: Any, **kwargs: Any) -> Any:
        if chance.random() < fail_rate:
            raise RuntimeError("injected handler failure")
        return apply(*args, **kwargs)

    processor.apply = flaky_apply

    from app.main import build_app

    app = build_app()

    async def lossy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/events/"):
            await app(scope, receive, send)
            return
        if chance.random() >= lose_rate:
            await app(scope, receive, send)
            return

        async def swallow(message: dict[str, Any]) -> None:
            pass

        await app(scope, receive, swallow)  # processed, but the answer is lost
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return lossy


def main() -> None:
    import uvicorn

    os.environ["CHAOS_PROJECT"] = sys.argv[1]
    uvicorn.run(
        "_chaos_app:create",
        factory=True,
        app_dir=str(Path(__file__).parent),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        # Worker processes share the port and the sidecar (like replicas, on one pod).
        workers=int(os.environ.get("CHAOS_WORKERS", "1")),
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

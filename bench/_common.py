"""Shared parts of the benchmarks in bench/: servers, wrk runs, the bare endpoint, reporting.

Imported by ``sidecar_state.py`` and ``pubsub.py`` (bench/ is on ``sys.path`` when they run as
scripts). ``python bench/_common.py --serve-bare PORT`` serves the bare endpoint.

With two or more CPUs (and taskset), the server under test and the bare endpoint run on CPU 0
and wrk on CPU 1, so each side has a core to itself and the table can show which one was
the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from daprforge.launch import free_port

BENCH_DIR = Path(__file__).resolve().parent
WRK_INSTALL = "apt-get install -y wrk   (Debian/Ubuntu; run `apt-get update` first if needed)"
SERVER_CPU = 0
"""The CPU of the server under test and of the bare endpoint (when pinning)."""
LOAD_CPU = 1
"""The CPU of wrk (when pinning)."""

# The bare endpoint's GET body (and the state benchmark's state value): compact, sorted JSON
# so that a store that re-encodes it returns the very same bytes.
DOC: dict[str, Any] = {
    "customer": "c-0042",
    "id": "order-000123",
    "items": [{"qty": 2, "sku": "A1"}, {"qty": 1, "sku": "B7"}],
    "status": "paid",
    "total": 59.9,
}
VALUE = json.dumps(DOC, separators=(",", ":"), sort_keys=True)
VALUE_BYTES = VALUE.encode()

# The sidecar's uvicorn settings (daprforge/sidecar/server.py): one worker, uvloop, httptools,
# no access log, no lifespan, no Server header.
UVICORN_SETTINGS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "workers": 1,
    "access_log": False,
    "lifespan": "off",
    "server_header": False,
    "log_level": "warning",
}


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Baseline: GET returns DOC, POST reads the body and returns 204. No framework."""
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": VALUE_BYTES})


def serve(app: Any, port: int) -> None:
    """Serve an ASGI app on loopback with the sidecar's uvicorn settings (blocks)."""
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, **UVICORN_SETTINGS)


@dataclass(frozen=True)
class Run:
    """One timed wrk run against one server."""

    ops: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: float
    """Server process CPU time / wall time during the run (1.0 = one core busy)."""
    wrk_cpu: float
    requests: int = 0
    """Requests wrk completed (any status)."""
    status_errors: int = 0
    """Responses with a status of 400 or more (part of ``errors``)."""

    @property
    def cpu_us(self) -> float:
        """Server CPU time per request, in microseconds."""
        return self.server_cpu / self.ops * 1e6 if self.ops else 0.0


class Machine:
    """Starts pinned servers and runs pinned wrk against them."""

    def __init__(self) -> None:
        self.pin = len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset") is not None

    def affinity(self, cpu: int) -> list[str]:
        return ["taskset", "-c", str(cpu)] if self.pin else []

    def server(
        self, argv: list[str], port: int, health: str, log: Path, cpu: int = SERVER_CPU
    ) -> contextlib.AbstractContextManager[int]:
        """Start a server pinned to ``cpu``, wait for ``health`` to answer, yield its pid."""
        health_url = f"http://127.0.0.1:{port}{health}"
        return started([*self.affinity(cpu), *argv], health_url, log, seconds=30)

    @contextlib.contextmanager
    def bare_server(self, tmp: Path) -> Iterator[tuple[int, int]]:
        """The bare endpoint (``bare_app``) for the whole session: yields (port, pid)."""
        port = free_port()
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port)]
        with self.server(argv, port, "/", tmp / "bare.log") as pid:
            yield port, pid

    def wrk(
        self,
        port: int,
        pid: int,
        script: Path,
        script_args: Sequence[str],
        conc: int,
        seconds: int,
    ) -> Run:
        """Run wrk (one thread) pinned to CPU 1 against the server ``pid`` on ``port``.

        The script's ``done()`` prints one ``WRK_RESULT {json}`` line with requests,
        duration_us, p50_us, p99_us, errors and (optionally) status_errors.
        """
        argv = [
            *self.affinity(LOAD_CPU),
            "wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(script), f"http://127.0.0.1:{port}",
            "--", *script_args,
        ]  # fmt: skip
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = process_cpu_seconds(pid)
        start = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        wall = time.monotonic() - start
        server_cpu = (process_cpu_seconds(pid) - server_before) / wall
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_cpu = (
            usage.ru_utime - usage_before.ru_utime + usage.ru_stime - usage_before.ru_stime
        ) / wall
        for line in done.stdout.splitlines():
            if line.startswith("WRK_RESULT "):
                result = json.loads(line.removeprefix("WRK_RESULT "))
                return Run(
                    ops=result["requests"] / (result["duration_us"] / 1e6),
                    p50_ms=result["p50_us"] / 1000,
                    p99_ms=result["p99_us"] / 1000,
                    errors=int(result["errors"]),
                    server_cpu=server_cpu,
                    wrk_cpu=wrk_cpu,
                    requests=int(result["requests"]),
                    status_errors=int(result.get("status_errors", 0)),
                )
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")


@contextlib.contextmanager
def started(
    argv: list[str],
    ready_url: str,
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    seconds: float = 60,
) -> Iterator[int]:
    """Start ``argv`` (output to ``log``), wait until ``ready_url`` answers below 500, yield
    its pid, and stop it at the end (SIGTERM, then SIGKILL after 15 s)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + seconds
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[:3]} exited {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:3]} not ready in {seconds:g}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def calls_per_second(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float
) -> float:
    """Calls per second of ``call`` from ``concurrency`` loops for ``seconds``."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def other_cpu_use() -> float:
    """Fraction of all CPUs busy over the next second (call it while nothing of ours runs)."""

    def sample() -> list[int]:
        return [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]

    before = sample()
    time.sleep(1)
    delta = [b - a for a, b in zip(before, sample(), strict=True)]
    return 1 - (delta[3] + delta[4]) / max(1, sum(delta))  # idle + iowait


def make_console(width: int = 130) -> Console:
    console = Console(log_path=False)
    if not console.is_terminal:
        console.width = width  # make/CI logs: fit the whole table
    return console


def preflight(console: Console) -> bool:
    """False (after saying how to install it) when wrk is missing; warns about a busy machine."""
    if shutil.which("wrk") is None:
        console.print(f"[red]wrk not found.[/red] Install it with:\n  {WRK_INSTALL}")
        return False
    if (busy := other_cpu_use()) > 0.1:
        console.print(f"[yellow]other work uses {busy:.0%} of the CPUs: expect noisy ratios")
    return True


def new_table(title: str, caption: str, columns: Sequence[str], left: Sequence[str]) -> Table:
    """A Rich table whose ``columns`` are right-aligned except those in ``left``."""
    table = Table(title=title, caption=caption)
    for name in columns:
        table.add_column(name, justify="left" if name in left else "right")
    return table


def print_noise_notes(console: Console, pinned: bool) -> None:
    """Say when the numbers just printed are likely noisy."""
    if not pinned:
        console.print("[yellow]not pinned (fewer than 2 CPUs or no taskset): numbers are noisy")
    if (busy := other_cpu_use()) > 0.1:
        console.print(f"[yellow]other work used {busy:.0%} of the CPUs after the run: noisy ratios")


def verdict(met: bool) -> str:
    return "[bold green]MET" if met else "[bold red]NOT MET"


def main() -> int:
    parser = argparse.ArgumentParser(description="The bare endpoint of the benchmarks.")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", required=True)
    serve(bare_app, parser.parse_args().serve_bare)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""State API throughput and latency through `daprforge sidecar`, against a bare uvicorn app.

Run with ``make bench`` (``.venv/bin/python bench/sidecar_state.py``); never run by tests.

For each store (in-memory, sqlite, postgresql v1) the script starts the sidecar as a
subprocess with a one-component resources dir, saves ``--keys`` keys, then drives
``GET /v1.0/state/statestore/k<i>`` and ``POST /v1.0/state/statestore`` (one item, random
keys) with wrk at concurrency 1 and 32. The baseline is a plain ASGI callable under the
sidecar's uvicorn settings that answers GET with the same JSON document and POST with 204,
driven by the same wrk script. It runs for the whole session and every cell alternates
bare and sidecar runs (after a warm-up of each), so each ratio pairs runs taken seconds apart
and a busy machine skews both sides alike; the table shows medians over the rounds.

With two or more cores the servers are pinned to CPU 0 and wrk to CPU 1, and the table shows
each side's CPU use: a server near 100% and wrk well below it means the server, not the load
generator, is the limit. Loopback only; about 4-5 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.panel import Panel

from _common import (
    BENCH_DIR,
    DOC,
    VALUE,
    Machine,
    Run,
    free_port,
    make_console,
    new_table,
    preflight,
    print_noise_notes,
    verdict,
)

WRK_SCRIPT = BENCH_DIR / "wrk_state.lua"
STORES = ("in-memory", "sqlite", "postgresql")
CONCURRENCIES = (1, 32)
TARGET_RATIO = 0.60
PG_DSN = "host=127.0.0.1 user=postgres dbname=test"
STATE_PATH = "/v1.0/state/statestore"


@dataclass(frozen=True)
class Cell:
    """One (store, op, concurrency) cell: rounds of a bare run followed by a sidecar run."""

    store: str
    op: str
    concurrency: int
    runs: list[Run]
    bare: list[Run]

    def median(self, attr: str, runs: list[Run] | None = None) -> float:
        return statistics.median(getattr(run, attr) for run in (runs or self.runs))

    @property
    def ratios(self) -> list[float]:
        return [run.ops / bare.ops for run, bare in zip(self.runs, self.bare, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


class Bench:
    def __init__(self, console: Console, args: argparse.Namespace) -> None:
        self.console = console
        self.duration: int = args.duration
        self.warmup: int = args.warmup
        self.rounds: int = args.rounds
        self.keys: int = args.keys
        self.machine = Machine()
        self.pin = self.machine.pin
        self.cells: list[Cell] = []

    def wrk(self, port: int, pid: int, op: str, conc: int, seconds: int) -> Run:
        """Run wrk pinned to CPU 1 against the server ``pid`` listening on ``port``."""
        args = [op, STATE_PATH, str(self.keys), VALUE]
        return self.machine.wrk(port, pid, WRK_SCRIPT, args, conc, seconds)

    def measure(self, store: str, server: tuple[int, int], bare: tuple[int, int]) -> None:
        """Every cell for one store; each round runs the bare server, then the sidecar."""
        for op in ("get", "save"):
            for conc in CONCURRENCIES:
                self.wrk(*bare, op, conc, self.warmup)
                self.wrk(*server, op, conc, self.warmup)
                cell = Cell(store, op.upper(), conc, runs=[], bare=[])
                for _ in range(self.rounds):
                    cell.bare.append(self.wrk(*bare, op, conc, self.duration))
                    cell.runs.append(self.wrk(*server, op, conc, self.duration))
                self.cells.append(cell)
                ratios = " ".join(f"{r:.2f}" for r in cell.ratios)
                self.console.log(
                    f"{store:<10} {cell.op:<4} c={conc:<2} {cell.median('ops'):>7.0f} ops/s "
                    f"(bare {cell.median('ops', cell.bare):.0f})  ratio per round: {ratios}"
                )

    @contextlib.contextmanager
    def bare_server(self, tmp: Path) -> Iterator[tuple[int, int]]:
        with self.machine.bare_server(tmp) as (port, pid):
            body = httpx.get(f"http://127.0.0.1:{port}{STATE_PATH}/k0").content
            self.console.log(f"bare endpoint up; GET body: {len(body)} bytes")
            yield port, pid

    def run_store(self, store: str, tmp: Path, bare: tuple[int, int]) -> None:
        resources = tmp / f"resources-{store}"
        resources.mkdir()
        metadata, cleanup = store_metadata(store, tmp)
        component = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "statestore"},
            "spec": {"type": f"state.{store}", "version": "v1", "metadata": metadata},
        }
        (resources / "statestore.yaml").write_text(yaml.safe_dump(component, sort_keys=False))
        port = free_port()
        argv = [
            sys.executable, "-m", "daprforge", "sidecar", "--app-id", "bench",
            "--dapr-http-port", str(port), "--resources-path", str(resources),
            "--log-level", "warn",
        ]  # fmt: skip
        try:
            log = tmp / f"{store}.log"
            with self.machine.server(argv, port, "/v1.0/healthz/outbound", log) as pid:
                self.populate(port)
                self.measure(store, (port, pid), bare)
        finally:
            cleanup()

    def populate(self, port: int) -> None:
        """Save every key the GET runs read, then check one reads back as DOC."""
        url = f"http://127.0.0.1:{port}{STATE_PATH}"
        with httpx.Client(timeout=30) as client:
            for start in range(0, self.keys, 100):
                batch = range(start, min(start + 100, self.keys))
                client.post(
                    url, json=[{"key": f"k{i}", "value": DOC} for i in batch]
                ).raise_for_status()
            got = client.get(f"{url}/k{self.keys - 1}")
        if got.status_code != 200 or got.json() != DOC:
            raise RuntimeError(f"read-back failed: {got.status_code} {got.text[:200]}")
        self.console.log(f"saved {self.keys} keys; sidecar GET body: {len(got.content)} bytes")


def store_metadata(store: str, tmp: Path) -> tuple[list[dict[str, str]], Callable[[], None]]:
    """Component metadata for ``store``, and how to remove what the store leaves behind."""
    if store == "sqlite":
        return [{"name": "connectionString", "value": str(tmp / "state.db")}], lambda: None
    if store != "postgresql":
        return [], lambda: None
    import psycopg  # the sidecar extra; only needed here

    suffix = uuid.uuid4().hex[:12]
    table, meta_table = f"bench_state_{suffix}", f"bench_meta_{suffix}"

    def drop() -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}, {meta_table}")

    with psycopg.connect(PG_DSN, connect_timeout=3):
        pass  # fail early (and skip the store) if the server is unreachable
    metadata = [
        {"name": "connectionString", "value": PG_DSN},
        {"name": "tableName", "value": table},
        {"name": "metadataTableName", "value": meta_table},
    ]
    return metadata, drop


def report(console: Console, cells: list[Cell], rounds: int, pinned: bool) -> None:
    table = new_table(
        "daprforge sidecar state API vs bare uvicorn (wrk, loopback)",
        f"medians of {rounds} round(s), each a bare run then a sidecar run; "
        "µs/op = server CPU time per request; server CPU = its CPU time / wall time "
        "(100% = one core); wrk CPU is the highest of the cell",
        columns=(
            *("store", "op", "conc", "ops/s", "p50 ms", "p99 ms", "errors"),
            *("bare ops/s", "vs bare", "CPU µs/op", "bare µs/op", "server CPU", "wrk CPU"),
        ),
        left=("store", "op"),
    )
    for c in cells:
        table.add_row(
            c.store,
            c.op,
            str(c.concurrency),
            f"{c.median('ops'):,.0f}",
            f"{c.median('p50_ms'):.2f}",
            f"{c.median('p99_ms'):.2f}",
            str(sum(run.errors for run in c.runs + c.bare)),
            f"{c.median('ops', c.bare):,.0f}",
            f"{c.ratio:.2f}",
            f"{c.median('cpu_us'):.0f}",
            f"{c.median('cpu_us', c.bare):.0f}",
            f"{c.median('server_cpu'):.0%}",
            f"{max(run.wrk_cpu for run in c.runs + c.bare):.0%}",
        )
    console.print(table)
    print_noise_notes(console, pinned)

    memory_get = {c.concurrency: c for c in cells if c.store == "in-memory" and c.op == "GET"}
    lines = [
        f"in-memory GET / bare GET at c={conc}: [bold]{cell.ratio:.2f}[/bold]"
        f"  (rounds: {' '.join(f'{r:.2f}' for r in cell.ratios)})"
        for conc, cell in sorted(memory_get.items())
    ]
    top = max(CONCURRENCIES)
    if top in memory_get:
        cell = memory_get[top]
        cost = cell.median("cpu_us", cell.bare) / cell.median("cpu_us")
        lines.append(f"CPU-cost ratio at c={top} (bare µs/op / in-memory µs/op): {cost:.2f}")
        met = verdict(cell.ratio >= TARGET_RATIO)
        lines.append(f"target: ≥ {TARGET_RATIO:.2f} of bare throughput at c={top}: {met}")
    else:
        lines.append("[red]target not evaluated: the in-memory GET run is missing")
    console.print(Panel("\n".join(lines), title="issue target", expand=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per timed run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per cell")
    parser.add_argument("--rounds", type=int, default=3, help="bare/sidecar run pairs per cell")
    parser.add_argument("--keys", type=int, default=1000, help="keys saved before GET runs")
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated subset")
    args = parser.parse_args()

    console = make_console()
    if not preflight(console):
        return 2
    bench = Bench(console, args)
    with (
        tempfile.TemporaryDirectory(prefix="daprforge-bench-") as tmp,
        bench.bare_server(Path(tmp)) as bare,
    ):
        for store in filter(None, args.stores.split(",")):
            try:
                bench.run_store(store, Path(tmp), bare)
            except Exception as exc:  # report it and go on with the other stores
                console.print(f"[red]{store}: skipped: {exc}")
    report(console, bench.cells, args.rounds, bench.pin)
    return 0


if __name__ == "__main__":
    sys.exit(main())

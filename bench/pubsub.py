"""Pub/sub throughput and latency through `daprforge sidecar`, against a bare uvicorn app.

Run with ``make bench`` (``.venv/bin/python bench/pubsub.py``); never run by tests.

What is measured, for pubsub.in-memory and pubsub.redis (Redis Streams on 127.0.0.1:6379,
component defaults apart from redisHost), at publish concurrency 1 and 32:

- The path is end to end: wrk publishes ``POST /v1.0/publish/pubsub/<topic>`` (a small JSON
  body carrying a sequence number, see wrk_pubsub.lua) for a fixed time; the sidecar wraps
  each event in its CloudEvent envelope and delivers it to a subscriber app, a minimal ASGI
  app under uvicorn in its own process that the sidecar found through ``GET /dapr/subscribe``.
  The app acks at once (200 ``{"status":"SUCCESS"}``) and records, per delivery, the
  sequence number and the receive time.
- events/s = distinct events delivered and acked ÷ the time from the first delivery of the
  run to the last one. After wrk stops the script waits (at most ``--drain-timeout``) until
  every event wrk saw accepted has arrived, deliveries have stopped and, for Redis, the
  consumer group has nothing pending (every entry XACKed), so a backlog that the sidecar
  builds up while publishing is paid for in the window rather than left out. "tail ms" is
  how long after wrk stopped the last event arrived; "lost" counts events wrk saw accepted
  (204) that never arrived, "dup" events delivered more than once.
- vs bare = events/s ÷ the request rate of the bare endpoint (the same minimal ASGI app that
  sidecar_state.py uses, answering POST with 204 under the sidecar's uvicorn settings),
  driven by the same wrk script at the same concurrency. Every cell alternates a bare run
  and a pub/sub run, after a warm-up of each, so each ratio pairs runs taken seconds apart;
  the table shows medians over the rounds.
- Latency is publish→delivery on one clock. wrk's Lua has no clock finer than a second, so
  its own requests cannot carry a usable timestamp; instead a probe thread in this script
  publishes ``{"probe": <time.monotonic_ns()>}`` to the same topic at ``--probe-rate``
  events/s while wrk runs, and the app subtracts that from its own ``time.monotonic_ns()``
  on arrival (CLOCK_MONOTONIC is system-wide, so both processes read the same clock). The
  probe's events queue behind wrk's exactly like them (same topic, same subscription, same
  back-pressure), so "e2e p50/p99" is the delivery latency of an event published at a random
  moment under that load; percentiles pool the probes of every round. The probe's timestamp
  is taken just before its request is written, so the figure includes the publish call
  itself (and, for in-memory, the wait for the previous delivery). The "idle" rows come from
  the probe alone (``--idle-events`` at the same rate): the latency of an unloaded sidecar.
  wrk's own request latency is the "publish p99" column: how long POST /publish took.

Placement (two or more CPUs and taskset): the sidecar and the bare endpoint run on CPU 0,
each with the core to itself; wrk, the subscriber app and this script (probe, polling) share
CPU 1. The app's and wrk's CPU columns show whether that side was ever the limit. The
in-memory component delivers one event at a time per subscription and makes the next
publish wait for the previous delivery (back-pressure), so its rate is that of one delivery
round trip after another. Redis runs ``concurrency`` (default 10) delivery workers and
publishing does not wait for them: when the sidecar publishes faster than it delivers, a
backlog builds up, which shows in "tail ms" and in the e2e latency. The probe's events (about
``--probe-rate`` per second) are real events and count in events/s.

Redis topics are named ``bench-pubsub-<random>``; the stream is trimmed after every run and
deleted at the end. Loopback only; about 2-3 minutes with the defaults. The script prints the
issue's targets (in-memory ≥ 2,000 events/s and ≥ 0.30 of the bare endpoint's rate, judged at
c=32 as sidecar_state.py judges its target) as MET / NOT MET and always exits 0 once it ran.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.panel import Panel

from _common import (
    BENCH_DIR,
    LOAD_CPU,
    Machine,
    Run,
    free_port,
    make_console,
    new_table,
    preflight,
    print_noise_notes,
    process_cpu_seconds,
    serve,
    verdict,
)

WRK_SCRIPT = BENCH_DIR / "wrk_pubsub.lua"
COMPONENTS = ("in-memory", "redis")
CONCURRENCIES = (1, 32)
TARGET_EVENTS = 2000.0
TARGET_RATIO = 0.30
PUBSUB = "pubsub"
ROUTE = "/events"
APP_ID = "bench-pubsub"
REDIS = ("127.0.0.1", 6379)
ACK = b'{"status":"SUCCESS"}'
JSON_HEADERS = [(b"content-type", b"application/json")]


# --------------------------------------------------------------------------- subscriber app


class Subscriber:
    """The subscriber app: acks every event at once and keeps count, in its own process.

    ``GET /dapr/subscribe`` subscribes ``ROUTE`` to the topic; ``GET /stats`` returns what
    was recorded since the last ``POST /reset``.
    """

    def __init__(self, pubsub: str, topic: str) -> None:
        entry = {"pubsubname": pubsub, "topic": topic, "route": ROUTE}
        self.subscriptions = json.dumps([entry]).encode()
        self.reset()

    def reset(self) -> None:
        self.deliveries = 0
        self.seqs: set[int] = set()
        self.probes = 0
        self.first_ns = 0
        self.last_ns = 0
        self.latencies_ns: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == ROUTE:
            now = time.monotonic_ns()
            body = await _read_body(receive)
            await _respond(send, 200, ACK)
            self.record(body, now)
        elif path == "/dapr/subscribe":
            await _respond(send, 200, self.subscriptions)
        elif path == "/stats":
            stats = {
                "deliveries": self.deliveries,
                "seqs": len(self.seqs),
                "probes": self.probes,
                "first_ns": self.first_ns,
                "last_ns": self.last_ns,
                "latencies_ns": self.latencies_ns,
            }
            await _respond(send, 200, json.dumps(stats).encode())
        elif path == "/reset" and scope["method"] == "POST":
            await _read_body(receive)
            self.reset()
            await _respond(send, 204, b"")
        else:
            await _respond(send, 404, b"")

    def record(self, body: bytes, now: int) -> None:
        self.deliveries += 1
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        seq = _int_after(body, b'"seq":')
        if seq is not None:
            self.seqs.add(seq)
            return
        sent = _int_after(body, b'"probe":')
        if sent is not None:
            self.probes += 1
            self.latencies_ns.append(now - sent)


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _int_after(body: bytes, key: bytes) -> int | None:
    """The unsigned integer right after ``key`` in ``body`` (the CloudEvent's data is the
    published JSON, compact), without decoding the whole event."""
    start = body.find(key)
    if start < 0:
        return None
    start += len(key)
    end = start
    while end < len(body) and 48 <= body[end] <= 57:
        end += 1
    return int(body[start:end]) if end > start else None


# --------------------------------------------------------------------------- latency probe


class Probe(threading.Thread):
    """Publishes ``{"probe": <monotonic ns>}`` at ``rate`` per second on its own connection.

    Stops after ``limit`` publishes, or when ``stop()`` is called. A publish slower than the
    interval delays the next one (no catch-up bursts).
    """

    def __init__(self, port: int, path: str, rate: float, limit: int | None = None) -> None:
        super().__init__(name="probe", daemon=True)
        self.port = port
        self.path = path
        self.interval = 1 / rate
        self.limit = limit
        self.sent = 0
        self.failed = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=15)

    def run(self) -> None:
        headers = {"Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        due = time.monotonic() + self.interval
        try:
            while self.limit is None or self.sent + self.failed < self.limit:
                pause = due - time.monotonic()
                if self._stop_event.wait(max(0.0, pause)):
                    return
                body = b'{"probe":%d}' % time.monotonic_ns()
                try:
                    conn.request("POST", self.path, body, headers)
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 204
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()  # http.client reconnects on the next request
                self.sent += ok
                self.failed += not ok
                due = max(due + self.interval, time.monotonic())
        finally:
            conn.close()


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Delivery:
    """One timed pub/sub run: wrk's publishing, and what reached the app."""

    publish: Run
    events: int
    """Distinct events delivered: wrk's and the probe's."""
    rate: float
    """events / (last delivery - first delivery), per second."""
    lost: int
    dups: int
    tail_ms: float
    latencies_ms: list[float]
    sidecar_cpu_s: float
    app_cpu_s: float
    wall: float
    """Seconds from wrk's start until the last delivery (at least wrk's run)."""

    @property
    def cpu_us(self) -> float:
        """Sidecar CPU time per delivered event, in microseconds."""
        return self.sidecar_cpu_s / self.events * 1e6 if self.events else 0.0

    @property
    def sidecar_cpu(self) -> float:
        return self.sidecar_cpu_s / self.wall

    @property
    def app_cpu(self) -> float:
        return self.app_cpu_s / self.wall

    @property
    def errors(self) -> int:
        return self.publish.errors


@dataclass
class Cell:
    """One (component, concurrency) cell: rounds of a bare run followed by a pub/sub run."""

    component: str
    concurrency: int
    runs: list[Delivery] = field(default_factory=list)
    bare: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(run, attr) for run in self.runs)

    def bare_median(self, attr: str) -> float:
        return statistics.median(getattr(run, attr) for run in self.bare)

    @property
    def ratios(self) -> list[float]:
        return [run.rate / bare.ops for run, bare in zip(self.runs, self.bare, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def latencies_ms(self) -> list[float]:
        return [ms for run in self.runs for ms in run.latencies_ms]


@dataclass(frozen=True)
class Idle:
    """The probe alone: publish→delivery latency of an unloaded sidecar."""

    component: str
    latencies_ms: list[float]
    lost: int


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, console: Console, args: argparse.Namespace) -> None:
        self.console = console
        self.duration: int = args.duration
        self.warmup: int = args.warmup
        self.rounds: int = args.rounds
        self.probe_rate: float = args.probe_rate
        self.idle_events: int = args.idle_events
        self.drain_timeout: float = args.drain_timeout
        self.machine = Machine()
        self.pin = self.machine.pin
        self.cells: list[Cell] = []
        self.idle: list[Idle] = []
        self.http = httpx.Client(timeout=10)

    # -- one component ------------------------------------------------------------------------

    def run_component(self, component: str, tmp: Path, bare: tuple[int, int]) -> None:
        topic = f"bench-pubsub-{uuid.uuid4().hex[:12]}"
        redis_client = _redis_client() if component == "redis" else None
        try:
            with self.world(component, topic, tmp, redis_client) as world:
                world.check()
                self.console.log(f"{component}: sidecar delivers to the app (topic {topic})")
                for conc in CONCURRENCIES:
                    self.measure(world, conc, bare)
                self.idle_pass(world)
        finally:
            if redis_client is not None:
                with contextlib.suppress(Exception):
                    redis_client.delete(topic)
                redis_client.close()

    @contextlib.contextmanager
    def world(self, component: str, topic: str, tmp: Path, redis: Any) -> Iterator[World]:
        """The subscriber app (CPU 1), then the sidecar (CPU 0) subscribed for it."""
        resources = tmp / f"resources-{component}"
        resources.mkdir()
        metadata = []
        if component == "redis":
            metadata = [{"name": "redisHost", "value": f"{REDIS[0]}:{REDIS[1]}"}]
        doc = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": PUBSUB},
            "spec": {"type": f"pubsub.{component}", "version": "v1", "metadata": metadata},
        }
        (resources / "pubsub.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        app_port, port = free_port(), free_port()
        app_argv = [
            sys.executable, str(Path(__file__).resolve()),
            "--serve-subscriber", str(app_port), "--topic", topic,
        ]  # fmt: skip
        sidecar_argv = [
            sys.executable, "-m", "daprforge", "sidecar", "--app-id", APP_ID,
            "--app-port", str(app_port), "--dapr-http-port", str(port),
            "--resources-path", str(resources), "--log-level", "warn",
        ]  # fmt: skip
        app_log, sidecar_log = tmp / f"app-{component}.log", tmp / f"sidecar-{component}.log"
        with (
            self.machine.server(app_argv, app_port, "/dapr/subscribe", app_log, LOAD_CPU) as app,
            self.machine.server(sidecar_argv, port, "/v1.0/healthz", sidecar_log) as sidecar,
        ):
            yield World(self, component, topic, port, sidecar, app_port, app, redis)

    def measure(self, world: World, conc: int, bare: tuple[int, int]) -> None:
        """One cell; each round runs the bare endpoint, then publishes through the sidecar."""
        self.wrk(bare, conc, self.warmup)
        world.run(conc, self.warmup, probe=False)
        cell = Cell(world.component, conc)
        for _ in range(self.rounds):
            cell.bare.append(self.wrk(bare, conc, self.duration))
            cell.runs.append(world.run(conc, self.duration, probe=True))
        self.cells.append(cell)
        ratios = " ".join(f"{r:.2f}" for r in cell.ratios)
        lost = sum(run.lost for run in cell.runs)
        published = statistics.median(run.publish.ops for run in cell.runs)
        self.console.log(
            f"{world.component:<9} c={conc:<2} {cell.median('rate'):>6.0f} events/s "
            f"(published {published:.0f}/s; bare {cell.bare_median('ops'):.0f} req/s)"
            f"  ratio per round: {ratios}"
            f"  e2e p50 {percentile(cell.latencies_ms, 50):.2f} ms"
            f"  p99 {percentile(cell.latencies_ms, 99):.2f} ms  lost {lost}"
        )

    def idle_pass(self, world: World) -> None:
        world.reset()
        probe = Probe(world.port, world.publish_path, self.probe_rate, self.idle_events)
        probe.start()
        probe.join(timeout=self.idle_events / self.probe_rate + 60)
        probe.stop()
        stats = world.drain(0, probe.sent, time.monotonic())
        world.trim()
        latencies = [ns / 1e6 for ns in stats["latencies_ns"]]
        self.idle.append(Idle(world.component, latencies, probe.sent - stats["probes"]))
        self.console.log(
            f"{world.component:<9} idle: {len(latencies)} probe events, "
            f"p50 {percentile(latencies, 50):.2f} ms  p99 {percentile(latencies, 99):.2f} ms"
        )

    def wrk(self, server: tuple[int, int], conc: int, seconds: int, path: str = "/") -> Run:
        port, pid = server
        return self.machine.wrk(port, pid, WRK_SCRIPT, [path], conc, seconds)


@dataclass
class World:
    """A running subscriber app and sidecar for one component and topic."""

    bench: Bench
    component: str
    topic: str
    port: int
    sidecar_pid: int
    app_port: int
    app_pid: int
    redis: Any = None

    @property
    def publish_path(self) -> str:
        return f"/v1.0/publish/{PUBSUB}/{self.topic}"

    def stats(self) -> dict[str, Any]:
        response = self.bench.http.get(f"http://127.0.0.1:{self.app_port}/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset(self) -> None:
        self.bench.http.post(f"http://127.0.0.1:{self.app_port}/reset").raise_for_status()

    def pending(self) -> int:
        """Entries delivered but not yet XACKed (Redis); 0 for in-memory."""
        if self.redis is None:
            return 0
        return int(self.redis.xpending(self.topic, APP_ID)["pending"])

    def trim(self) -> None:
        """Drop the run's (acked) entries so the stream does not grow over the session."""
        if self.redis is not None:
            self.redis.xtrim(self.topic, maxlen=0, approximate=False)

    def check(self) -> None:
        """One event must make it through before anything is timed."""
        self.reset()
        body = b'{"seq":1}'
        headers = {"content-type": "application/json"}
        url = f"http://127.0.0.1:{self.port}{self.publish_path}"
        response = self.bench.http.post(url, content=body, headers=headers)
        if response.status_code != 204:
            raise RuntimeError(f"publish answered {response.status_code}: {response.text}")
        stats = self.drain(1, 0, time.monotonic(), timeout=10)
        if stats["seqs"] != 1:
            raise RuntimeError("the test event was not delivered to the app within 10 s")
        self.trim()

    def drain(
        self, expected: int, probes: int, wrk_end: float, timeout: float | None = None
    ) -> dict[str, Any]:
        """Wait until ``expected`` wrk events and ``probes`` probe events arrived, deliveries
        stopped and nothing is pending; at most ``timeout`` seconds. Returns the app's stats."""
        deadline = wrk_end + (self.bench.drain_timeout if timeout is None else timeout)
        previous = -1
        while True:
            stats = self.stats()
            arrived = stats["seqs"] >= expected and stats["probes"] >= probes
            settled = stats["deliveries"] == previous and self.pending() == 0
            if (arrived and settled) or time.monotonic() > deadline:
                return stats
            previous = stats["deliveries"]
            time.sleep(0.1)

    def run(self, conc: int, seconds: int, *, probe: bool) -> Delivery:
        """Publish with wrk for ``seconds`` (and probe), wait for the tail, read the app."""
        self.reset()
        sidecar_before = process_cpu_seconds(self.sidecar_pid)
        app_before = process_cpu_seconds(self.app_pid)
        start = time.monotonic()
        prober = Probe(self.port, self.publish_path, self.bench.probe_rate) if probe else None
        if prober is not None:
            prober.start()
        try:
            publish = self.bench.wrk(
                (self.port, self.sidecar_pid), conc, seconds, self.publish_path
            )
        finally:
            if prober is not None:
                prober.stop()
        wrk_end = time.monotonic()
        accepted = publish.requests - publish.status_errors
        stats = self.drain(accepted, prober.sent if prober else 0, wrk_end)
        sidecar_cpu = process_cpu_seconds(self.sidecar_pid) - sidecar_before
        app_cpu = process_cpu_seconds(self.app_pid) - app_before
        self.trim()
        events = stats["seqs"] + stats["probes"]
        window_ns = stats["last_ns"] - stats["first_ns"]
        last = stats["last_ns"] / 1e9
        return Delivery(
            publish=publish,
            events=events,
            rate=events / (window_ns / 1e9) if window_ns > 0 else 0.0,
            lost=max(0, accepted - stats["seqs"])
            + max(0, (prober.sent if prober else 0) - stats["probes"]),
            dups=stats["deliveries"] - events,
            tail_ms=max(0.0, last - wrk_end) * 1000,
            latencies_ms=[ns / 1e6 for ns in stats["latencies_ns"]],
            sidecar_cpu_s=sidecar_cpu,
            app_cpu_s=app_cpu,
            wall=max(last, wrk_end) - start,
        )


def _redis_client() -> Any:
    import redis  # the sidecar extra; only needed here

    client = redis.Redis(host=REDIS[0], port=REDIS[1], socket_timeout=5, socket_connect_timeout=3)
    client.ping()  # fail early (and skip the component) if the server is unreachable
    return client


# --------------------------------------------------------------------------- report


def report(console: Console, bench: Bench) -> None:
    table = new_table(
        "daprforge sidecar pub/sub, publish → delivered → acked, vs bare uvicorn (wrk, loopback)",
        f"medians of {bench.rounds} round(s), each a bare run then a pub/sub run; events/s = "
        "distinct events acked by the app ÷ first-to-last delivery; e2e = probe events' "
        "publish→delivery, pooled over rounds; publish p99 = wrk's POST /publish latency; "
        "µs/event = sidecar CPU time per event; CPU = CPU time / wall time (100% = one core), "
        "wrk's the highest of the cell",
        columns=(
            *("pubsub", "conc", "events/s", "e2e p50 ms", "e2e p99 ms", "publish p99 ms"),
            *("tail ms", "lost", "dup", "errors", "bare req/s", "vs bare", "µs/event"),
            *("bare µs/req", "sidecar CPU", "app CPU", "wrk CPU"),
        ),
        left=("pubsub",),
    )
    table.columns[0].no_wrap = True
    for c in bench.cells:
        lat = c.latencies_ms
        table.add_row(
            c.component,
            str(c.concurrency),
            f"{c.median('rate'):,.0f}",
            f"{percentile(lat, 50):.2f}",
            f"{percentile(lat, 99):.2f}",
            f"{statistics.median(run.publish.p99_ms for run in c.runs):.2f}",
            f"{c.median('tail_ms'):.0f}",
            str(sum(run.lost for run in c.runs)),
            str(sum(run.dups for run in c.runs)),
            str(sum(run.errors for run in c.runs) + sum(run.errors for run in c.bare)),
            f"{c.bare_median('ops'):,.0f}",
            f"{c.ratio:.2f}",
            f"{c.median('cpu_us'):.0f}",
            f"{c.bare_median('cpu_us'):.0f}",
            f"{c.median('sidecar_cpu'):.0%}",
            f"{c.median('app_cpu'):.0%}",
            f"{max(run.wrk_cpu for run in [*(r.publish for r in c.runs), *c.bare]):.0%}",
        )
    for idle in bench.idle:
        lat = idle.latencies_ms
        dash = "—"
        table.add_row(
            idle.component,
            "idle",
            dash,
            f"{percentile(lat, 50):.2f}",
            f"{percentile(lat, 99):.2f}",
            *(dash, dash, str(idle.lost), dash, dash, dash, dash, dash, dash, dash, dash, dash),
        )
    console.print(table)
    console.print(
        f"latency probe: {bench.probe_rate:g} events/s during every timed run; "
        f"idle rows: {bench.idle_events} probe events with nothing else running"
    )
    print_noise_notes(console, bench.pin)

    by_cell = {(c.component, c.concurrency): c for c in bench.cells}
    top = max(CONCURRENCIES)
    lines: list[str] = []
    for conc in CONCURRENCIES:
        cell = by_cell.get(("in-memory", conc))
        if cell is None:
            continue
        rounds = " ".join(f"{r:.2f}" for r in cell.ratios)
        events = cell.median("rate")
        note = "" if conc == top else "  (for information)"
        lines.append(
            f"in-memory c={conc}: [bold]{events:,.0f}[/bold] events/s, "
            f"[bold]{cell.ratio:.2f}[/bold] of bare (rounds: {rounds}){note}"
        )
    if (cell := by_cell.get(("in-memory", top))) is not None:
        events = cell.median("rate")
        lines.append(
            f"target: ≥ {TARGET_EVENTS:,.0f} events/s at c={top}: "
            f"{verdict(events >= TARGET_EVENTS)}"
        )
        lines.append(
            f"target: ≥ {TARGET_RATIO:.2f} of bare request rate at c={top}: "
            f"{verdict(cell.ratio >= TARGET_RATIO)}"
        )
        lines.append(
            f"sidecar CPU per in-memory event at c={top}: {cell.median('cpu_us'):.0f} µs "
            f"(bare endpoint per request: {cell.bare_median('cpu_us'):.0f} µs)"
        )
    else:
        lines.append("[red]targets not evaluated: the in-memory run is missing")
    for conc in CONCURRENCIES:
        if (cell := by_cell.get(("redis", conc))) is not None:
            published = statistics.median(run.publish.ops for run in cell.runs)
            lines.append(
                f"redis c={conc}: {cell.median('rate'):,.0f} events/s delivered "
                f"({published:,.0f}/s published), {cell.ratio:.2f} of bare, "
                f"e2e p99 {percentile(cell.latencies_ms, 99):.2f} ms (no target)"
            )
    console.print(Panel("\n".join(lines), title="issue targets", expand=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per timed run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per cell")
    parser.add_argument("--rounds", type=int, default=3, help="bare/pub-sub run pairs per cell")
    parser.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated subset")
    parser.add_argument(
        "--probe-rate", type=float, default=50, help="latency probe events per second"
    )
    parser.add_argument(
        "--idle-events", type=int, default=200, help="probe events of the idle latency pass"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60,
        help="longest wait for the tail of a run to be delivered, in seconds",
    )
    parser.add_argument("--serve-subscriber", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_subscriber:
        serve(Subscriber(PUBSUB, args.topic), args.serve_subscriber)
        return 0

    console = make_console(width=170)
    if not preflight(console):
        return 2
    bench = Bench(console, args)
    if bench.pin:
        # The probe thread and the polling share CPU 1 with wrk and the app, not the sidecar's.
        os.sched_setaffinity(0, {LOAD_CPU})
    with (
        tempfile.TemporaryDirectory(prefix="daprforge-bench-") as tmp,
        bench.machine.bare_server(Path(tmp)) as bare,
    ):
        console.log("bare endpoint up")
        for component in filter(None, args.components.split(",")):
            try:
                bench.run_component(component, Path(tmp), bare)
            except Exception as exc:  # report it and go on with the other components
                console.print(f"[red]{component}: skipped: {exc}")
    bench.http.close()
    report(console, bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())

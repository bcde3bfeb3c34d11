"""``daprforge run``: every app of a Multi-App Run template with its sidecar, like ``dapr run -f``.

Lifecycle:

1. Read and check the template, decide ports. Any problem: a message naming the file, the app
   and the key, exit code 2, nothing started. Same for ``--runtime daprd`` without daprd.
2. Start every sidecar (in parallel) and wait until each answers ``/v1.0/healthz/outbound``,
   so apps can call Dapr from their first line. A sidecar that does not come up: its last
   lines are shown, everything is stopped, exit code 1.
3. Start the apps (cwd = appDirPath, Dapr variables in the environment), then wait until
   each sidecar's ``/v1.0/healthz`` is 204 (the app port is open). After
   ``--health-timeout`` seconds an app that is still not up is reported with its last lines;
   we keep waiting (daprd has no timeout either) and say so if it comes up later.
4. Supervise. An app or sidecar that exits on its own is reported at once (exit code, last 20
   lines); the others keep running, as with the Dapr CLI. When every app process has
   exited the run ends by itself.
5. Ctrl-C / SIGTERM: apps first, then sidecars. Each gets SIGTERM on its whole process group,
   then SIGKILL after ``--grace-period`` seconds; a second Ctrl-C kills at once.

Exit code: 0 after a clean stop; 1 if an app or sidecar crashed, failed to start, or was never
healthy; 2 for an invalid template or missing runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
from rich.console import Console, RenderableType
from rich.text import Text

from daprforge.launch import SidecarStartError
from daprforge.runner.output import Output, crash_panel, describe_exit, problem_panel, summary_table
from daprforge.runner.plan import (
    AppPlan,
    PlanError,
    Runtime,
    check_support,
    find_daprd,
    plan_run,
)
from daprforge.runner.processes import ManagedProcess, make_sidecar, spawn
from daprforge.runner.template import RunTemplate, TemplateError, find_template, load_template

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
CRASH_LINES = 20


@dataclass(frozen=True)
class RunOptions:
    run_file: Path | None = None
    """A template file, or a folder holding ``dapr.yaml``; default: ``./dapr.yaml``."""
    runtime: Runtime = "daprforge"
    grace_period: float = 5.0
    health_timeout: float = 60.0
    sidecar_timeout: float = 30.0
    cwd: Path | None = None


def run_apps(options: RunOptions, console: Console | None = None) -> int:
    """Run until stopped; returns the process exit code."""
    console = console or Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    try:
        template = load_template(find_template(options.run_file, options.cwd or Path.cwd()))
    except TemplateError as exc:
        _error(errors, str(exc))
        return EXIT_INVALID
    problems, notes = check_support(template, options.runtime)
    if problems:
        for problem in problems:
            _error(errors, problem)
        return EXIT_INVALID
    daprd: str | None = None
    try:
        if options.runtime == "daprd":
            daprd = find_daprd()
        plans = plan_run(template, options.runtime)
    except PlanError as exc:
        _error(errors, str(exc))
        return EXIT_INVALID
    runner = Runner(template, plans, options, console, daprd=daprd, notes=notes)
    return asyncio.run(runner.main())


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _error(console: Console, message: str) -> None:
    console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


class Runner:
    def __init__(
        self,
        template: RunTemplate,
        plans: Sequence[AppPlan],
        options: RunOptions,
        console: Console,
        *,
        daprd: str | None,
        notes: Sequence[str] = (),
    ) -> None:
        self.template = template
        self.plans = list(plans)
        self.options = options
        self.console = console
        self.daprd = daprd
        self.notes = list(notes)
        self.apps: dict[str, ManagedProcess] = {}
        self.sidecars: dict[str, ManagedProcess] = {}
        self.failures: list[str] = []
        self.unhealthy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stop_requested = asyncio.Event()  # first Ctrl-C / SIGTERM
        self.force = asyncio.Event()  # second one: SIGKILL without waiting
        self.apps_exited = asyncio.Event()

    @property
    def with_command(self) -> list[AppPlan]:
        return [plan for plan in self.plans if plan.app.command]

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self.output = Output(self.console, [plan.app_id for plan in self.plans])
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.on_signal, signum)
        try:
            self.print_start()
            startup = asyncio.create_task(self.start_all())
            stop = asyncio.create_task(self.stop_requested.wait())
            await asyncio.wait({startup, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not startup.done():
                startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if await startup:
                    await self.supervise()
        finally:
            try:
                await self.shutdown()
                self.print_end()
            finally:
                await self.output.close()
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        return EXIT_FAILED if self.failures else EXIT_OK

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stop_requested.is_set():
            self.force.set()
            self.output.show(Text(f"{name} again: killing everything now", style="bold red"))
            return
        self.stop_requested.set()
        self.output.show(Text(f"\n{name} received: stopping", style="bold"))

    # ------------------------------------------------------------------ start

    def print_start(self) -> None:
        show = self.output.show
        for warning in (*self.template.warnings, *self.notes):
            show(Text.assemble(("warning: ", "bold yellow"), warning))
        label = self.template.name or str(self.template.path)
        runtime = "daprd" if self.daprd else "daprforge sidecar"
        title = f"daprforge run: {label} ({_count(len(self.plans), 'app')}, {runtime})"
        show(summary_table(self.plans, title, self.output.colours, self.template.path.parent))
        folders = sorted(
            {
                str(plan.app.app_dir / ".dapr" / "logs")
                for plan in self.plans
                if plan.app.daprd_log_destination != "console"
                or (plan.app.command and plan.app.app_log_destination != "console")
            }
        )
        for folder in folders:
            show(Text(f"log files: {folder}", style="dim"))

    async def start_all(self) -> bool:
        stamp = time.strftime("%Y%m%d%H%M%S")
        results = await asyncio.gather(*(self.start_sidecar(plan, stamp) for plan in self.plans))
        if not all(results):
            return False
        for plan in self.plans:
            if not plan.app.command:
                self.output.show(
                    Text(
                        f"'{plan.app_id}' has no command: only its sidecar runs "
                        f"(DAPR_HTTP_PORT={plan.dapr_http_port}"
                        + (f", app port {plan.app.app_port})" if plan.app.app_port else ")"),
                        style="yellow",
                    )
                )
            elif not await self.start_app(plan, stamp):
                return False
        self._spawn_task(self.wait_all_healthy())
        return True

    async def _log_file(self, plan: AppPlan, kind: str, stamp: str) -> TextIO | None:
        """``<appDirPath>/.dapr/logs/<appID>_<app|daprd>_<timestamp>.log``, as the Dapr CLI."""
        app = plan.app
        destination = app.app_log_destination if kind == "app" else app.daprd_log_destination
        if destination == "console":
            return None
        path = app.app_dir / ".dapr" / "logs" / f"{plan.app_id}_{kind}_{stamp}.log"
        return await self.output.open_log(path)

    async def start_sidecar(self, plan: AppPlan, stamp: str) -> bool:
        destination = plan.app.daprd_log_destination
        log_file = await self._log_file(plan, "daprd", stamp)
        sidecar = make_sidecar(plan, self.daprd, self.options.sidecar_timeout)
        try:
            process = await sidecar.spawn()
        except OSError as exc:
            self.fail(
                f"sidecar '{plan.app_id}' could not start",
                problem_panel(
                    f"sidecar '{plan.app_id}' could not start",
                    f"{' '.join(sidecar.command())}\n{exc}",
                    [],
                ),
            )
            return False
        managed = ManagedProcess(
            plan.app_id,
            "dapr",
            process,
            self.output,
            console=destination != "file",
            log_file=log_file,
        )
        self.sidecars[plan.app_id] = managed
        try:
            await sidecar.wait_ready()
        except SidecarStartError as exc:
            await managed.drained(1.0)
            reason = str(exc).splitlines()[0].rstrip(":")
            self.fail(
                f"sidecar '{plan.app_id}' did not start",
                problem_panel(
                    f"sidecar '{plan.app_id}' did not start",
                    f"{reason}\ncommand: {' '.join(sidecar.command())}",
                    [("its last lines", managed.last_lines(CRASH_LINES))],
                ),
            )
            return False
        self._spawn_task(self.watch(managed))
        return True

    async def start_app(self, plan: AppPlan, stamp: str) -> bool:
        destination = plan.app.app_log_destination
        log_file = await self._log_file(plan, "app", stamp)
        try:
            process = await spawn(
                plan.app.command, cwd=plan.app.app_dir, env=plan.app_env(os.environ)
            )
        except OSError as exc:
            self.fail(
                f"app '{plan.app_id}' could not start",
                problem_panel(
                    f"app '{plan.app_id}' could not start",
                    f"command {list(plan.app.command)} in {plan.app.app_dir}:\n"
                    f"{exc.strerror or exc}"
                    + (f": {exc.filename}" if getattr(exc, "filename", None) else ""),
                    [],
                ),
            )
            return False
        managed = ManagedProcess(
            plan.app_id,
            "app",
            process,
            self.output,
            console=destination != "file",
            log_file=log_file,
        )
        self.apps[plan.app_id] = managed
        self._spawn_task(self.watch(managed))
        return True

    # ------------------------------------------------------------------ health

    async def wait_all_healthy(self) -> None:
        checks = [plan for plan in self.with_command if plan.app.app_port is not None]
        results = await asyncio.gather(*(self.wait_healthy(plan) for plan in checks))
        if all(results) and not self.failures:
            count = len(self.plans)
            self.output.show(
                Text(
                    f"All {_count(count, 'app')} {'is' if count == 1 else 'are'} up. "
                    "Ctrl-C stops everything.",
                    style="bold green",
                )
            )

    async def wait_healthy(self, plan: AppPlan) -> bool:
        """Poll the sidecar's ``/v1.0/healthz`` until 204 (it waits for the app port)."""
        app = self.apps[plan.app_id]
        sidecar = self.sidecars[plan.app_id]
        loop = asyncio.get_running_loop()
        started = loop.time()
        last = "no answer"
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                if app.returncode is not None or sidecar.returncode is not None:
                    return False  # reported by its watcher
                try:
                    response = await client.get(f"{plan.dapr_url}/v1.0/healthz")
                except httpx.TransportError as exc:
                    last = f"no answer ({type(exc).__name__})"
                else:
                    if response.status_code == 204:
                        break
                    last = f"{response.status_code} {response.text.strip()}"
                if plan.app_id not in self.unhealthy and (
                    loop.time() - started > self.options.health_timeout
                ):
                    self.unhealthy.add(plan.app_id)
                    self.report_unhealthy(plan, app, sidecar, last)
                await asyncio.sleep(0.1)
        elapsed = loop.time() - started
        late = plan.app_id in self.unhealthy
        self.unhealthy.discard(plan.app_id)
        self.output.show(
            Text.assemble(
                ("✓ ", "green"),
                (plan.app_id, f"bold {self.output.colours[plan.app_id]}"),
                f" is up: listening on {plan.app.channel_address}:{plan.app.app_port}, "
                f"sidecar healthy ({elapsed:.1f}s{', later than expected' if late else ''})",
            )
        )
        return True

    def report_unhealthy(
        self, plan: AppPlan, app: ManagedProcess, sidecar: ManagedProcess, last: str
    ) -> None:
        address = f"{plan.app.channel_address}:{plan.app.app_port}"
        self.output.show(
            problem_panel(
                f"app '{plan.app_id}' is not coming up",
                f"after {self.options.health_timeout:g}s nothing listens on {address} "
                f"(GET {plan.dapr_url}/v1.0/healthz: {last}).\n"
                "Does the app listen on APP_PORT? Still waiting; Ctrl-C stops everything.",
                [
                    ("last lines of the app", app.last_lines(CRASH_LINES)),
                    ("last lines of its sidecar", sidecar.last_lines(5)),
                ],
            )
        )

    # ------------------------------------------------------------------ supervise

    async def watch(self, process: ManagedProcess) -> None:
        code = await process.wait()
        if process.stopping:
            return
        what = "app" if process.source == "app" else "sidecar"
        if code == 0:  # finished, or e.g. a sidecar asked to stop via POST /v1.0/shutdown
            self.output.show(
                Text(f"{what} '{process.app_id}' exited (exit code 0)", style="yellow")
            )
        else:
            self.fail(
                f"{what} '{process.app_id}' crashed ({describe_exit(code)})",
                crash_panel(process.app_id, process.source, code, process.last_lines(CRASH_LINES)),
            )
        running = [app for app in self.apps.values() if app.returncode is None]
        if process.source == "app" and not running and len(self.apps) == len(self.with_command):
            self.apps_exited.set()

    async def supervise(self) -> None:
        waits = {asyncio.create_task(self.stop_requested.wait())}
        if self.with_command:
            waits.add(asyncio.create_task(self.apps_exited.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if self.apps_exited.is_set() and not self.stop_requested.is_set():
            self.output.show(Text("every app has exited: stopping the sidecars", style="bold"))

    def fail(self, summary: str, panel: RenderableType) -> None:
        self.failures.append(summary)
        self.output.show(panel)

    # ------------------------------------------------------------------ stop

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        apps = sum(app.returncode is None for app in self.apps.values())
        sidecars = sum(car.returncode is None for car in self.sidecars.values())
        if apps or sidecars:
            self.output.show(
                Text(
                    f"stopping {_count(apps, 'app')}, then {_count(sidecars, 'sidecar')} "
                    f"(SIGKILL after {self.options.grace_period:g}s; Ctrl-C again to kill now)",
                    style="dim",
                )
            )
        grace, force = self.options.grace_period, self.force
        await asyncio.gather(*(app.stop(grace, force) for app in self.apps.values()))
        await asyncio.gather(*(car.stop(grace, force) for car in self.sidecars.values()))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        for app_id in sorted(self.unhealthy):
            self.failures.append(f"app '{app_id}' never became healthy")

    def print_end(self) -> None:
        if self.failures:
            self.output.show(
                Text(
                    "run ended with problems: " + "; ".join(self.failures),
                    style="bold red",
                )
            )
        else:
            self.output.show(Text("all stopped", style="dim"))

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

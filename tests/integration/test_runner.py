"""``daprforge run`` end to end: the runner is a real subprocess (``python -m daprforge run``)
starting real sidecars and real apps (``runner_apps/app.py``, stdlib only)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from textwrap import dedent

import httpx
import pytest
import pytest_asyncio

from daprforge.launch import free_port

APP = Path(__file__).parent / "runner_apps" / "app.py"
StartRunner = Callable[..., Awaitable["Runner"]]
WAIT = 20.0  # generous upper bound for anything to show up; normally well under 2 s


class Runner:
    """A ``daprforge run`` subprocess whose merged output is read continuously."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, check: str | Callable[[str], bool], limit: float = WAIT) -> str:
        """The first output line containing ``check`` (or matching it)."""
        match = (lambda line: check in line) if isinstance(check, str) else check
        deadline = time.monotonic() + limit
        while True:
            for line in self.lines:
                if match(line):
                    return line
            if self._reader.done() or time.monotonic() > deadline:
                pytest.fail(f"no line matching {check!r}; output so far:\n{self.text}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)

    async def exit_code(self, limit: float = WAIT) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), limit)
        except TimeoutError:
            pytest.fail(f"runner still running after {limit}s; output:\n{self.text}")
        await asyncio.wait_for(self._reader, 5)
        return code

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def kill(self) -> None:
        """Test clean-up: whatever happened, leave nothing behind."""
        pids = descendants(self.process.pid)
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not self._reader.done():
            self._reader.cancel()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a live process, None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0].decode(), int(fields[1])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has already exited


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None and stat[0] != "Z":
            parents[int(entry)] = stat[1]
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


async def wait_all_gone(pids: set[int], limit: float = 5.0) -> set[int]:
    for _ in range(int(limit / 0.05)):
        if not any(alive(pid) for pid in pids):
            break
        await asyncio.sleep(0.05)
    return {pid for pid in pids if alive(pid)}


@pytest_asyncio.fixture
async def start_runner(
    tmp_path: Path,
) -> AsyncIterator[StartRunner]:
    started: list[Runner] = []

    async def start(
        *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> Runner:
        base = {
            **os.environ,
            "DAPRFORGE_DATA_DIR": str(tmp_path / "data"),
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daprforge",
            "run",
            *args,
            cwd=cwd or tmp_path,
            env={**base, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        runner = Runner(process)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        await runner.kill()


def project(tmp_path: Path, apps: tuple[str, ...], template: str) -> Path:
    """A folder with ``dapr.yaml`` and one folder per app holding a copy of the test app."""
    for name in apps:
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(APP, tmp_path / name / "app.py")
    path = tmp_path / "dapr.yaml"
    path.write_text(dedent(template))
    return path


def prefixed(app_id: str, source: str, width: int) -> str:
    return f"{app_id:<{width}} {source:<4} | "


# ---------------------------------------------------------------------- end to end


async def test_two_apps_run_with_their_sidecars_and_prefixed_logs(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    alpha_port, beta_port, alpha_dapr = free_port(), free_port(), free_port()
    project(
        tmp_path,
        ("alpha", "beta"),
        f"""\
        version: 1
        common:
          env: {{GREETING: hello-from-common}}
        apps:
          - appDirPath: alpha
            appPort: {alpha_port}
            daprHTTPPort: {alpha_dapr}
            command: ["{sys.executable}", "app.py"]
            env: {{SAVE_KEY: runner-key, CHATTY: "3000"}}
          - appDirPath: beta
            appPort: {beta_port}
            command: ["{sys.executable}", "app.py"]
            appLogDestination: console
        """,
    )
    runner = await start_runner("-f", str(tmp_path))  # a folder: its dapr.yaml
    await runner.wait_for("All 2 apps are up")

    width = len("alpha")
    alpha_app, beta_app = prefixed("alpha", "app", width), prefixed("beta", "app", width)
    # the app saved a key through its own sidecar: DAPR_HTTP_PORT is wired
    await runner.wait_for(alpha_app + "saved runner-key through the sidecar: HTTP 204")
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            f"http://127.0.0.1:{alpha_dapr}/v1.0/state/statestore/runner-key"
        )
        assert response.status_code == 200
        assert response.json() == {"saved_by": "alpha"}
        assert (await client.get(f"http://127.0.0.1:{beta_port}/")).text == "hello from beta"
        # and the two apps reach each other: alpha's sidecar invokes beta
        invoked = await client.get(f"http://127.0.0.1:{alpha_dapr}/v1.0/invoke/beta/method/hi")
        assert invoked.status_code == 200, invoked.text
        assert invoked.text == "hello from beta"

    line = await runner.wait_for(alpha_app + "starting alpha:")
    assert f"APP_PORT={alpha_port} DAPR_HTTP_PORT={alpha_dapr} APP_PROTOCOL=http" in line
    assert "APP_CHANNEL_ADDRESS=127.0.0.1 DAPR_GRPC_PORT=None" in line
    assert f"GREETING=hello-from-common cwd={tmp_path / 'alpha'}" in line
    await runner.wait_for(beta_app + "beta listening on port")
    # both sidecars' own logs, prefixed with the app id and "dapr"
    await runner.wait_for(prefixed("alpha", "dapr", width) + "")
    await runner.wait_for(lambda text: text.startswith(prefixed("beta", "dapr", width)))
    # 3000 lines of 200+ characters (far more than a pipe holds) did not stall anything
    await runner.wait_for(alpha_app + "chatty line 2999 ")
    assert sum(line.startswith(alpha_app + "chatty line") for line in runner.lines) == 3000
    # the summary table
    header = await runner.wait_for("App ID")
    assert all(column in header for column in ("App port", "Dapr HTTP", "Resources"))
    assert "embedded defaults" in await runner.wait_for(str(alpha_dapr))

    pids = descendants(runner.process.pid)
    assert len(pids) >= 4  # two sidecars, two apps

    runner.signal(signal.SIGTERM)
    assert await runner.exit_code() == 0, runner.text
    assert "all stopped" in runner.text
    assert await wait_all_gone(pids) == set()

    # fileAndConsole (the default) also writes <appDir>/.dapr/logs/<id>_app_<time>.log
    (app_log,) = (tmp_path / "alpha" / ".dapr" / "logs").glob("alpha_app_*.log")
    assert "saved runner-key through the sidecar: HTTP 204\n" in app_log.read_text()
    (daprd_log,) = (tmp_path / "alpha" / ".dapr" / "logs").glob("alpha_daprd_*.log")
    assert "[alpha]" in daprd_log.read_text()
    # console only: no app log file for beta, but its sidecar log is there
    assert not list((tmp_path / "beta" / ".dapr" / "logs").glob("beta_app_*"))
    assert list((tmp_path / "beta" / ".dapr" / "logs").glob("beta_daprd_*"))


async def test_a_crash_is_reported_and_the_other_apps_keep_running(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    steady_port, steady_dapr = free_port(), free_port()
    project(
        tmp_path,
        ("steady", "crasher"),
        f"""\
        version: 1
        apps:
          - appDirPath: steady
            appPort: {steady_port}
            daprHTTPPort: {steady_dapr}
            command: ["{sys.executable}", "app.py"]
          - appDirPath: crasher
            command: ["{sys.executable}", "app.py"]
            env: {{EXIT_CODE: "3", EXIT_AFTER: "0.5"}}
        """,
    )
    runner = await start_runner(cwd=tmp_path)  # no -f: ./dapr.yaml
    title = await runner.wait_for("app 'crasher' crashed (exit code 3)")
    start = runner.lines.index(title)
    report = "\n".join(runner.lines[start : start + 12])
    assert "last " in report
    assert "crasher is giving up now" in report, runner.text

    # the other app and its sidecar are still up
    await runner.wait_for("✓ steady is up")
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"http://127.0.0.1:{steady_port}/")).text == "hello from steady"
        health = await client.get(f"http://127.0.0.1:{steady_dapr}/v1.0/healthz")
        assert health.status_code == 204

    runner.signal(signal.SIGTERM)
    assert await runner.exit_code() == 1, runner.text
    assert "run ended with problems: app 'crasher' crashed (exit code 3)" in runner.text


async def test_the_run_ends_when_every_app_has_exited(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    project(
        tmp_path,
        ("job",),
        f"""\
        version: 1
        apps:
          - appDirPath: job
            command: ["{sys.executable}", "app.py"]
            env: {{EXIT_CODE: "0"}}
        """,
    )
    runner = await start_runner("-f", str(tmp_path / "dapr.yaml"))
    assert await runner.exit_code() == 0, runner.text
    assert "app 'job' exited (exit code 0)" in runner.text
    assert "every app has exited: stopping the sidecars" in runner.text


async def test_sigterm_stops_everything_even_an_app_that_ignores_it(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    pid_file = tmp_path / "pids.txt"
    project(
        tmp_path,
        ("stubborn", "polite"),
        f"""\
        version: 1
        apps:
          - appDirPath: stubborn
            appPort: {free_port()}
            command: ["{sys.executable}", "app.py"]
            env: {{IGNORE_SIGTERM: "1", SPAWN_CHILD: "1", PID_FILE: "{pid_file}"}}
          - appDirPath: polite
            appPort: {free_port()}
            command: ["{sys.executable}", "app.py"]
        """,
    )
    runner = await start_runner("--grace-period", "1")
    await runner.wait_for("All 2 apps are up")
    await runner.wait_for("child of stubborn running (ignores SIGTERM)")
    recorded = {int(line) for line in pid_file.read_text().split()}
    assert len(recorded) == 2  # the app and its own child (a grandchild of the runner)
    pids = descendants(runner.process.pid)
    assert recorded <= pids
    assert len(pids) >= 5  # + two sidecars and the polite app

    started = time.monotonic()
    runner.signal(signal.SIGTERM)
    assert await runner.exit_code() == 0, runner.text
    took = time.monotonic() - started
    await runner.wait_for("got SIGTERM, ignoring it")  # it was asked first
    assert took >= 1.0  # ... and killed only after the grace period
    assert await wait_all_gone(pids) == set(), runner.text


async def test_an_app_that_never_listens_is_reported(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    port = free_port()
    project(
        tmp_path,
        ("sleepy",),
        f"""\
        version: 1
        apps:
          - appDirPath: sleepy
            appPort: {port}
            command: ["{sys.executable}", "app.py"]
            env: {{NEVER_LISTEN: "1"}}
        """,
    )
    runner = await start_runner("--health-timeout", "1")
    title = await runner.wait_for("app 'sleepy' is not coming up")
    start = runner.lines.index(title)
    report = "\n".join(runner.lines[start : start + 15])
    assert f"nothing listens on 127.0.0.1:{port}" in report
    assert "dapr is not ready: [app]" in report
    assert "starting sleepy" in report  # the app's last lines
    runner.signal(signal.SIGINT)
    assert await runner.exit_code() == 1, runner.text
    assert "app 'sleepy' never became healthy" in runner.text


# ---------------------------------------------------------------------- refused before start


async def test_runtime_daprd_without_daprd_fails_fast(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    project(
        tmp_path,
        ("orders",),
        f"""\
        version: 1
        apps:
          - appDirPath: orders
            command: ["{sys.executable}", "app.py"]
        """,
    )
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    runner = await start_runner("--runtime", "daprd", env={"PATH": str(empty)})
    assert await runner.exit_code() == 2, runner.text
    assert "'daprd' binary on PATH" in runner.text
    assert "dapr init --slim" in runner.text
    assert "drop '--runtime daprd'" in runner.text
    assert " | " not in runner.text  # nothing was started
    assert not (tmp_path / "orders" / ".dapr").exists()


async def test_an_invalid_template_starts_nothing(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    template = project(
        tmp_path,
        ("orders",),
        f"""\
        version: 1
        apps:
          - appDirPath: orders
            appPort: "8000"
            command: ["{sys.executable}", "app.py"]
        """,
    )
    runner = await start_runner("-f", "dapr.yaml")
    assert await runner.exit_code() == 2, runner.text
    assert re.search(
        rf"error: {re.escape(str(template))}: apps\[0\] \(appDirPath 'orders'\): "
        r"key 'appPort': expected an integer, got the string '8000'",
        runner.text,
    ), runner.text
    assert not (tmp_path / "orders" / ".dapr").exists()


async def test_a_command_that_does_not_exist_is_a_clear_error(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    project(
        tmp_path,
        ("orders",),
        """\
        version: 1
        apps:
          - appDirPath: orders
            command: ["no-such-program-here", "--flag"]
        """,
    )
    runner = await start_runner()
    assert await runner.exit_code() == 1, runner.text
    await runner.wait_for("app 'orders' could not start")
    await runner.wait_for("No such file or directory")
    assert "command ['no-such-program-here', '--flag'] in" in runner.text


async def test_a_sidecar_that_cannot_start_is_reported_and_its_app_not_started(
    tmp_path: Path, start_runner: StartRunner
) -> None:
    project(
        tmp_path,
        ("orders",),
        f"""\
        version: 1
        apps:
          - appDirPath: orders
            resourcesPaths: [components]
            command: ["{sys.executable}", "app.py"]
        """,
    )
    (tmp_path / "orders" / "components").mkdir()
    (tmp_path / "orders" / "components" / "store.yaml").write_text(
        dedent(
            """\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata: {name: statestore}
            spec: {type: state.nosuch, version: v1}
            """
        )
    )
    runner = await start_runner()
    assert await runner.exit_code() == 1, runner.text
    title = await runner.wait_for("sidecar 'orders' did not start")
    report = "\n".join(runner.lines[runner.lines.index(title) :])
    assert "sidecar exited with code 1" in report
    assert "state.nosuch" in report  # its own last lines
    assert "orders app  |" not in runner.text  # the app was never started

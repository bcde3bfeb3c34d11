"""Generated projects, rendered once per session, and the tools that check them.

Every project is generated through the real CLI into a session temp folder. Its checks run
as subprocesses in its own folder, with this environment's interpreter: daprforge is
installed there (editable, from this checkout), and so is everything a generated project
depends on, which ``test_projects.py`` verifies against the project's own requirements
instead of trusting it. One environment for all projects keeps the suite fast on two cores;
a fresh virtualenv per project would mostly test pip.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daprforge.cli import app
from tests.generated._variants import VARIANTS, Variant

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A console script of this environment (next to its python), else from PATH."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


@dataclass(frozen=True)
class Generated:
    variant: Variant
    root: Path


@dataclass(frozen=True)
class Completed:
    command: str
    returncode: int
    output: str

    def check(self) -> None:
        assert self.returncode == 0, f"`{self.command}` failed ({self.returncode}):\n{self.output}"


def generate(variant: Variant, parent: Path) -> Path:
    root = parent / variant.id
    result = CliRunner().invoke(app, [*variant.command(), "--dir", str(root)])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="session")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Generated]:
    parent = tmp_path_factory.mktemp("generated")
    return {variant.id: Generated(variant, generate(variant, parent)) for variant in VARIANTS}


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for every project: the libraries they share are analysed once."""
    return tmp_path_factory.mktemp("mypy-cache")


def child_env() -> dict[str, str]:
    """The environment for a project's tools: ours, minus what would leak our pytest run
    (or a developer's shell) into theirs."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "DAPR_", "APP_", "OPENAI_"))
        and key not in ("API_KEY", "PYTHONPATH", "COV_CORE_SOURCE")
    }
    # `python` and the console scripts of this environment come first on PATH.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(command: Sequence[str], cwd: Path, timeout: float = 600) -> Completed:
    process = subprocess.run(
        list(command),
        cwd=cwd,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Completed(" ".join(command), process.returncode, process.stdout)


def plugin_args() -> list[str]:
    """daprforge's pytest plugin is found through its ``pytest11`` entry point. An editable
    install made before that entry point was declared lacks it until reinstalled; load the
    plugin by name then, so the check does not depend on when pip last ran."""
    names = {ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    return [] if "daprforge.testing.plugin" in names else ["-p", "daprforge.testing.plugin"]


@pytest.fixture(scope="session")
def own_test_runs(projects: dict[str, Generated]) -> Iterator[dict[str, Future[Completed]]]:
    """Each project's own pytest, two at a time (this machine, like CI, has two cores and
    the runs mostly wait on sidecar processes), started when first asked for."""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="generated-pytest")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin_args()]
    runs = {key: pool.submit(run, command, project.root) for key, project in projects.items()}
    yield runs
    pool.shutdown(wait=True, cancel_futures=True)

"""Rendering is deterministic (same input, same bytes), produces the brief's layout for
every kind, and records its answers so the project can be rendered again."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daprforge import __version__
from daprforge.cli import app
from daprforge.generator import KINDS, NewRequest, load_answers, prepare, render
from daprforge.generator.render import environment
from tests.generated._variants import VARIANTS, Variant

# Every project has these (the brief's layout, plus what production needs).
COMMON_FILES = {
    ".daprforge.yml",
    ".data/.gitignore",
    ".dockerignore",
    ".env.example",
    ".gitignore",
    "Dockerfile",
    "README.md",
    "app/__init__.py",
    "app/dapr/__init__.py",
    "app/dapr/events.py",
    "app/dependencies.py",
    "app/main.py",
    "app/models/__init__.py",
    "app/models/schemas.py",
    "app/routes.py",
    "app/services/__init__.py",
    "app/services/dapr_service.py",
    "app/settings.py",
    "components/pubsub.yaml",
    "components/secretstore.yaml",
    "components/statestore.yaml",
    "dapr.yaml",
    "k8s/components/configuration.yaml",
    "k8s/components/pubsub.yaml",
    "k8s/components/resiliency.yaml",
    "k8s/components/statestore.yaml",
    "k8s/deployment.yaml",
    "k8s/service.yaml",
    "pyproject.toml",
    "requirements.txt",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/test_main.py",
    "wheels/.gitkeep",
}
KIND_FILES = {
    "ai-agent": {"app/services/ai_service.py", "tests/test_ai_service.py"},
    "crud-api": {"tests/test_items.py"},
    "event-processor": {
        "app/services/processor.py",
        "components/resiliency.yaml",
        "tests/test_events.py",
    },
    "code-executor": {"app/services/executor.py", "tests/test_executor.py"},
}


def _render(variant: Variant, cwd: Path) -> dict[str, bytes]:
    result = CliRunner().invoke(app, [*variant.command(), "--dir", str(cwd / variant.id)])
    assert result.exit_code == 0, result.output
    root = cwd / variant.id
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("variant", VARIANTS, ids=[variant.id for variant in VARIANTS])
def test_rendering_twice_gives_identical_bytes(variant: Variant, tmp_path: Path) -> None:
    first = _render(variant, tmp_path / "first")
    second = _render(variant, tmp_path / "second")
    assert first.keys() == second.keys()
    for path, content in first.items():
        assert second[path] == content, path
    modes = {
        stat.S_IMODE((tmp_path / "first" / variant.id / path).stat().st_mode) for path in first
    }
    assert modes == {0o644}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_has_the_layout(kind: str, tmp_path: Path) -> None:
    project = prepare(NewRequest(kind=kind, name="svc"), cwd=tmp_path)
    assert set(render(project)) == COMMON_FILES | KIND_FILES[kind]


def test_rendering_writes_nothing(tmp_path: Path) -> None:
    project = prepare(NewRequest(kind="ai-agent", name="svc"), cwd=tmp_path)
    render(project)
    assert list(tmp_path.iterdir()) == []


def test_answers_file_records_kind_options_and_version(tmp_path: Path) -> None:
    request = NewRequest(kind="event-processor", name="svc", flags=("--topic", "orders"))
    project = prepare(request, cwd=tmp_path)
    project.target.mkdir()
    (project.target / ".daprforge.yml").write_bytes(render(project)[".daprforge.yml"])
    answers = load_answers(project.target)
    assert answers.kind == "event-processor"
    assert answers.name == "svc"
    assert answers.daprforge_version == __version__
    assert answers.options["topic"] == "orders"
    assert answers.options["max_retries"] == 3  # defaults are recorded too
    # The answers are enough to render the same project again.
    again = prepare(
        NewRequest(
            kind=answers.kind,
            name=answers.name,
            set_values=tuple(f"{k}={v}" for k, v in answers.options.items() if v is not None),
        ),
        cwd=tmp_path / "again",
    )
    assert render(again) == render(project)


def test_templates_are_well_formed() -> None:
    env = environment()
    for name in env.list_templates():
        env.get_template(name)  # parses: syntax errors name the template


def test_golden_hashes_do_not_depend_on_the_folder(tmp_path: Path) -> None:
    """Where a project is written does not change a byte of it."""

    def digest(files: dict[str, bytes]) -> str:
        hashed = hashlib.sha256()
        for path, content in sorted(files.items()):
            hashed.update(path.encode() + b"\0" + content + b"\0")
        return hashed.hexdigest()

    here = prepare(NewRequest(kind="crud-api", name="svc"), cwd=tmp_path / "a")
    there = prepare(NewRequest(kind="crud-api", name="svc"), cwd=tmp_path / "b" / "c")
    assert digest(render(here)) == digest(render(there))

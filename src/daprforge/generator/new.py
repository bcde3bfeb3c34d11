"""``daprforge new``: validate everything, render everything, then write.

The order is the point: :func:`prepare` checks the kind, the name, every option and the
target folder (asking for what is missing when a person is at the terminal);
:func:`render` produces every file in memory; only :func:`write` touches the disk. A
mistake anywhere before writing leaves the disk as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from daprforge.generator.answers import ANSWERS_FILE, answers_for, dump_answers
from daprforge.generator.errors import GeneratorError
from daprforge.generator.inputs import (
    Project,
    ask_missing,
    build_options,
    check_name,
    check_target,
    find_kind,
    parse_flags,
    parse_set,
)
from daprforge.generator.kinds import Kind, OptionInfo
from daprforge.generator.render import render_project, write_files


@dataclass(frozen=True)
class NewRequest:
    """What was typed: ``daprforge new KIND NAME --dir D --port N --set k=v --topic t``."""

    kind: str | None = None
    name: str | None = None
    directory: Path | None = None
    port: int | None = None
    force: bool = False
    set_values: Sequence[str] = ()
    flags: Sequence[str] = field(default_factory=tuple)
    """Kind options as flags, unparsed (``["--topic", "orders"]``)."""


class Prompter(Protocol):
    """Asks a person for missing values (only used when a terminal is attached)."""

    def choose_kind(self) -> str: ...

    def ask_name(self, kind: Kind, problem: str | None) -> str: ...

    def ask_option(self, info: OptionInfo, default: str, problem: str | None) -> str: ...


def prepare(request: NewRequest, *, cwd: Path, prompter: Prompter | None = None) -> Project:
    """Validate the request; GeneratorError on the first problem. Nothing is written."""
    raw = parse_flags(request.flags)
    for key, value in parse_set(request.set_values).items():
        if key in raw and raw[key] != value:
            raise GeneratorError(
                f"--set {key}={value} contradicts --{key.replace('_', '-')} {raw[key]}",
                hint="Give each option once.",
            )
        raw[key] = value
    if request.port is not None:
        if "port" in raw and raw["port"] != str(request.port):
            raise GeneratorError(
                f"--port {request.port} contradicts --set port={raw['port']}",
                hint="Give each option once.",
            )
        raw["port"] = str(request.port)

    kind_name = request.kind
    if not kind_name and prompter is not None:
        kind_name = prompter.choose_kind()
    kind = find_kind(kind_name)

    if request.name or prompter is None:
        names = check_name(kind, request.name)
    else:
        problem: str | None = None
        while True:
            try:
                names = check_name(kind, prompter.ask_name(kind, problem).strip())
                break
            except GeneratorError as error:
                problem = str(error)

    if prompter is not None:
        raw = ask_missing(kind, raw, prompter.ask_option)
    options = build_options(kind, raw)
    target = cwd / (request.directory if request.directory is not None else Path(names.name))
    check_target(target, force=request.force)
    return Project(kind=kind, names=names, options=options, target=target)


def render(project: Project) -> dict[str, bytes]:
    """Every file of the project, the answers file included, by relative path."""
    files = render_project(project)
    answers = answers_for(project.kind.name, project.names.name, project.answers)
    files[ANSWERS_FILE] = dump_answers(answers)
    return dict(sorted(files.items()))


def write(project: Project, files: Mapping[str, bytes]) -> list[Path]:
    return write_files(project.target, files)

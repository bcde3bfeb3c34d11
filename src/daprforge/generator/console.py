"""What ``daprforge new`` and ``daprforge kinds`` print, and how they ask questions.

Kept apart from the generator's logic so that logic never prints and the CLI stays thin.
Errors go to stderr and say what to type instead; exit code 2 means bad input, as for
every usage error of the CLI.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.markup import escape
from rich.prompt import Prompt
from rich.table import Table
from rich.text import Text

from daprforge.generator.errors import GeneratorError
from daprforge.generator.kinds import KINDS, Kind, OptionInfo, option_infos
from daprforge.generator.new import NewRequest, Prompter, prepare, render, write

EXIT_OK = 0
EXIT_USAGE = 2


def kinds_table() -> Table:
    table = Table(title="Kinds of service", title_justify="left", show_lines=True)
    table.add_column("Kind", style="bold cyan", no_wrap=True)
    table.add_column("Description")
    table.add_column("Options (as flags, or --set key=value)")
    for kind in KINDS.values():
        lines = [
            f"[bold]{info.flag}[/] {info.type_name}{_default(info)}  {escape(info.description)}"
            for info in option_infos(kind)
            if not info.common
        ]
        table.add_row(kind.name, escape(kind.description), "\n".join(lines))
    common = [
        f"[bold]{info.flag}[/] {info.type_name}{_default(info)}  {escape(info.description)}"
        for info in option_infos(next(iter(KINDS.values())))
        if info.common
    ]
    table.add_row("(every kind)", "", "\n".join(common))
    return table


def _default(info: OptionInfo) -> str:
    if info.default is None:
        return ""
    return escape(f" = {info.default}")


class RichPrompter(Prompter):
    def __init__(self, console: Console) -> None:
        self.console = console

    def choose_kind(self) -> str:
        for kind in KINDS.values():
            self.console.print(f"  [bold cyan]{kind.name}[/]  {escape(kind.description)}")
        return Prompt.ask("Kind", choices=list(KINDS), console=self.console)

    def ask_name(self, kind: Kind, problem: str | None) -> str:
        if problem:
            self._problem(problem)
        return Prompt.ask(
            "Service name (lowercase letters, digits and '-', e.g. exercise-service)",
            console=self.console,
        )

    def ask_option(self, info: OptionInfo, default: str, problem: str | None) -> str:
        if problem:
            self._problem(problem)
        return Prompt.ask(
            f"{escape(info.description)} [dim]({info.flag})[/]",
            default=default,
            console=self.console,
        )

    def _problem(self, message: str) -> None:
        self.console.print(Text.assemble(("  ✗ ", "red"), message))


def print_error(console: Console, error: GeneratorError) -> None:
    console.print(Text.assemble(("error: ", "bold red"), error.message), soft_wrap=True)
    if error.hint:
        console.print(Text(error.hint, style="yellow"), soft_wrap=True)
    console.print("Nothing was written.", style="dim")


def run_new(
    request: NewRequest,
    *,
    console: Console,
    errors: Console,
    interactive: bool,
    cwd: Path | None = None,
) -> int:
    """The whole of ``daprforge new``; returns the exit code."""
    cwd = cwd or Path.cwd()
    prompter = RichPrompter(console) if interactive else None
    try:
        project = prepare(request, cwd=cwd, prompter=prompter)
        files = render(project)
    except GeneratorError as error:
        print_error(errors, error)
        return EXIT_USAGE
    shown = _shown(project.target, cwd)
    console.print(
        f"Creating a [bold cyan]{project.kind.name}[/] service "
        f"[bold]{project.names.name}[/] in [bold]{escape(shown)}[/]"
    )
    settings = ", ".join(
        f"{key}={value}" for key, value in project.answers.items() if value is not None
    )
    console.print(f"  [green]✓[/] options checked: {escape(settings)}")
    console.print(f"  [green]✓[/] rendered {len(files)} files")
    with console.status("writing files"):
        write(project, files)
    console.print(f"  [green]✓[/] wrote {escape(shown)}/")
    for line in _summary(files):
        console.print(f"      {escape(line)}", style="dim")
    console.print()
    console.print("[bold]Next steps[/]")
    for command, why in _next_steps(shown, project.options.port):
        console.print(
            f"  [bold]{escape(command)}[/]" + (f"  [dim]# {escape(why)}[/]" if why else "")
        )
    return EXIT_OK


def _shown(target: Path, cwd: Path) -> str:
    """The target as the user would type it: relative to cwd when inside it."""
    try:
        relative = os.path.relpath(target, cwd)
    except ValueError:  # another drive (Windows)
        return str(target)
    return str(target) if relative.startswith("..") else relative


def _summary(files: dict[str, bytes]) -> list[str]:
    """One line per top-level entry: folders with their file count."""
    folders: Counter[str] = Counter()
    top_files: list[str] = []
    for relative in files:
        parts = PurePosixPath(relative).parts
        if len(parts) == 1:
            top_files.append(relative)
        else:
            folders[parts[0]] += 1
    lines = [
        f"{folder}/ ({count} file{'' if count == 1 else 's'})"
        for folder, count in sorted(folders.items())
    ]
    return lines + sorted(top_files)


def local_checkout() -> Path | None:
    """The daprforge source tree this CLI runs from, when it is one (an editable install
    of a checkout rather than a released package)."""
    import daprforge

    root = Path(daprforge.__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "daprforge"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _next_steps(shown: str, port: int) -> list[tuple[str, str]]:
    checkout = local_checkout()
    install = 'pip install -e ".[dev]"'
    why = ""
    if checkout is not None:
        # Not installed from a package index: point the project at the same checkout.
        install = f"pip install -e '{checkout}[sidecar]' -e '.[dev]'"
        why = "daprforge from this checkout"
    return [
        (f"cd {shown}", ""),
        ("python -m venv .venv && . .venv/bin/activate", ""),
        (install, why),
        ("daprforge run", f"the app and its sidecar; http://127.0.0.1:{port}/docs"),
        ("pytest", "tests against a real local sidecar"),
    ]

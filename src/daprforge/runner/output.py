"""Everything the runner prints: prefixed log lines (one colour per app), the start-up
table, crash reports. One writer thread does all terminal and log-file I/O, in order, so
the event loop never blocks on a slow terminal or disk and lines never interleave."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from daprforge.runner.plan import AppPlan

PALETTE = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_red",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_yellow",
    "bright_blue",
    "red",
)
Source = str  # "app" or "dapr"

_Item = tuple[RenderableType | None, bool, str | None, TextIO | None]


class Output:
    def __init__(self, console: Console, app_ids: Sequence[str]) -> None:
        self.console = console
        self.width = max((len(app_id) for app_id in app_ids), default=0)
        self.colours = {app_id: PALETTE[i % len(PALETTE)] for i, app_id in enumerate(app_ids)}
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._files: list[TextIO] = []
        self._thread = threading.Thread(target=self._drain, name="daprforge-output", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producers (any thread)

    def line(
        self, app_id: str, source: Source, text: str, *, console: bool, file: TextIO | None
    ) -> None:
        """One line a process printed (without its newline)."""
        styled = Text.from_ansi(text) if "\x1b" in text else Text(text)
        rendered = self.prefix(app_id, source).append_text(styled) if console else None
        plain = styled.plain + "\n" if file is not None else None
        self._queue.put((rendered, True, plain, file))

    def show(self, renderable: RenderableType) -> None:
        """A message of the runner's own, printed in order with the log lines."""
        self._queue.put((renderable, False, None, None))

    def prefix(self, app_id: str, source: Source) -> Text:
        colour = self.colours.get(app_id, "white")
        text = Text()
        text.append(f"{app_id:<{self.width}} ", style=f"bold {colour}")
        text.append(f"{source:<4} | ", style=colour if source == "app" else f"dim {colour}")
        return text

    # ------------------------------------------------------------------ files

    async def open_log(self, path: Path) -> TextIO:
        def open_file() -> TextIO:
            path.parent.mkdir(parents=True, exist_ok=True)
            return path.open("a", encoding="utf-8", buffering=1)

        handle = await asyncio.to_thread(open_file)
        self._files.append(handle)
        return handle

    async def close(self) -> None:
        """Print everything queued so far, close the log files, stop the writer."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    # ------------------------------------------------------------------ the writer thread

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            rendered, soft_wrap, plain, file = item
            try:
                if rendered is not None:
                    self.console.print(rendered, soft_wrap=soft_wrap)
                if plain is not None and file is not None:
                    file.write(plain)
            except (OSError, ValueError):  # a closed terminal or file must not stop the run
                pass
        for handle in self._files:
            with contextlib.suppress(OSError):
                handle.close()


# ---------------------------------------------------------------------- renderables


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"


def crash_panel(
    app_id: str, source: Source, code: int, lines: Sequence[str], *, during: str = ""
) -> Panel:
    what = "app" if source == "app" else "sidecar"
    title = f"{what} '{app_id}' {during or 'crashed'} ({describe_exit(code)})"
    body = Text()
    if lines:
        body.append(f"last {len(lines)} lines:\n", style="bold")
        body.append("\n".join(lines))
    else:
        body.append("(it printed nothing)", style="dim")
    return Panel(body, title=title, title_align="left", border_style="bold red", expand=False)


def problem_panel(title: str, message: str, sections: Sequence[tuple[str, Sequence[str]]]) -> Panel:
    body = Text(message)
    for heading, lines in sections:
        body.append(f"\n\n{heading}:\n", style="bold")
        body.append("\n".join(lines) if lines else "(nothing printed)")
    return Panel(body, title=title, title_align="left", border_style="bold red", expand=False)


def summary_table(
    plans: Sequence[AppPlan], title: str, colours: dict[str, str], base: Path
) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("App ID", no_wrap=True)
    table.add_column("App port", justify="right")
    table.add_column("Dapr HTTP", justify="right")
    table.add_column("Command")
    table.add_column("Resources")
    for plan in plans:
        app = plan.app
        if plan.resources_paths:
            resources = ", ".join(_short(path, base) for path in plan.resources_paths)
            if app.resources_source not in ("app", "none"):
                resources += f" ({app.resources_source})"
        elif plan.runtime == "daprforge":
            resources = "embedded defaults (state.sqlite, pubsub.in-memory)"
        else:
            resources = "none"
        table.add_row(
            Text(app.app_id, style=f"bold {colours.get(app.app_id, '')}"),
            str(app.app_port) if app.app_port is not None else "-",
            str(plan.dapr_http_port),
            " ".join(app.command) if app.command else Text("(none: sidecar only)", style="dim"),
            resources,
        )
    return table


def _short(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base) if path.is_relative_to(base) else str(path)
    except ValueError:  # pragma: no cover - different drives on Windows
        return str(path)

"""The rendering engine: Jinja2 templates in, the bytes of every project file out.

Templates live in ``templates/``: ``base/`` holds what every kind shares, ``<kind>/`` what
one kind adds or replaces (same relative path wins). A kind's file may
``{% extends "base/<same path>" %}`` and fill in the base's blocks. In file names, a
leading ``dot-`` becomes ``.`` (so packaging tools never drop or hide a template), ``.j2``
is dropped, and ``{{ ... }}`` is rendered like content.

Rendering is pure and deterministic: the same project gives the same bytes, files come out
sorted, and nothing depends on the clock, the machine or the order of a dict we did not
build. Only :func:`write_files` touches the disk, and only after everything rendered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from daprforge.generator.context import build_context
from daprforge.generator.inputs import Project

BASE = "base"
SUFFIX = ".j2"
DOT_PREFIX = "dot-"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("daprforge.generator", "templates"),
        # A misspelt variable must fail the render, not leave a hole in a file.
        undefined=jinja2.StrictUndefined,
        # We write source code and YAML, not HTML: every value is quoted for its target
        # language by the filters below instead.
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["py"] = python_literal
    env.filters["json"] = json_literal
    env.filters["yaml"] = json_literal  # a JSON string or number is valid YAML
    env.filters["toml"] = json_literal  # ...and a valid TOML basic string or number
    return env


def python_literal(value: Any) -> str:
    """A Python literal for ``value``, quoted as ruff format would (double quotes, unless
    the text holds more double than single quotes), so generated code is formatted."""
    if isinstance(value, str):
        quote = "'" if value.count('"') > value.count("'") else '"'
        body = value.replace("\\", "\\\\").replace(quote, "\\" + quote)
        body = "".join(
            char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
            for char in body
        )
        return quote + body + quote
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


def json_literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def template_names(env: jinja2.Environment, kind: str) -> dict[str, str]:
    """Output path template -> template name: the base files, overlaid by the kind's."""
    chosen: dict[str, str] = {}
    for layer in (BASE, kind):
        prefix = layer + "/"
        for name in env.list_templates():
            if name.startswith(prefix) and name.endswith(SUFFIX):
                chosen[name[len(prefix) : -len(SUFFIX)]] = name
    if not chosen:
        raise LookupError("no templates found: is the daprforge package installed completely?")
    return chosen


def output_path(relative: str, env: jinja2.Environment, context: Mapping[str, Any]) -> str:
    if "{{" in relative:
        relative = env.from_string(relative).render(context)
    parts = [
        "." + part.removeprefix(DOT_PREFIX) if part.startswith(DOT_PREFIX) else part
        for part in PurePosixPath(relative).parts
    ]
    return str(PurePosixPath(*parts))


def render_project(project: Project) -> dict[str, bytes]:
    """Every file of the project (path relative to its root -> content), sorted by path.
    The answers file is not among them (see ``answers.py``)."""
    env = environment()
    context = build_context(project)
    files: dict[str, bytes] = {}
    for relative, name in template_names(env, project.kind.name).items():
        text = env.get_template(name).render(context)
        if not text.strip():
            continue  # a template that renders empty is a file this project does not get
        path = output_path(relative, env, context)
        files[path] = _normalize(text).encode("utf-8")
    return dict(sorted(files.items()))


def _normalize(text: str) -> str:
    """Exactly one newline at the end, no trailing spaces (block tags leave some)."""
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    return "\n".join(lines) + "\n"


def write_files(target: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` under ``target`` (created if needed); returns the paths written."""
    written = []
    for relative, content in files.items():
        path = target.joinpath(*PurePosixPath(relative).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.chmod(path, 0o644)
        written.append(path)
    return written

"""``.daprforge.yml``: what a project was generated from, so it can be rendered again.

It records the kind, the name, every option (defaults included, so a later release with
other defaults re-renders the same project) and the daprforge version that wrote it. A later
``daprforge update`` reads it, renders the old and the new version and merges; nothing else
in the project is needed for that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daprforge import __version__
from daprforge.generator.errors import GeneratorError

ANSWERS_FILE = ".daprforge.yml"
_HEADER = (
    "# Written by `daprforge new`: what this project was generated from.\n"
    "# `daprforge update` reads it to render the project again; edit with care.\n"
)


class Answers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    daprforge_version: str = Field(description="The daprforge release that rendered it.")
    kind: str
    name: str
    options: dict[str, Any]


def answers_for(kind: str, name: str, options: dict[str, Any]) -> Answers:
    return Answers(daprforge_version=__version__, kind=kind, name=name, options=options)


def dump_answers(answers: Answers) -> bytes:
    """Stable YAML: fixed key order at the top, sorted options, no flow style."""
    document = {
        "daprforge_version": answers.daprforge_version,
        "kind": answers.kind,
        "name": answers.name,
        "options": dict(sorted(answers.options.items())),
    }
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return (_HEADER + body).encode("utf-8")


def load_answers(project: Path) -> Answers:
    """Read ``project/.daprforge.yml``; GeneratorError when missing or malformed."""
    path = project / ANSWERS_FILE
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GeneratorError(
            f"{path} does not exist", hint="Run this in a project made by `daprforge new`."
        ) from None
    except yaml.YAMLError as exc:
        raise GeneratorError(f"{path} is not valid YAML: {exc}") from None
    try:
        return Answers.model_validate(document)
    except ValidationError as exc:
        raise GeneratorError(f"{path} is not a daprforge answers file: {exc}") from None

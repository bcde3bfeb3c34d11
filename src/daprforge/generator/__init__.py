"""The generator behind ``daprforge new``: kinds, validation, rendering, answers file.

    project = prepare(NewRequest(kind="crud-api", name="exercises"), cwd=Path.cwd())
    files = render(project)          # {relative path: bytes}, nothing written yet
    write(project, files)

Modules, one job each: ``kinds`` (the four kinds and their options), ``names`` (service and
resource names), ``inputs`` (validating what was typed), ``context`` (template variables),
``render`` (Jinja2 engine), ``answers`` (``.daprforge.yml``), ``new`` (the order of it all),
``console`` (what the CLI prints and asks).
"""

from daprforge.generator.answers import ANSWERS_FILE, Answers, load_answers
from daprforge.generator.errors import GeneratorError
from daprforge.generator.inputs import Project
from daprforge.generator.kinds import KINDS, Kind, OptionInfo, option_infos
from daprforge.generator.new import NewRequest, Prompter, prepare, render, write

__all__ = [
    "ANSWERS_FILE",
    "KINDS",
    "Answers",
    "GeneratorError",
    "Kind",
    "NewRequest",
    "OptionInfo",
    "Project",
    "Prompter",
    "load_answers",
    "option_infos",
    "prepare",
    "render",
    "write",
]

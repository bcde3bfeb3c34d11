"""Turn what the user typed into a validated :class:`Project`, or a GeneratorError.

Everything is checked here, before a single file is rendered or written: the kind, the name,
every option (flags, ``--set key=value`` and prompts alike) and the target folder. Option
values arrive as text and Pydantic converts them, so ``--port 8080`` and ``--set port=8080``
are the same thing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daprforge.generator.errors import GeneratorError, InvalidNameError
from daprforge.generator.kinds import KINDS, CommonOptions, Kind, OptionInfo, option_infos
from daprforge.generator.names import ServiceNames, check_service_name

Asker = Callable[[OptionInfo, str, str | None], str]
"""Prompt for one option: ``(option, default as text, why the previous answer was refused
or None) -> answer``."""


@dataclass(frozen=True)
class Project:
    """A fully validated request to generate one service."""

    kind: Kind
    names: ServiceNames
    options: CommonOptions
    target: Path

    @property
    def answers(self) -> dict[str, Any]:
        """The options as stored in ``.daprforge.yml``: every value, defaults included,
        so a later release with other defaults re-renders the same project."""
        return self.options.model_dump(mode="json")


def find_kind(name: str | None) -> Kind:
    if not name:
        raise GeneratorError(
            "say which kind of service to create",
            hint=f"Try: daprforge new crud-api exercise-service  (kinds: {', '.join(KINDS)})",
        )
    kind = KINDS.get(name)
    if kind is not None:
        return kind
    close = difflib.get_close_matches(name, KINDS, n=1, cutoff=0.5)
    guess = f"did you mean {close[0]}? " if close else ""
    raise GeneratorError(
        f"unknown kind {name!r}",
        hint=f"{guess.capitalize()}Kinds: {', '.join(KINDS)} (`daprforge kinds` describes them)",
    )


def check_name(kind: Kind, name: str | None) -> ServiceNames:
    try:
        return check_service_name(name or "")
    except InvalidNameError as error:
        hint = None
        if error.suggestion:
            hint = f"Try: daprforge new {kind.name} {error.suggestion}"
        raise GeneratorError(error.message, hint=hint) from None


def parse_set(pairs: Sequence[str]) -> dict[str, str]:
    """``["port=8080", "topic=orders"]`` -> ``{"port": "8080", "topic": "orders"}``."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise GeneratorError(
                f"--set {pair!r} is not key=value",
                hint="Try: --set port=8080 (one --set per option)",
            )
        _merge(values, _key(key), value, f"--set {pair}")
    return values


def parse_flags(args: Sequence[str]) -> dict[str, str]:
    """Kind options given as flags: ``["--topic", "orders", "--max-retries=5"]``."""
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or arg == "--":
            raise GeneratorError(
                f"unexpected argument {arg!r}",
                hint="Usage: daprforge new KIND NAME [--option value ...]; "
                "quote values that contain spaces",
            )
        flag, equals, value = arg[2:].partition("=")
        if not equals:
            if index + 1 >= len(args) or args[index + 1].startswith("--"):
                raise GeneratorError(f"--{flag} needs a value", hint=f"Try: --{flag} VALUE")
            value = args[index + 1]
            index += 1
        _merge(values, _key(flag), value, f"--{flag}")
        index += 1
    return values


def _key(text: str) -> str:
    return text.strip().replace("-", "_")


def _merge(values: dict[str, str], key: str, value: str, source: str) -> None:
    if key in values and values[key] != value:
        raise GeneratorError(
            f"{source} contradicts an earlier value for {key!r} ({values[key]!r})",
            hint="Give each option once.",
        )
    values[key] = value


def check_option_keys(kind: Kind, raw: Mapping[str, Any]) -> None:
    """Unknown keys, or keys of another kind, with the flag the user probably meant."""
    known = kind.options.model_fields
    for key in raw:
        if key in known:
            continue
        flag = "--" + key.replace("_", "-")
        owners = [other.name for other in KINDS.values() if key in other.options.model_fields]
        if owners:
            raise GeneratorError(
                f"{flag} is an option of {' and '.join(owners)}, not of {kind.name}",
                hint=f"Options of {kind.name}: {_flag_list(kind)}",
            )
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        guess = f"Did you mean --{close[0].replace('_', '-')}? " if close else ""
        raise GeneratorError(
            f"unknown option {flag} for {kind.name}",
            hint=f"{guess}Options of {kind.name}: {_flag_list(kind)}",
        )


def _flag_list(kind: Kind) -> str:
    return ", ".join(info.flag for info in option_infos(kind))


def build_options(kind: Kind, raw: Mapping[str, Any]) -> CommonOptions:
    """Validate every option at once; the error names the first bad one and an example."""
    check_option_keys(kind, raw)
    try:
        return kind.options.model_validate(dict(raw))
    except ValidationError as error:
        raise _option_error(kind, error, raw) from None


def _option_error(kind: Kind, error: ValidationError, raw: Mapping[str, Any]) -> GeneratorError:
    infos = {info.key: info for info in option_infos(kind)}
    problems = []
    hints = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        key = str(item["loc"][0]) if item["loc"] else ""
        info = infos.get(key)
        if info is None:  # a check across options
            problems.append(message)
            continue
        problems.append(f"{info.flag} {raw.get(key, '')!s}: {message}")
        if info.default is not None:
            hints.append(f"{info.flag} {_text(info.default)}")
    hint = f"Try: {' '.join(hints)} (the defaults)" if hints else None
    return GeneratorError("; ".join(problems), hint=hint)


def _text(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if " " in text else text


def ask_missing(kind: Kind, raw: Mapping[str, str], ask: Asker) -> dict[str, str]:
    """Prompt for the kind's main options the user did not give. A refused answer is asked
    for again with the reason, so answering prompts never ends in an error."""
    values = dict(raw)
    for info in option_infos(kind):
        if not info.ask or info.key in values:
            continue
        default = "" if info.default is None else str(info.default)
        problem: str | None = None
        while True:
            answer = ask(info, default, problem).strip() or default
            problem = _refusal(kind, {**values, info.key: answer}, info.key)
            if problem is None:
                values[info.key] = answer
                break
    return values


def _refusal(kind: Kind, raw: Mapping[str, str], key: str) -> str | None:
    """Why the value of ``key`` in ``raw`` is refused (other options' problems are
    reported later, by build_options)."""
    try:
        kind.options.model_validate(dict(raw))
    except ValidationError as error:
        for item in error.errors():
            # A check across options (no location) concerns the new answer too.
            if not item["loc"] or item["loc"][0] == key:
                return str(item["msg"]).removeprefix("Value error, ")
    return None


def check_target(target: Path, *, force: bool) -> None:
    """Refuse a file, or a non-empty folder unless ``force``."""
    if target.exists() and not target.is_dir():
        raise GeneratorError(
            f"{target} exists and is not a folder",
            hint="Choose another place with --dir PATH.",
        )
    if target.is_dir() and not force and any(target.iterdir()):
        raise GeneratorError(
            f"{target} exists and is not empty",
            hint="Choose another place with --dir PATH, or pass --force to write over the "
            "generated files in it (other files are kept).",
        )

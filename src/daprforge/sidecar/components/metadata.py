"""Component ``spec.metadata`` as components-contrib reads it: case-insensitive names,
string values, Go-style durations."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class ComponentConfigError(ValueError):
    """A component's metadata is missing a required field or has a bad value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"metadata field {field!r}: {message}")
        self.field = field
        self.message = message


def parse_duration(text: str, *, bare_unit: str = "s") -> float:
    """Parse a Go duration (``"1h30m"``, ``"500ms"``) into seconds.

    A bare number is read in ``bare_unit``: components differ here (Postgres reads seconds,
    Redis milliseconds), so each caller says which.
    """
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text) * _UNIT_SECONDS[bare_unit]
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


class ComponentMetadata(Mapping[str, str]):
    """Metadata name/value pairs looked up case-insensitively, as mapstructure does."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items = {name.lower(): (name, value) for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def first(self, *names: str) -> str | None:
        """The value of the first name present and non-empty (for aliases)."""
        for name in names:
            value = self.get(name)
            if value:
                return value
        return None

    def require(self, *names: str) -> str:
        value = self.first(*names)
        if value is None:
            raise ComponentConfigError(names[0], "is required")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        if not value:
            return default
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "y", "on"):
            return True
        if lowered in ("false", "0", "no", "n", "off"):
            return False
        raise ComponentConfigError(name, f"must be true or false, not {value!r}")

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            raise ComponentConfigError(name, f"must be an integer, not {value!r}") from None

    def duration(self, *names: str, default: float, bare_unit: str = "s") -> float:
        """A duration in seconds, from the first of ``names`` that is set."""
        for name in names:
            value = self.get(name)
            if value:
                try:
                    return parse_duration(value, bare_unit=bare_unit)
                except ValueError:
                    raise ComponentConfigError(
                        name, f"must be a duration such as 20s or 1h, not {value!r}"
                    ) from None
        return default


@dataclass(frozen=True, slots=True)
class ComponentConfig:
    """What a component factory receives: resolved metadata and the sidecar's context."""

    name: str
    """The component's ``metadata.name``."""
    metadata: ComponentMetadata
    """``spec.metadata`` with secret and env references already resolved."""
    app_id: str = ""
    data_dir: str = "."
    """Per-app folder for local files; relative paths in metadata resolve from the cwd."""

"""Service names: a Kubernetes name in, the Python and human spellings out.

A service name becomes the Deployment, the Service, the Dapr app id and the container name.
Deployments accept any DNS-1123 subdomain, but a Service name must be an RFC 1035 label
(lowercase letters, digits and ``-``, starting with a letter, at most 63 characters), and the
Dapr app id shows up in both, so we require the stricter of the two. A valid label always maps
to a valid Python identifier once ``-`` becomes ``_``, except for keywords, which we refuse.

Every refusal comes with a suggestion the user can type instead.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from daprforge.generator.errors import InvalidNameError

MAX_LENGTH = 63
_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_WORD = re.compile(r"[a-z0-9]+")

# Distributions a generated project installs. A project whose own distribution had one of
# these names would replace it in the environment on `pip install -e .`.
RESERVED = frozenset(
    {
        "daprforge",
        "fastapi",
        "starlette",
        "uvicorn",
        "pydantic",
        "pydantic-settings",
        "httpx",
        "openai",
        "pytest",
        "pytest-asyncio",
        "ruff",
        "mypy",
        "prometheus-client",
        "pyyaml",
        "dapr",
    }
)


@dataclass(frozen=True)
class ServiceNames:
    """The spellings of one service name, e.g. for ``triage-service``:
    ``package`` ``triage_service``, ``title`` ``Triage Service``, ``camel`` ``TriageService``."""

    name: str
    package: str
    title: str
    camel: str


def slugify(text: str) -> str:
    """The closest RFC 1035 label to ``text`` ("" when nothing usable is left)."""
    words = _WORD.findall(text.lower().replace("_", "-"))
    slug = "-".join(words)
    # A label starts with a letter: drop leading digits (and dashes they leave).
    slug = re.sub(r"^[-0-9]+", "", slug)
    return slug[:MAX_LENGTH].rstrip("-")


def check_service_name(name: str) -> ServiceNames:
    """Validate ``name``; raise InvalidNameError with a suggestion when it cannot be used."""
    if not name:
        raise InvalidNameError("the service needs a name", "exercise-service")
    if len(name) > MAX_LENGTH:
        raise InvalidNameError(
            f"{name!r} is {len(name)} characters long; Kubernetes names have at most {MAX_LENGTH}",
            slugify(name) or None,
        )
    if not _LABEL.match(name):
        raise InvalidNameError(
            f"{name!r} is not a valid Kubernetes Service name: use lowercase letters, digits "
            "and '-', starting with a letter and ending with a letter or digit",
            _suggest(name),
        )
    if "--" in name:
        # Legal for Kubernetes, but it maps to a Python name with "__", which reads as dunder.
        raise InvalidNameError(f"{name!r} has '--'; use single dashes", re.sub(r"-+", "-", name))
    package = name.replace("-", "_")
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        raise InvalidNameError(
            f"{name!r} is a Python keyword, so it cannot name the Python package",
            f"{name}-service",
        )
    if name in RESERVED:
        raise InvalidNameError(
            f"{name!r} is the name of a package the service depends on; installing the "
            "service would replace it",
            f"{name}-service",
        )
    words = name.split("-")
    return ServiceNames(
        name=name,
        package=package,
        title=" ".join(word.capitalize() for word in words),
        camel="".join(word.capitalize() for word in words),
    )


def _suggest(name: str) -> str | None:
    slug = slugify(name)
    if not slug or slug == name:
        return None
    try:
        check_service_name(slug)
    except InvalidNameError as error:
        return error.suggestion
    return slug


@dataclass(frozen=True)
class ResourceNames:
    """The spellings of a CRUD resource, e.g. for ``learning-path``: ``snake``
    ``learning_path``, ``kebab`` ``learning-path``, ``camel`` ``LearningPath``, ``title``
    ``Learning path``, and the same for the plural (``learning-paths`` in URLs)."""

    snake: str
    kebab: str
    camel: str
    title: str
    plural_snake: str
    plural_kebab: str
    plural_title: str


# First path segments every generated service already serves.
RESERVED_PATHS = frozenset({"health", "ready", "metrics", "dapr", "docs", "redoc", "events"})
_RESOURCE = re.compile(r"^[a-z][a-z0-9]*([-_][a-z0-9]+)*$")
RESOURCE_MAX_LENGTH = 30


def pluralize(word: str) -> str:
    """English plural of the last word, for the common cases; pass ``--plural`` otherwise."""
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    return word + "s"


def check_resource_word(value: str, label: str = "resource") -> str:
    """Validate a resource name or its plural on its own."""
    if len(value) > RESOURCE_MAX_LENGTH or not _RESOURCE.match(value):
        suggestion = slugify(value)[:RESOURCE_MAX_LENGTH].rstrip("-") or None
        raise InvalidNameError(
            f"{label} {value!r} is not usable: use lowercase letters and digits, words joined "
            f"by '-' or '_', starting with a letter, at most {RESOURCE_MAX_LENGTH} characters",
            suggestion if suggestion != value else None,
        )
    snake = value.replace("-", "_")
    if keyword.iskeyword(snake) or keyword.issoftkeyword(snake):
        raise InvalidNameError(
            f"{label} {value!r} is a Python keyword, so it cannot name a variable",
            f"{value}-item",
        )
    return value


def resource_names(resource: str, plural: str | None = None) -> ResourceNames:
    """The spellings of a valid resource (see :func:`check_resource_word`) and its plural."""
    check_resource_word(resource, "resource")
    words = resource.replace("_", "-").split("-")
    if plural:
        check_resource_word(plural, "plural")
        plural_words = plural.replace("_", "-").split("-")
    else:
        plural_words = [*words[:-1], pluralize(words[-1])]
    collection = "-".join(plural_words)
    if collection in RESERVED_PATHS:
        raise InvalidNameError(
            f"the collection route /{collection} is served by every service already "
            "(health, readiness, metrics, Dapr and docs routes); choose another name",
            None,
        )
    if plural_words == words:
        raise InvalidNameError(
            f"the plural of {resource!r} must differ from it, or the collection and item "
            "routes clash",
            f"{resource}-items",
        )
    return ResourceNames(
        snake="_".join(words),
        kebab="-".join(words),
        camel="".join(word.capitalize() for word in words),
        title=" ".join(words).capitalize(),
        plural_snake="_".join(plural_words),
        plural_kebab=collection,
        plural_title=" ".join(plural_words).capitalize(),
    )

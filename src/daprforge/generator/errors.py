"""The one error the generator raises for bad input, and what the user should type instead."""

from __future__ import annotations


class GeneratorError(Exception):
    """Input ``daprforge new`` cannot use. Nothing has been written when it is raised.

    ``hint`` says what to type instead (a corrected command or value), when we know.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n{self.hint}"


class InvalidNameError(GeneratorError):
    """A name that cannot be used; ``suggestion`` is a usable one close to it."""

    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.suggestion = suggestion

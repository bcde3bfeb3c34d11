"""Errors of the sandbox package."""

from __future__ import annotations


class SandboxUnavailable(RuntimeError):
    """Isolation cannot be established here (no bwrap, no user namespaces, no seccomp ...).
    The service must refuse to run code rather than run it unsandboxed."""


class SandboxBusy(RuntimeError):
    """Every slot is taken and the queue is full: answer 429 and let the caller retry."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many runs at once; retry in {retry_after} s")
        self.retry_after = retry_after

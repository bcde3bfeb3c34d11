"""Backing services shared by every test suite (PostgreSQL, Redis).

A test that needs one is marked ``@pytest.mark.postgres`` / ``@pytest.mark.redis`` (a mark on a
``pytest.param`` of a parametrized fixture counts too). Each service is probed once per session.
When it is unreachable the test is skipped locally, but under ``CI=true`` it FAILS: CI must never
go green by skipping.
"""

from __future__ import annotations

import functools
import os
import socket

import pytest

# Service name (= marker name) -> (host, port). Override with e.g. DAPRFORGE_TEST_POSTGRES_PORT.
SERVICES: dict[str, tuple[str, int]] = {
    "postgres": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
}


def service_address(name: str) -> tuple[str, int]:
    host, port = SERVICES[name]
    env = f"DAPRFORGE_TEST_{name.upper()}"
    return os.environ.get(f"{env}_HOST", host), int(os.environ.get(f"{env}_PORT", port))


@functools.cache
def service_unavailable_reason(name: str) -> str | None:
    """``None`` when the service accepts TCP connections, else why not (probed once)."""
    host, port = service_address(name)
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"{name} is not reachable at {host}:{port} ({exc})"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_service(name: str) -> None:
    """Skip (locally) or fail (CI) the current test when ``name`` is unavailable."""
    reason = service_unavailable_reason(name)
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: decide before any fixture (e.g. a sidecar on PostgreSQL) is set up.
    for name in SERVICES:
        if item.get_closest_marker(name) is not None:
            require_service(name)

"""Key prefixing as daprd does it (``keyPrefix`` component metadata).

Stored keys are ``<prefix>||<key>`` so apps sharing one database do not see each other's
state unless they choose to. ``||`` is the separator and therefore illegal in keys.
"""

from __future__ import annotations

import os

SEPARATOR = "||"


class IllegalKeyError(ValueError):
    pass


def check_key(key: str) -> None:
    if SEPARATOR in key:
        raise IllegalKeyError(f"input key/keyPrefix '{key}' can't contain '{SEPARATOR}'")


def key_prefix(strategy: str, store_name: str, app_id: str) -> str:
    """The prefix, separator included, for a ``keyPrefix`` value (case-insensitive)."""
    strategy = strategy.lower() or "appid"
    if strategy == "none":
        return ""
    if strategy == "name":
        return store_name + SEPARATOR
    if strategy == "namespace":
        namespace = os.environ.get("NAMESPACE", "")
        if namespace and app_id:
            return f"{namespace}.{app_id}{SEPARATOR}"
        strategy = "appid"
    if strategy == "appid":
        return app_id + SEPARATOR if app_id else ""
    check_key(strategy)
    return strategy + SEPARATOR


def original_key(stored_key: str) -> str:
    """The key as the app knows it: everything after the prefix."""
    _, sep, rest = stored_key.partition(SEPARATOR)
    return rest if sep else stored_key

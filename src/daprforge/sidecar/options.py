"""The sidecar's settings, named after daprd's flags."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?|[kmgt]i?|B)?\s*$")
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_UNITS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


def parse_size(text: str) -> int:
    """Quantities as daprd reads ``--max-body-size``: ``4Mi``, ``512Ki``, ``2M``."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"invalid size {text!r}: use a number with an optional unit like 4Mi")
    number, unit = match.groups()
    unit = unit or ""
    unit = unit[0].upper() + unit[1:] if unit else unit
    return int(number) * _UNITS[unit]


@dataclass(frozen=True, slots=True)
class SidecarOptions:
    app_id: str
    app_port: int | None = None
    app_channel_address: str = "127.0.0.1"
    app_protocol: str = "http"
    dapr_http_port: int = 3500
    dapr_internal_port: int = 0
    """Where other sidecars reach this one (0: any free port); daprd's internal gRPC port."""
    listen_address: str = "127.0.0.1"
    resources_paths: tuple[Path, ...] = ()
    config: Path | None = None
    log_level: str = "info"
    max_body_size: int = 4 * 2**20
    enable_api_logging: bool = False
    api_token: str | None = None
    """``DAPR_API_TOKEN``: required on every API call when set."""
    app_token: str | None = None
    """``APP_API_TOKEN``: sent to the app on every call the sidecar makes to it."""

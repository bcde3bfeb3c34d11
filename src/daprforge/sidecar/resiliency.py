"""Dapr ``Resiliency`` resources: the retry and timeout policies for inbound pub/sub.

daprd retries a failed delivery only when a policy applies to the pub/sub component's
inbound direction: a named target (``spec.targets.components.<name>.inbound``) or one of
the built-in default policy names. Without one, a delivery is tried exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daprforge.sidecar.components.loader import ResourceError
from daprforge.sidecar.components.metadata import parse_duration

# Checked in this order when no named target applies (dapr pkg/resiliency getDefaultPolicy).
INBOUND_PUBSUB_DEFAULTS = (
    "DefaultPubsubComponentInboundRetryPolicy",
    "DefaultComponentInboundRetryPolicy",
    "DefaultComponentRetryPolicy",
    "DefaultRetryPolicy",
)

# Exponential back-off as Dapr configures it (cenkalti/backoff defaults).
_INITIAL_INTERVAL = 0.5
_MULTIPLIER = 1.5
_RANDOMIZATION = 0.5


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    exponential: bool = False
    duration: float = 5.0
    max_interval: float = 60.0
    max_retries: int = -1
    """-1 retries forever, as in Dapr."""

    def delays(self) -> Iterator[float]:
        """The wait before each retry; ends when retries are used up."""
        attempt = 0
        interval = _INITIAL_INTERVAL
        while self.max_retries < 0 or attempt < self.max_retries:
            attempt += 1
            if not self.exponential:
                yield self.duration
                continue
            spread = interval * _RANDOMIZATION
            yield min(random.uniform(interval - spread, interval + spread), self.max_interval)
            interval = min(interval * _MULTIPLIER, self.max_interval)


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    retry: RetryPolicy | None = None
    timeout: float | None = None
    """Seconds allowed for one delivery attempt."""


@dataclass(slots=True)
class Resiliency:
    retries: dict[str, RetryPolicy]
    timeouts: dict[str, float]
    inbound: dict[str, dict[str, str]]
    """component name -> {"retry": policy name, "timeout": policy name}"""

    def pubsub_inbound(self, component: str) -> InboundPolicy:
        target = self.inbound.get(component, {})
        retry_name = target.get("retry")
        if retry_name is None:
            retry_name = next((n for n in INBOUND_PUBSUB_DEFAULTS if n in self.retries), None)
        timeout_name = target.get("timeout")
        return InboundPolicy(
            retry=self.retries.get(retry_name) if retry_name else None,
            timeout=self.timeouts.get(timeout_name) if timeout_name else None,
        )


def _duration(source: Path | str, where: str, value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        return parse_duration(str(value))
    except ValueError:
        raise ResourceError(source, f"{where} must be a duration such as 5s") from None


def _retry(source: Path | str, name: str, spec: Any) -> RetryPolicy:
    where = f"spec.policies.retries.{name}"
    if not isinstance(spec, dict):
        raise ResourceError(source, f"{where} must be a mapping")
    kind = str(spec.get("policy", "constant")).lower()
    if kind not in ("constant", "exponential"):
        raise ResourceError(source, f"{where}.policy must be constant or exponential")
    try:
        max_retries = int(spec.get("maxRetries", -1))
    except (TypeError, ValueError):
        raise ResourceError(source, f"{where}.maxRetries must be an integer") from None
    return RetryPolicy(
        exponential=kind == "exponential",
        duration=_duration(source, f"{where}.duration", spec.get("duration"), 5.0),
        max_interval=_duration(source, f"{where}.maxInterval", spec.get("maxInterval"), 60.0),
        max_retries=max_retries,
    )


def load_resiliency(
    documents: Iterable[tuple[Path | str, dict[str, Any]]], app_id: str
) -> Resiliency:
    """Merge every ``Resiliency`` document scoped to ``app_id``."""
    merged = Resiliency({}, {}, {})
    for source, doc in documents:
        scopes = doc.get("scopes") or []
        if scopes and app_id not in scopes:
            continue
        spec = doc.get("spec") or {}
        policies = spec.get("policies") or {}
        for name, retry in (policies.get("retries") or {}).items():
            merged.retries[name] = _retry(source, name, retry)
        for name, value in (policies.get("timeouts") or {}).items():
            merged.timeouts[name] = _duration(source, f"spec.policies.timeouts.{name}", value, 0)
        components = (spec.get("targets") or {}).get("components") or {}
        for component, target in components.items():
            inbound = (target or {}).get("inbound") or {}
            for kind in ("retry", "timeout"):
                name = inbound.get(kind)
                known = merged.retries if kind == "retry" else merged.timeouts
                if name is not None and name not in known:
                    raise ResourceError(
                        source,
                        f"spec.targets.components.{component}.inbound.{kind}: "
                        f"no {kind} policy named {name!r}",
                    )
            merged.inbound[component] = {k: str(v) for k, v in inbound.items()}
    return merged

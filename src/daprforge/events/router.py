"""``EventRouter``: pub/sub subscriptions as decorated handlers, served to the sidecar.

    events = EventRouter(idempotency=Idempotency("statestore"))

    @events.subscribe("pubsub", "orders", dead_letter_topic="orders-failed")
    async def on_order(order: Order, dapr: DaprDep) -> None:
        ...

    app.include_router(events)

daprd reads ``GET /dapr/subscribe`` once, when the app's port opens, so every handler must
be registered before the app starts. Each delivery is answered with the status daprd
acts on (see :mod:`daprforge.events.outcomes`); an event whose data does not validate is
dropped, with a log line, since sending it again cannot make it valid.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.routing import Match, Router

from daprforge.client import DaprError
from daprforge.events.binding import Handler, HandlerBinding, PayloadError
from daprforge.events.idempotency import Claim, Idempotency
from daprforge.events.outcomes import Drop, Outcome, Retry
from daprforge.service.dependencies import get_dapr
from daprforge.service.security import DaprTokenVerifier

log = logging.getLogger("daprforge.events")

H = TypeVar("H", bound=Handler)
_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")


@dataclass(slots=True)
class Subscription:
    """One (pubsub, topic) pair and the routes of its handlers, as /dapr/subscribe says."""

    pubsub: str
    topic: str
    dead_letter_topic: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    rules: list[tuple[str, str]] = field(default_factory=list)
    default: str | None = None

    def paths(self) -> list[str]:
        return [path for _, path in self.rules] + ([self.default] if self.default else [])

    def describe(self) -> dict[str, Any]:
        routes: dict[str, Any] = {}
        if self.rules:
            routes["rules"] = [{"match": match, "path": path} for match, path in self.rules]
        if self.default:
            routes["default"] = self.default
        entry: dict[str, Any] = {"pubsubname": self.pubsub, "topic": self.topic, "routes": routes}
        if self.dead_letter_topic:
            entry["deadLetterTopic"] = self.dead_letter_topic
        if self.metadata:
            entry["metadata"] = self.metadata
        return entry


class EventRouter(APIRouter):
    """A FastAPI router serving ``/dapr/subscribe`` and one delivery route per handler.

    ``idempotency``: skip events already processed (see :class:`Idempotency`).
    ``app_token``: the ``dapr-api-token`` every call from the sidecar must carry; by
    default ``$APP_API_TOKEN``, checked only when set. ``path_prefix``: where the delivery
    routes live."""

    def __init__(
        self,
        *,
        idempotency: Idempotency | None = None,
        app_token: str | None = None,
        path_prefix: str = "/events",
    ) -> None:
        super().__init__(dependencies=[Depends(DaprTokenVerifier(app_token))])
        self.idempotency = idempotency
        self.path_prefix = "/" + path_prefix.strip("/")
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.add_api_route(
            "/dapr/subscribe", self._list_subscriptions, methods=["GET"], include_in_schema=False
        )

    async def _list_subscriptions(self, request: Request) -> list[dict[str, Any]]:
        # Many FastAPI versions copy a router's routes when it is included, so a handler
        # registered later (or a router included with a prefix) has no route in the app.
        # daprd would get 404 for its events and drop them: such a subscription is left out
        # (and logged) rather than offered.
        entries = []
        for subscription in self.subscriptions.values():
            missing = [p for p in subscription.paths() if not _served(request.app.router, p)]
            if missing:
                log.error(
                    "not subscribing to %s/%s: the app serves no route %s (register handlers "
                    "before app.include_router, and include the router without a prefix)",
                    subscription.pubsub,
                    subscription.topic,
                    ", ".join(missing),
                )
                continue
            entries.append(subscription.describe())
        return entries

    def subscribe(
        self,
        pubsub: str,
        topic: str,
        *,
        match: str | None = None,
        dead_letter_topic: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated ``async def`` for events on ``pubsub``/``topic``.

        ``match``: a CEL expression over ``event`` (e.g. ``'event.type == "refund"'``);
        the handler gets only the events it matches, rules being tried in registration
        order, and a handler without ``match`` gets the rest. ``dead_letter_topic``: where
        the sidecar sends events that were dropped or ran out of retries. ``metadata``:
        subscription metadata for the sidecar (e.g. ``{"rawPayload": "true"}``)."""

        def register(handler: H) -> H:
            binding = HandlerBinding.of(handler)
            subscription = self._subscription(pubsub, topic, dead_letter_topic, metadata)
            path = self._path(pubsub, topic, handler.__name__ if match else None)
            if match:
                subscription.rules.append((match, path))
            elif subscription.default is not None:
                raise ValueError(
                    f"{pubsub}/{topic} has a handler without match already; "
                    "give this one a match expression"
                )
            else:
                subscription.default = path
            self.add_api_route(
                path,
                self._endpoint(subscription, binding),
                methods=["POST"],
                include_in_schema=False,
                name=f"event:{pubsub}/{topic}:{handler.__name__}",
            )
            return handler

        return register

    def _subscription(
        self,
        pubsub: str,
        topic: str,
        dead_letter_topic: str | None,
        metadata: Mapping[str, str] | None,
    ) -> Subscription:
        existing = self.subscriptions.get((pubsub, topic))
        if existing is None:
            created = Subscription(pubsub, topic, dead_letter_topic, dict(metadata or {}))
            self.subscriptions[(pubsub, topic)] = created
            return created
        # One subscription per topic in daprd: its settings must agree across handlers.
        if dead_letter_topic and dead_letter_topic != existing.dead_letter_topic:
            if existing.dead_letter_topic:
                raise ValueError(
                    f"{pubsub}/{topic}: dead-letter topic {dead_letter_topic!r} conflicts "
                    f"with {existing.dead_letter_topic!r}"
                )
            existing.dead_letter_topic = dead_letter_topic
        for key, value in (metadata or {}).items():
            if existing.metadata.setdefault(key, value) != value:
                raise ValueError(f"{pubsub}/{topic}: metadata {key!r} conflicts")
        return existing

    def _path(self, pubsub: str, topic: str, name: str | None) -> str:
        parts = [self.path_prefix, _UNSAFE.sub("_", pubsub), _UNSAFE.sub("_", topic)]
        if name:
            parts.append(_UNSAFE.sub("_", name))
        base = path = "/".join(parts)
        taken = {getattr(route, "path", None) for route in self.routes}
        counter = 2
        while path in taken:
            path = f"{base}-{counter}"
            counter += 1
        return path

    def _endpoint(self, subscription: Subscription, binding: HandlerBinding) -> Handler:
        async def deliver(_event_request: Request, **dependencies: Any) -> JSONResponse:
            outcome = await self._deliver(_event_request, subscription, binding, dependencies)
            return JSONResponse({"status": outcome.value})

        # FastAPI reads the signature: the request, plus the handler's own dependencies.
        request_parameter = inspect.Parameter(
            "_event_request", inspect.Parameter.KEYWORD_ONLY, annotation=Request
        )
        deliver.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [request_parameter, *binding.dependencies]
        )
        return deliver

    async def _deliver(
        self,
        request: Request,
        subscription: Subscription,
        binding: HandlerBinding,
        dependencies: dict[str, Any],
    ) -> Outcome:
        where = f"{subscription.pubsub}/{subscription.topic}"
        try:
            raw = json.loads(await request.body())
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            log.warning("dropping a delivery on %s: not a CloudEvent (%s)", where, exc)
            return Outcome.DROP
        event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        context = {"event_id": event_id, "pubsub": subscription.pubsub, "topic": subscription.topic}
        try:
            argument = binding.argument(raw)
        except (ValidationError, PayloadError) as exc:
            log.warning(
                "dropping event %s on %s: not a valid %s: %s",
                event_id,
                where,
                binding.type_name,
                _summary(exc),
                extra=context,
            )
            return Outcome.DROP

        claimed_key: str | None = None
        if self.idempotency is not None and event_id:
            key = self.idempotency.key(subscription.pubsub, subscription.topic, event_id)
            try:
                claim = await self.idempotency.claim(get_dapr(request), key)
            except DaprError as exc:
                log.warning("cannot check event %s for duplicates (%s): retry", event_id, exc)
                return Outcome.RETRY
            if claim is Claim.DONE:
                log.info("event %s on %s was processed already", event_id, where, extra=context)
                return Outcome.SUCCESS
            if claim is Claim.BUSY:
                log.info("event %s on %s is being processed: retry", event_id, where, extra=context)
                return Outcome.RETRY
            claimed_key = key

        outcome = await self._run(binding, argument, dependencies, where, context)
        if claimed_key is not None:
            await self._settle(request, claimed_key, outcome)
        return outcome

    async def _run(
        self,
        binding: HandlerBinding,
        argument: Any,
        dependencies: dict[str, Any],
        where: str,
        context: dict[str, Any],
    ) -> Outcome:
        event_id = context["event_id"]
        try:
            await binding.handler(argument, **dependencies)
        except Retry as exc:
            log.info("event %s on %s will be retried: %s", event_id, where, exc, extra=context)
            return Outcome.RETRY
        except Drop as exc:
            log.warning("event %s on %s dropped: %s", event_id, where, exc, extra=context)
            return Outcome.DROP
        except Exception:
            log.exception(
                "handler failed for event %s on %s: retry", event_id, where, extra=context
            )
            return Outcome.RETRY
        return Outcome.SUCCESS

    async def _settle(self, request: Request, key: str, outcome: Outcome) -> None:
        assert self.idempotency is not None
        dapr = get_dapr(request)
        try:
            if outcome is Outcome.SUCCESS:
                await self.idempotency.complete(dapr, key)
            else:
                await self.idempotency.release(dapr, key)
        except DaprError as exc:
            # The event was handled (or not) all the same; at worst a redelivery comes back
            # after the lease and runs again, which is the at-least-once default anyway.
            log.warning("could not record event outcome %s for %s: %s", outcome, key, exc)


def _served(router: Router, path: str) -> bool:
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in router.routes)


def _summary(exc: Exception) -> str:
    """Where validation failed and why, without the (possibly sensitive) input values."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '<data>'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
    return str(exc)

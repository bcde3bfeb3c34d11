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

import asyncio
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

from daprforge.client import CloudEvent, ConcurrencyError, DaprClient, DaprError
from daprforge.client.transport import backoff
from daprforge.events.binding import Handler, HandlerBinding, PayloadError
from daprforge.events.idempotency import Claim, Idempotency
from daprforge.events.metrics import EventMetrics, event_metrics
from daprforge.events.outcomes import Drop, Outcome, Retry
from daprforge.events.unit import AlreadyProcessedError, UnitOfWork
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
    routes live. ``conflict_retries``: how often a handler with a UnitOfWork runs again
    after its commit met a concurrent change, before the event is answered RETRY."""

    def __init__(
        self,
        *,
        idempotency: Idempotency | None = None,
        app_token: str | None = None,
        path_prefix: str = "/events",
        conflict_retries: int = 10,
    ) -> None:
        super().__init__(dependencies=[Depends(DaprTokenVerifier(app_token))])
        self.idempotency = idempotency
        self.conflict_retries = conflict_retries
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
        idempotent: bool = True,
    ) -> Callable[[H], H]:
        """Register the decorated ``async def`` for events on ``pubsub``/``topic``.

        ``match``: a CEL expression over ``event`` (e.g. ``'event.type == "refund"'``);
        the handler gets only the events it matches, rules being tried in registration
        order, and a handler without ``match`` gets the rest. ``dead_letter_topic``: where
        the sidecar sends events that were dropped or ran out of retries. ``metadata``:
        subscription metadata for the sidecar (e.g. ``{"rawPayload": "true"}``).
        ``idempotent=False``: this handler does not use the router's idempotency markers
        (for handlers idempotent by themselves, such as a dead-letter store keyed by event
        id, where an event may legitimately come back after a replay)."""

        def register(handler: H) -> H:
            binding = HandlerBinding.of(handler)
            if binding.unit is not None and self.idempotency is None:
                raise ValueError(
                    f"event handler {handler.__qualname__} takes a UnitOfWork: give the "
                    "EventRouter an Idempotency(store), the store the unit commits to"
                )
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
                self._endpoint(subscription, binding, idempotent),
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

    def _endpoint(
        self, subscription: Subscription, binding: HandlerBinding, idempotent: bool
    ) -> Handler:
        async def deliver(_event_request: Request, **dependencies: Any) -> JSONResponse:
            outcome, duplicate = await self._deliver(
                _event_request, subscription, binding, dependencies, idempotent
            )
            metrics = event_metrics(_event_request.app.state)
            if metrics is not None:
                self._count(metrics, _event_request, subscription, outcome, duplicate)
            return JSONResponse({"status": outcome.value})

        # FastAPI reads the signature: the request, plus the handler's own dependencies.
        request_parameter = inspect.Parameter(
            "_event_request", inspect.Parameter.KEYWORD_ONLY, annotation=Request
        )
        deliver.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [request_parameter, *binding.dependencies]
        )
        return deliver

    def _count(
        self,
        metrics: EventMetrics,
        request: Request,
        subscription: Subscription,
        outcome: Outcome,
        duplicate: bool,
    ) -> None:
        metrics.count(outcome, subscription.pubsub, subscription.topic, duplicate=duplicate)
        if outcome is Outcome.SUCCESS and not duplicate and self._is_dead_letter(subscription):
            # A dead letter's envelope still names the topic it failed on.
            failed_on = request.state.event_topic or subscription.topic
            metrics.dead_lettered.labels(subscription.pubsub, failed_on).inc()

    def _is_dead_letter(self, subscription: Subscription) -> bool:
        return any(
            other.pubsub == subscription.pubsub and other.dead_letter_topic == subscription.topic
            for other in self.subscriptions.values()
        )

    async def _deliver(
        self,
        request: Request,
        subscription: Subscription,
        binding: HandlerBinding,
        dependencies: dict[str, Any],
        idempotent: bool,
    ) -> tuple[Outcome, bool]:
        """The answer for the sidecar, and whether the event was a duplicate."""
        where = f"{subscription.pubsub}/{subscription.topic}"
        request.state.event_topic = None
        try:
            raw = json.loads(await request.body())
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            log.warning("dropping a delivery on %s: not a CloudEvent (%s)", where, exc)
            return Outcome.DROP, False
        event_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        if isinstance(raw.get("topic"), str):
            request.state.event_topic = raw["topic"]
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
            return Outcome.DROP, False

        idempotency = self.idempotency if idempotent else None
        if binding.unit is not None:
            assert self.idempotency is not None  # checked when the handler was registered
            marker = None
            if idempotency is not None and event_id:
                marker = idempotency.key(subscription.pubsub, subscription.topic, event_id)
            return await self._deliver_unit(
                request, binding, argument, dependencies, marker, where, context
            )

        claimed_key: str | None = None
        if idempotency is not None and event_id:
            key = idempotency.key(subscription.pubsub, subscription.topic, event_id)
            try:
                claim = await idempotency.claim(get_dapr(request), key)
            except DaprError as exc:
                log.warning("cannot check event %s for duplicates (%s): retry", event_id, exc)
                return Outcome.RETRY, False
            if claim is Claim.DONE:
                log.info("event %s on %s was processed already", event_id, where, extra=context)
                return Outcome.SUCCESS, True
            if claim is Claim.BUSY:
                log.info("event %s on %s is being processed: retry", event_id, where, extra=context)
                return Outcome.RETRY, False
            claimed_key = key

        outcome = await self._run(binding, argument, dependencies, where, context)
        if claimed_key is not None:
            await self._settle(request, claimed_key, outcome)
        return outcome, False

    async def _deliver_unit(
        self,
        request: Request,
        binding: HandlerBinding,
        argument: Any,
        dependencies: dict[str, Any],
        marker: str | None,
        where: str,
        context: dict[str, Any],
    ) -> tuple[Outcome, bool]:
        """Run the handler with a UnitOfWork and commit its changes with the marker in one
        transaction; on a conflict, run it again on fresh data (see events/unit.py)."""
        assert self.idempotency is not None
        assert binding.unit is not None
        dapr = get_dapr(request)
        store = self.idempotency.store
        event_id = context["event_id"]
        attempt = 0
        while True:
            unit = UnitOfWork(dapr, store, event_id, marker)
            outcome = await self._run(
                binding, argument, {**dependencies, binding.unit: unit}, where, context
            )
            if unit.marker_value is not None:
                # The handler's first read found the marker: processed already.
                log.info("event %s on %s was processed already", event_id, where, extra=context)
                if not await self._publish_pending(dapr, marker, unit.marker_value, context):
                    return Outcome.RETRY, False
                return Outcome.SUCCESS, True
            if outcome is not Outcome.SUCCESS:
                # A redelivered done event may be dropped where the first run succeeded
                # (its effects are there now): it is done, not to be dead-lettered. (A
                # RETRY needs no check: the next delivery finds out.)
                if (
                    outcome is Outcome.DROP
                    and marker is not None
                    and not unit.marker_read
                    and await self._finish_done(dapr, marker, context)
                ):
                    return Outcome.SUCCESS, True
                return outcome, False
            operations = unit.operations()
            if marker is not None:
                operations.append(self.idempotency.marker(marker, unit.outbox))
            try:
                if operations:
                    await dapr.state.transaction(store, operations)
            except DaprError as exc:
                if not isinstance(exc, ConcurrencyError):
                    log.warning("event %s on %s: not committed (%s)", event_id, where, exc)
                    return Outcome.RETRY, False
                if marker is not None and await self._finish_done(dapr, marker, context):
                    log.info("event %s on %s was processed already", event_id, where, extra=context)
                    return Outcome.SUCCESS, True
                if attempt >= self.conflict_retries:
                    log.warning(
                        "event %s on %s: state kept changing under it (%d attempts): retry",
                        event_id,
                        where,
                        attempt + 1,
                        extra=context,
                    )
                    return Outcome.RETRY, False
                await asyncio.sleep(backoff(attempt, base=0.005, cap=0.2))
                attempt += 1
                continue
            if unit.outbox and not await self._flush(dapr, marker, unit.outbox, context):
                return Outcome.RETRY, False
            return Outcome.SUCCESS, False

    async def _finish_done(self, dapr: DaprClient, marker: str, context: dict[str, Any]) -> bool:
        """True when the event was processed already (its pending derived events are
        published now); False when it was not, or that cannot be told right now."""
        assert self.idempotency is not None
        try:
            done = await self.idempotency.done(dapr, marker)
        except DaprError as exc:
            log.warning("cannot check event %s for duplicates: %s", context["event_id"], exc)
            return False
        if done is None:
            return False
        return await self._publish_pending(dapr, marker, done, context)

    async def _publish_pending(
        self,
        dapr: DaprClient,
        marker: str | None,
        done: dict[str, Any],
        context: dict[str, Any],
    ) -> bool:
        """Publish the derived events a processed event's marker still holds. False
        (answer RETRY) when publishing failed."""
        outbox = done.get("outbox")
        if isinstance(outbox, list) and outbox:
            return await self._flush(dapr, marker, outbox, context)
        return True

    async def _flush(
        self,
        dapr: DaprClient,
        marker: str | None,
        outbox: list[dict[str, Any]],
        context: dict[str, Any],
    ) -> bool:
        """Publish the derived events of a committed unit, then clear them from the marker.
        False (answer RETRY) when publishing failed: the redelivery publishes them."""
        try:
            for message in outbox:
                await dapr.pubsub.publish(
                    message["pubsub"], message["topic"], CloudEvent[Any](**message["event"])
                )
            if marker is not None:
                assert self.idempotency is not None
                await self.idempotency.complete(dapr, marker)
        except DaprError as exc:
            log.warning(
                "event %s: derived events not all published yet (%s): retry",
                context["event_id"],
                exc,
                extra=context,
            )
            return False
        return True

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
        except AlreadyProcessedError:
            return Outcome.SUCCESS  # the caller sees unit.marker_value
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

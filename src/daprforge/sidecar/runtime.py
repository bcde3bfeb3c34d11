"""The sidecar's components and readiness: what the HTTP handlers act on.

Start-up follows daprd: secret stores first (other components may take values from them),
then every other component; the outbound API is ready once components are up, and the
sidecar as a whole once the app's port answers (when there is one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from daprforge import __version__
from daprforge.sidecar.app_channel import AppChannel
from daprforge.sidecar.components import registry
from daprforge.sidecar.components.loader import ComponentSpec, MetadataItem, ResourceError
from daprforge.sidecar.components.metadata import (
    ComponentConfig,
    ComponentConfigError,
    ComponentMetadata,
)
from daprforge.sidecar.nameresolution import SQLiteResolver
from daprforge.sidecar.outbound import new_session
from daprforge.sidecar.pubsub.base import PubSub
from daprforge.sidecar.pubsub.delivery import Deliverer
from daprforge.sidecar.pubsub.scopes import topic_allowed
from daprforge.sidecar.pubsub.subscriptions import Subscription, from_app
from daprforge.sidecar.resiliency import Resiliency
from daprforge.sidecar.secrets.base import SecretStore
from daprforge.sidecar.secrets.env import is_sensitive_variable
from daprforge.sidecar.state.base import StateStore
from daprforge.sidecar.state.keys import IllegalKeyError, key_prefix

log = logging.getLogger("daprforge.sidecar")

RUNTIME_VERSION = f"{__version__}-daprforge"


@dataclass(slots=True)
class LoadedComponent:
    spec: ComponentSpec
    version: str
    instance: Any
    capabilities: list[str]


@dataclass(slots=True)
class StateStoreBinding:
    """A state store together with how its keys are prefixed."""

    store: StateStore
    prefix: str


@dataclass(slots=True)
class PubSubBinding:
    """A pub/sub component with the topic scoping its metadata declares."""

    pubsub: PubSub
    metadata: ComponentMetadata

    def can_publish(self, app_id: str, topic: str) -> bool:
        return topic_allowed(self.metadata, "publishingScopes", app_id, topic)

    def can_subscribe(self, app_id: str, topic: str) -> bool:
        return topic_allowed(self.metadata, "subscriptionScopes", app_id, topic)


@dataclass(slots=True)
class Runtime:
    app_id: str
    components: Sequence[ComponentSpec]
    data_dir: str = "."
    app_port: int | None = None
    app_address: str = "127.0.0.1"
    secret_scopes: dict[str, Any] = field(default_factory=dict)
    declared_subscriptions: list[Subscription] = field(default_factory=list)
    resiliency: Resiliency = field(default_factory=lambda: Resiliency({}, {}, {}))
    app_token: str | None = None

    loaded: list[LoadedComponent] = field(default_factory=list)
    state_stores: dict[str, StateStoreBinding] = field(default_factory=dict)
    secret_stores: dict[str, SecretStore] = field(default_factory=dict)
    pubsubs: dict[str, PubSubBinding] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)
    """The subscriptions in effect (declarative and the app's), for /v1.0/metadata."""
    app_channel: AppChannel | None = None
    resolver: SQLiteResolver | None = None
    _session: aiohttp.ClientSession | None = None
    extended: dict[str, str] = field(default_factory=dict)
    outbound_ready: bool = False
    app_listening: bool = False
    """The app's port answers: invocation into the app can start."""
    app_ready: bool = False
    """The app's port answers and its subscriptions are in place (daprd's healthz)."""
    shutdown_requested: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled client for the app, other sidecars and external endpoints."""
        if self._session is None:
            self._session = new_session()
        return self._session

    @property
    def ready(self) -> bool:
        return self.outbound_ready and self.app_ready

    # --- lifecycle ----------------------------------------------------------------------

    def validate(self) -> None:
        """Fail fast on unknown types or versions, before anything connects."""
        for spec in self.components:
            registry.resolve_version(spec)

    async def start(self) -> None:
        mine = [spec for spec in self.components if spec.scoped_to(self.app_id)]
        for spec in self.components:
            if not spec.scoped_to(self.app_id):
                log.info("component %s is not scoped to app %s: skipped", spec.name, self.app_id)
        secret_stores = [s for s in mine if s.building_block == "secretstores"]
        others = [s for s in mine if s.building_block != "secretstores"]
        for spec in [*secret_stores, *others]:
            await self._load(spec)
        self.outbound_ready = True
        if self.app_port:
            self.app_channel = AppChannel(
                self.session, self.app_address, self.app_port, self.app_id, self.app_token
            )
            self._spawn(self._connect_app())
        else:
            self.app_ready = True

    async def stop(self) -> None:
        """Stop in the reverse order of start: no new lookups or deliveries, then close
        components (which cancels in-flight deliveries), then the outbound client."""
        for task in self._tasks:
            task.cancel()
        if self.resolver is not None:
            await self.resolver.close()
        for component in reversed(self.loaded):
            close = getattr(component.instance, "close", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:
                log.exception("error closing component %s", component.spec.name)
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_app(self) -> None:
        """Wait for the app, then subscribe for it; the sidecar is ready after that."""
        await self._wait_for_app()
        assert self.app_channel is not None
        subscriptions = [*self.declared_subscriptions]
        subscriptions += from_app(await self.app_channel.subscriptions())
        for subscription in subscriptions:
            await self._subscribe(subscription, self.app_channel)
        self.app_ready = True

    async def _subscribe(self, subscription: Subscription, channel: AppChannel) -> None:
        binding = self.pubsubs.get(subscription.pubsub)
        where = f"{subscription.pubsub}/{subscription.topic}"
        if binding is None:
            log.warning("subscription to %s: pubsub %r is not loaded", where, subscription.pubsub)
            return
        if not binding.can_subscribe(self.app_id, subscription.topic):
            log.warning("subscription to %s: topic not allowed for app %s", where, self.app_id)
            return
        policy = self.resiliency.pubsub_inbound(subscription.pubsub)
        deliverer = Deliverer(channel, self.publish_raw, policy)
        await binding.pubsub.subscribe(
            subscription.topic, deliverer.handler(subscription), subscription.metadata
        )
        self.subscriptions.append(subscription)
        log.info("subscribed to %s (%s)", where, subscription.kind.lower())

    async def publish_raw(
        self, pubsub: str, topic: str, data: bytes, metadata: Mapping[str, str]
    ) -> None:
        """Publish bytes as they are (dead letters carry the original message)."""
        await self.pubsubs[pubsub].pubsub.publish(topic, data, metadata)

    async def _wait_for_app(self) -> None:
        # daprd dials the app port every 100 ms (500 ms timeout each) with no overall limit.
        attempts = 0
        while True:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.app_address, self.app_port), 0.5
                )
            except (OSError, TimeoutError):
                attempts += 1
                if attempts % 100 == 0:
                    log.info("waiting for the app on port %s", self.app_port)
                await asyncio.sleep(0.1)
                continue
            writer.close()
            self.app_listening = True
            log.info("app is listening on port %s", self.app_port)
            return

    # --- components ---------------------------------------------------------------------

    async def _load(self, spec: ComponentSpec) -> None:
        version = registry.resolve_version(spec)
        make = registry.factory(spec)
        try:
            metadata = await self._resolve_metadata(spec)
            if spec.building_block == "pubsub" and not metadata.get("consumerID"):
                # daprd names the consumer (group) after the app unless told otherwise.
                metadata = ComponentMetadata([*metadata.items(), ("consumerID", self.app_id)])
            config = ComponentConfig(spec.name, metadata, self.app_id, self.data_dir)
            instance = make(config) if make is not None else None
            if instance is not None:
                await asyncio.wait_for(instance.init(), spec.init_timeout)
        except ComponentConfigError as exc:
            self._init_failed(spec, f"component {spec.name!r} ({spec.type}): {exc}")
            return
        except Exception as exc:
            detail = (
                "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            )
            self._init_failed(
                spec, f"component {spec.name!r} ({spec.type}) failed to start: {detail}"
            )
            return

        capabilities = sorted(getattr(instance, "features", ()))
        if spec.building_block == "state":
            assert instance is not None
            try:
                prefix = key_prefix(metadata.get("keyPrefix", ""), spec.name, self.app_id)
            except IllegalKeyError as exc:
                await instance.close()
                self._init_failed(spec, f"component {spec.name!r}: keyPrefix: {exc}")
                return
            self.state_stores[spec.name] = StateStoreBinding(instance, prefix)
            if metadata.boolean("actorStateStore"):
                capabilities.append("ACTOR")
        elif spec.building_block == "secretstores":
            assert instance is not None
            self.secret_stores[spec.name] = instance
        elif spec.building_block == "pubsub" and instance is not None:
            self.pubsubs[spec.name] = PubSubBinding(instance, metadata)
        self.loaded.append(LoadedComponent(spec, version, instance, capabilities))
        log.info("component loaded: %s (%s/%s) from %s", spec.name, spec.type, version, spec.source)

    def _init_failed(self, spec: ComponentSpec, message: str) -> None:
        if spec.ignore_errors:
            log.warning("%s (ignoreErrors is set: continuing without it)", message)
            return
        raise ResourceError(spec.source, message)

    async def _resolve_metadata(self, spec: ComponentSpec) -> ComponentMetadata:
        return ComponentMetadata(
            [(item.name, await self._resolve(spec, item)) for item in spec.metadata]
        )

    async def _resolve(self, spec: ComponentSpec, item: MetadataItem) -> str:
        if item.env_ref is not None:
            if is_sensitive_variable(item.env_ref):
                raise ComponentConfigError(item.name, f"envRef {item.env_ref} is not allowed")
            return os.environ.get(item.env_ref, "")
        if item.secret_name is not None:
            return await self._secret_value(spec, item)
        return _apply_template(item.value or "", self.app_id)

    async def _secret_value(self, spec: ComponentSpec, item: MetadataItem) -> str:
        where = f"secretKeyRef {item.secret_name}/{item.secret_key}"
        if spec.secret_store is None:
            raise ComponentConfigError(
                item.name, f"{where} needs 'auth: {{secretStore: <name>}}' in the component"
            )
        store = self.secret_stores.get(spec.secret_store)
        if store is None:
            raise ComponentConfigError(
                item.name, f"{where}: secret store {spec.secret_store!r} is not loaded"
            )
        assert item.secret_name is not None
        assert item.secret_key is not None
        try:
            values = await store.get(item.secret_name, {})
        except Exception as exc:
            raise ComponentConfigError(item.name, f"{where}: {exc}") from None
        if item.secret_key not in values:
            raise ComponentConfigError(item.name, f"{where}: the secret has no such key")
        return values[item.secret_key]


def _apply_template(value: str, app_id: str) -> str:
    """Dapr's metadata template tags: {uuid}, {appID}, {namespace}, {podName}."""
    if "{" not in value:
        return value
    return (
        value.replace("{uuid}", str(uuid.uuid4()))
        .replace("{appID}", app_id)
        .replace("{namespace}", os.environ.get("NAMESPACE", ""))
        .replace("{podName}", os.environ.get("POD_NAME", os.environ.get("HOSTNAME", "")))
    )

"""What a feature is: an `Extension` started with a context that hands it only its narrow parts.

The context is also the ledger of everything the extension registered: MQTT
subscriptions, session callbacks, bus listeners, node watchers, request verbs,
services, health and info figures, threads and timers. `close()` undoes all of
it, so an extension that stops (or fails to start) leaves nothing behind, and
its own `stop()` only has to stop what it built itself.

Everything the bridge calls back into an extension (MQTT messages, bus events,
node changes, timers, its services and request verbs, service calls from other
features) runs on the extension's own inbox thread, one call at a time: a slow
extension stalls only itself, and its state needs no locks. With thread checks
on (the test suite), a callback that runs anywhere else fails loudly.
The context is built from `CoreServices`, the few parts of the core an
extension may use, never from the `Bridge`. See docs/architecture.md,
"How to write an extension".
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Generic, TypeVar

from bridge.config import ExtensionSection
from bridge.core.bus import E, Subscription
from bridge.core.directory import EventWatcher, NodeDirectory, NodeInfo, Watcher
from bridge.core.inbox import CHECK_THREADS, Inbox, Timer
from bridge.core.modules import EdgeModules
from bridge.core.store import StoreScope
from bridge.core.supervisor import Supervised
from bridge.mqtt.router import Handler, Route

if TYPE_CHECKING:
    from bridge.core.api import BridgeApi
    from bridge.core.bus import EventBus
    from bridge.core.events import EventChannel
    from bridge.core.services import ServiceCall, ServiceFuture, ServiceRegistry
    from bridge.core.state import StateMachine
    from bridge.core.store import StateStore
    from bridge.core.supervisor import Supervisor
    from bridge.mqtt.client import MqttClient
    from bridge.topics import Topics

C = TypeVar("C", bound=ExtensionSection)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CoreServices:
    """The parts of the core an extension's context is built from (the Bridge makes one)."""

    mqtt: "MqttClient"
    topics: "Topics"
    states: "StateMachine"
    events: "EventChannel"
    services: "ServiceRegistry"
    api: "BridgeApi"
    bus: "EventBus"
    directory: NodeDirectory
    modules: EdgeModules
    supervisor: "Supervisor"
    state_dir: Path
    store: "StateStore"
    health: Callable[[], dict[str, Any]]  # what bridge/health says now
    health_providers: dict[str, Callable[[], Any]]
    info_providers: dict[str, Callable[[], Any]]
    claim_directory: Callable[[str], NodeDirectory]


class Extension(Generic[C]):
    """A feature of the bridge. Subclass as `Extension[MyConfig]`, set `name` and `Config`,
    implement `start`."""

    name: ClassVar[str] = ""
    Config: type[ExtensionSection] = ExtensionSection

    def start(self, ctx: "ExtensionContext[C]") -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop what start() built itself; the context removes everything it registered."""


class ExtensionMqtt:
    """The MQTT a feature may use: publish, and subscriptions delivered on its own inbox."""

    def __init__(self, ctx: "ExtensionContext[Any]", client: "MqttClient") -> None:
        self._ctx, self._client = ctx, client

    @property
    def connected(self) -> bool:
        return self._client.connected

    @property
    def is_v5(self) -> bool:
        return self._client.is_v5

    def wait_connected(self, timeout: float) -> bool:
        return self._client.wait_connected(timeout)

    @property
    def base_topic(self) -> str:
        return self._client.base_topic

    def listens_to(self, topic: str) -> bool:
        """Would the bridge (any feature) act on a message on `topic`? (core/reply.py asks)"""
        return self._client.listens_to(topic)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                expiry: int | None = None, cache: bool = True, correlation_data: bytes | None = None) -> bool:
        return self._client.publish(topic, payload, qos, retain, expiry=expiry, cache=cache,
                                    correlation_data=correlation_data)

    def burst(self) -> ContextManager[None]:
        """Publishes inside reach the broker together: one wake-up of the network thread."""
        return self._client.burst()

    def subscribe(self, topic_filter: str, handler: Handler, *, accept_retained: bool = True,
                  no_local: bool = False, inbox: Inbox | None = None) -> Route:
        """Messages on `topic_filter` to handler, on this extension's inbox (or on another inbox it
        made with `new_inbox`: a plugin host delivers each plugin's messages on that plugin's)."""
        target = inbox or self._ctx.inbox
        if target is not self._ctx.inbox and target not in self._ctx.inboxes():
            raise ValueError("subscribe delivers on this extension's own inboxes only")
        route = self._client.subscribe(topic_filter, self._ctx.checked(handler, f"MQTT {topic_filter}", target),
                                       accept_retained=accept_retained, no_local=no_local, inbox=target)
        self._ctx._undo(("subscription", route), lambda: self._client.unsubscribe(route))
        return route

    def unsubscribe(self, route: Route) -> None:
        self._ctx._done(("subscription", route))
        self._client.unsubscribe(route)

    def on_session(self, callback: Callable[[], None]) -> None:
        """Run callback on this extension's inbox after every (re)connect to the broker."""
        handle = self._client.on_session(self._ctx.checked(callback, "session callback"), self._ctx.inbox)
        self._ctx._undo(("session callback", handle), lambda: self._client.remove_session_callback(handle))

    def republish_retained(self, prefix: str) -> int:
        return self._client.republish_retained(prefix)


class ExtensionContext(Generic[C]):
    """Handed to `Extension.start`: its config, topics, core services, and the ledger of registrations."""

    def __init__(self, extension: Extension[C], config: C, core: CoreServices) -> None:
        self.name = extension.name
        self.config: C = config
        self.log = logging.getLogger(f"bridge.{extension.name}")
        self.stopping = threading.Event()
        self.inbox = Inbox(f"ext-{extension.name}", core.supervisor).start()
        self._core = core
        self._ledger: list[tuple[tuple[str, Any], Callable[[], None]]] = []
        self._lock = threading.Lock()
        self.mqtt = ExtensionMqtt(self, core.mqtt)
        self.topics: Topics = core.topics
        self.states: StateMachine = core.states
        self.events: EventChannel = core.events
        self.state_dir: Path = core.state_dir  # bridge.state_dir: where a feature keeps its files
        self.store: StoreScope = core.store.scope(extension.name)  # what users set, committed before "ok"

    # ------------------------------------------------------------ the inbox rule

    def checked(self, fn: F, what: str, inbox: Inbox | None = None) -> F:
        """fn, failing loudly (with thread checks on) if it is ever run off this extension's inbox
        (or off `inbox`, one it made)."""
        if not CHECK_THREADS:
            return fn
        inbox = inbox or self.inbox

        def on_inbox(*args: Any) -> Any:
            inbox.assert_on(f"{self.name}: {what}")
            return fn(*args)

        return on_inbox  # type: ignore[return-value]

    def assert_on_inbox(self, what: str) -> None:
        """For code that touches the extension's state: fails (thread checks on) off its inbox."""
        self.inbox.assert_on(f"{self.name}: {what}")

    # ------------------------------------------------------------ core services

    def register_service(self, domain: str, service: str, handler: Callable[["ServiceCall"], Any]) -> None:
        """A service anyone may call (MQTT, another feature, a plugin); it runs on this inbox."""
        services = self._core.services
        reg = services.register(domain, service, self.checked(handler, f"service {domain}.{service}"),
                                self.inbox)
        self._undo(("service", f"{domain}.{service}"), lambda: services.unregister(domain, service, reg))

    def unregister_service(self, domain: str, service: str) -> None:
        self._release(("service", f"{domain}.{service}"))

    def call_service(self, domain: str, service: str, data: dict[str, Any] | None = None, *,
                     call_id: str | None = None, parent_id: str | None = None) -> "ServiceFuture":
        """Call a service on its feature's inbox; `.answer(timeout)` on the result waits for it.
        Raises ServiceError at once for an unknown service."""
        return self._core.services.call(domain, service, data, call_id=call_id, parent_id=parent_id)

    def has_service(self, domain: str, service: str) -> bool:
        return self._core.services.has(domain, service)

    def service_names(self) -> list[str]:
        """Every service registered now, as "domain.service"."""
        return self._core.services.names()

    def register_request(self, verb: str, handler: Callable[[dict[str, Any]], Any], *,
                         scope: str = "shared") -> None:
        api = self._core.api
        entry = api.register(verb, self.checked(handler, f"request {verb}"), scope=scope,  # type: ignore[arg-type]
                             inbox=self.inbox)
        self._undo(("request verb", verb), lambda: api.unregister(verb, entry))

    def request(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a request verb as if it came over MQTT (`<base>/bridge/request/<verb>`): the same handler,
        on its feature's inbox, the same checks and the same answer. Blocks (up to a minute for a verb
        that answers later): call it off every inbox and event loop (the HTTP frontend uses a worker)."""
        return self._core.api.handle(verb, body)

    def listen(self, kind: type[E], listener: Callable[[E], None], inbox: Inbox | None = None,
               accept: Callable[[E], bool] | None = None) -> Subscription:
        """Hear every bus event of class `kind` (bridge/core/eventdata.py) on this extension's inbox,
        or on `inbox`, one it made (the plugin host hears state changes on each plugin's own, one hop
        from the writer); only those `accept` passes, if given (a cheap test, run on the emitter's
        thread). Returns the subscription: call it to stop; its `dropped` counts what a full inbox refused."""
        sub = self._core.bus.subscribe(kind, self.checked(listener, f"{kind.__name__} listener", inbox),
                                       inbox or self.inbox, accept)
        key = ("bus listener", sub)
        self._undo(key, sub)
        sub.then(lambda: self._done(key))
        return sub

    def emit(self, event: Any) -> None:
        self._core.bus.emit(event)

    # ------------------------------------------------------------ nodes

    @property
    def nodes(self) -> "NodesView":
        return NodesView(self, self._core.directory)

    def node_directory(self) -> NodeDirectory:
        """The writable directory, for the one extension that owns the nodes."""
        return self._core.claim_directory(self.name)

    @property
    def modules(self) -> EdgeModules:
        """The edge modules (WASM plugins) this bridge runs; the plugin host adds them."""
        return self._core.modules

    def bridge_health(self) -> dict[str, Any]:
        """What `bridge/health` says now (counters only; nothing secret)."""
        return self._core.health()

    # ------------------------------------------------------------ health and info

    def add_health(self, key: str, provider: Callable[[], Any]) -> None:
        self._add_provider(self._core.health_providers, "health", key, provider)

    def add_info(self, key: str, provider: Callable[[], Any]) -> None:
        self._add_provider(self._core.info_providers, "info", key, provider)

    def _add_provider(self, table: dict[str, Callable[[], Any]], kind: str, key: str,
                      provider: Callable[[], Any]) -> None:
        table[key] = provider

        def remove() -> None:
            if table.get(key) is provider:
                del table[key]

        self._undo((kind, key), remove)

    # ------------------------------------------------------------ threads and timers

    def spawn(self, name: str, target: Callable[[], None], stop: threading.Event | None = None) -> Supervised:
        """A supervised thread that runs target() until `stop` (default `ctx.stopping`) is set,
        restarted if it raises; target should return once that event is set."""
        handle = self._core.supervisor.spawn(f"{self.name}-{name}", target, stop or self.stopping)
        self._undo(("thread", handle.name), lambda: self._end_thread(handle))
        return handle

    def _end_thread(self, handle: Supervised) -> None:
        handle.stop.set()
        handle.join(2.0)
        self._core.supervisor.forget(handle)

    def new_inbox(self, name: str, max_queue: int) -> Inbox:
        """Another inbox with its own worker (a plugin host gives each plugin one), stopped with
        the extension or by `close_inbox`."""
        inbox = Inbox(f"{self.name}-{name}", self._core.supervisor, max_queue).start()
        self._undo(("inbox", inbox), inbox.stop)
        return inbox

    def close_inbox(self, inbox: Inbox) -> None:
        self._done(("inbox", inbox))
        inbox.stop()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Run fn on this extension's inbox after delay seconds, unless it stops first.

        A timer is an entry in the inbox's heap, not a thread; stopping the inbox drops it."""
        return self.inbox.call_later(delay, self._timer_fired, fn)

    def _timer_fired(self, fn: Callable[[], None]) -> None:
        if not self.stopping.is_set():
            fn()

    # ------------------------------------------------------------ the ledger

    def _undo(self, key: tuple[str, Any], undo: Callable[[], None]) -> None:
        with self._lock:
            self._ledger.append((key, undo))

    def _release(self, key: tuple[str, Any]) -> None:
        """Undo one registration now."""
        with self._lock:
            undo = [u for k, u in self._ledger if k == key]
            self._ledger = [(k, u) for k, u in self._ledger if k != key]
        for fn in undo:
            fn()

    def _done(self, key: tuple[str, Any]) -> None:
        with self._lock:
            self._ledger = [(k, u) for k, u in self._ledger if k != key]

    def inboxes(self) -> list[Inbox]:
        """This extension's inbox and every other it made (for `Bridge.drain`)."""
        with self._lock:
            made = [key[1] for key, _ in self._ledger if key[0] == "inbox"]
        return [self.inbox, *made]

    def held(self) -> dict[str, int]:
        """What the extension holds now, by kind (for health and for tests)."""
        out: dict[str, int] = {}
        with self._lock:
            for (kind, _), _undo in self._ledger:
                out[kind] = out.get(kind, 0) + 1
        timers = self.inbox.timers
        if timers:
            out["timer"] = timers
        return out

    def close(self) -> None:
        """Undo every registration, newest first, then stop the inbox (and its timers)."""
        self.stopping.set()
        with self._lock:
            ledger, self._ledger = self._ledger, []
        for key, undo in reversed(ledger):
            try:
                undo()
            except Exception:
                self.log.exception("could not undo %s %s", *key)
        self.inbox.stop()


class NodesView:
    """Read-only: the current nodes (gated), and a watch that misses none of them."""

    def __init__(self, ctx: ExtensionContext[Any], directory: NodeDirectory) -> None:
        self._ctx, self._directory = ctx, directory

    def all(self) -> list[NodeInfo]:
        return self._directory.all()

    def get(self, node_id: int) -> NodeInfo | None:
        return self._directory.get(node_id)

    def by_name(self, name: str) -> NodeInfo | None:
        return self._directory.by_name(name)

    def watch(self, watcher: Watcher, *, states: bool = True) -> None:
        """Every current node now, then every change, on this extension's inbox
        (with states=False, not the changes of a node's published state alone)."""
        unwatch = self._directory.watch(self._ctx.checked(watcher, "node watcher"), self._ctx.inbox,
                                        states=states)
        self._ctx._undo(("node watcher", watcher), unwatch)

    def watch_events(self, watcher: EventWatcher) -> None:
        """Every node event from now on (gated, as published), on this extension's inbox."""
        unwatch = self._directory.watch_events(self._ctx.checked(watcher, "node event watcher"),
                                               self._ctx.inbox)
        self._ctx._undo(("node event watcher", watcher), unwatch)

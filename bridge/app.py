"""Bridge: owns the MQTT connection, the core services and the features built on them.

The core is the MQTT client, the home state cache, events, services, the
request API, the event bus, the node directory and the thread supervisor.
Features are `Extension`s; each is started with its own `ExtensionContext`
(bridge/extension.py), guarded: one that fails to start is logged, shown in
`bridge/health` and `bridge/info`, its registrations undone, and the others
run; `unstartable` lists those not in `bridge.keep_running_without`, and
`ruview-bridge run` stops on them (exit 2). `build_bridge(config)` is the one
way to make a bridge, for the CLI and the tests alike; which features run comes
from config (catalog.py).
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from dataclasses import replace
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import orjson

from bridge import __version__, catalog, console
from bridge.config import redacted, secret_values
from bridge.config.loader import ConfigError
from bridge.core.api import ApiError, BridgeApi
from bridge.core.bus import EventBus
from bridge.core.context import utc_now_iso
from bridge.core.directory import NodeDirectory
from bridge.core.events import EventChannel
from bridge.core.inbox import Inbox
from bridge.core.logs import MqttLogHandler
from bridge.core.modules import EdgeModules
from bridge.core.payload import dumps
from bridge.core.services import ServiceRegistry
from bridge.core.state import StateMachine
from bridge.core.store import StateStore, StoreError
from bridge.core.supervisor import Supervisor
from bridge.extension import CoreServices, Extension, ExtensionContext
from bridge.mqtt.client import MqttClient
from bridge.mqtt.settings import ConnectionSettings, parse_broker_url, stable_client_id
from bridge.mqtt.router import Message, Router
from bridge.topics import Topics

log = logging.getLogger(__name__)


def connection_settings(config: Any, url: str) -> ConnectionSettings:
    m = config.mqtt
    host, port, tls = parse_broker_url(url)
    return ConnectionSettings(
        host=host, port=port, tls=tls, ca=m.tls.ca, cert=m.tls.cert, key=m.tls.key,
        verify=m.tls.verify, username=m.username, password=m.password_value(),
        client_id=m.client_id or f"ruview-bridge-{os.urandom(4).hex()}",
        protocol=m.protocol, keepalive=m.keepalive,
        min_delay=m.reconnect.min_delay, max_delay=m.reconnect.max_delay,
        outbox_size=m.outbox_size, max_payload=m.max_payload,
        fallbacks=tuple(parse_broker_url(u)[:2] for u in m.fallback_urls if u != url),
        share_group=config.bridge.share_group, session_expiry=m.session_expiry)


def _reason(exc: BaseException) -> str:
    """Why a feature cannot start, in the words its error chose: an extension raises RuntimeError
    (or lets an OSError through) saying what failed and which key to change."""
    if isinstance(exc, RuntimeError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    return f"{type(exc).__name__}: {exc}"


class Bridge:
    def __init__(self, config: Any, broker_url: str | None = None, *,
                 embedded_broker: bool = False, force_protocol: str | None = None,
                 mqtt: Callable[[Router, str, Supervisor], MqttClient] | None = None,
                 log_level: str | None = None) -> None:
        self.config = config
        self.log_level = log_level or config.bridge.log_level
        self.embedded_broker = embedded_broker
        self.supervisor = Supervisor()
        self.core_inbox = Inbox("mqtt-handlers", self.supervisor)
        b = config.bridge
        # first: what users set (and messages not yet sent) is known before anything runs
        self.store = StateStore.in_dir(b.state_path)
        kept = self.store.scope("bridge").get("log_level")
        if log_level is None and isinstance(kept, dict) and kept.get("config") == b.log_level \
                and kept.get("level") in console.LEVELS:
            self.log_level = kept["level"]  # set by the log_level request in an earlier run
        self.topics = Topics(config.mqtt.base_topic, instance=b.instance_name, share_group=b.share_group)
        self.router = Router(self.core_inbox)
        if mqtt is not None:  # a client made elsewhere (tests/harness.py: in process, no broker)
            self.mqtt = mqtt(self.router, self.topics.bridge_state, self.supervisor)
        else:
            settings = connection_settings(config, broker_url or config.mqtt.url)
            if force_protocol:
                settings = replace(settings, protocol=force_protocol)
            # the same id at every start: a persistent session is found again (not when another bridge
            # holds the state directory: its id is that bridge's, and two clients with one id knock each
            # other off the broker)
            if not config.mqtt.client_id and self.store.problem is None:
                settings = replace(settings, client_id=stable_client_id(self.store.scope("mqtt"), b.instance_name))
            self.mqtt = MqttClient(settings, self.router, state_topic=self.topics.bridge_state,
                                   supervisor=self.supervisor, store=self.store)
        self.bus = EventBus(self.core_inbox)
        self.states = StateMachine(self.mqtt, self.topics, self.bus)
        self.events = EventChannel(self.mqtt, self.topics, self.bus)
        self.services = ServiceRegistry(self.mqtt, self.topics)
        self.api = BridgeApi(self.mqtt, self.topics)
        self.directory = NodeDirectory()
        self._directory_owner: str | None = None
        self.modules = EdgeModules()
        self.extensions: list[Extension] = []
        self.contexts: dict[str, ExtensionContext] = {}
        self.extension_state: dict[str, dict[str, Any]] = {}
        self.info_providers: dict[str, Callable[[], Any]] = {}
        self.health_providers: dict[str, Callable[[], Any]] = {}
        self.unstartable: list[str] = []  # "<feature>: <why>" for each enabled feature that could not start
        self.restart_requested = threading.Event()
        self.config_source: Callable[[], Any] | None = None  # the config file read anew (cli.py sets it)
        self.next_config: Any = None  # what `restart` read and checked: the next run's config
        self.run_id = os.urandom(8).hex()  # this process's run, in bridge/health
        self.twin: str | None = None  # another live bridge's run heard on our own health topic
        self._heard_runs: dict[str, int] = {}
        self.started_at = 0.0
        self._stop = threading.Event()
        self._info_lock = threading.Lock()  # info is read and published in one step: the newest goes last
        self.log_handler = MqttLogHandler(
            lambda payload: self.mqtt.publish(self.topics.bridge_log, payload, qos=0),
            self.core_inbox.put, self.core_inbox.call_later, self.log_level.upper(), secret_values(config))
        self._root_level: int | None = None  # the root logger's level before start
        self.api.register("health_check", lambda _req: {"healthy": self.mqtt.connected})
        self.api.register("info", lambda _req: self.info(), scope="instance")
        self.api.register("restart", self._request_restart, scope="instance")
        self.api.register("log_level", self._request_log_level, scope="instance")
        self.mqtt.on_fatal = self.restart_requested.set  # the broker cannot do what the config needs
        self.mqtt.on_session(self.publish_info)
        self.mqtt.on_session(self.publish_health)
        self.core = CoreServices(
            mqtt=self.mqtt, topics=self.topics, states=self.states, events=self.events,
            services=self.services, api=self.api, bus=self.bus, directory=self.directory,
            modules=self.modules, supervisor=self.supervisor,
            state_dir=config.bridge.state_path, store=self.store, health=self.health,
            health_providers=self.health_providers, info_providers=self.info_providers,
            claim_directory=self.claim_directory)

    # ------------------------------------------------------------ extensions

    def add(self, extension: Extension) -> None:
        if not extension.name or any(e.name == extension.name for e in self.extensions):
            raise ValueError(f"extension {extension.name!r} has no name or is added twice")
        self.extensions.append(extension)
        self.extension_state[extension.name] = {"state": "stopped"}

    def extension(self, name: str) -> Extension:
        return next(e for e in self.extensions if e.name == name)

    def claim_directory(self, name: str) -> NodeDirectory:
        if self._directory_owner not in (None, name):
            raise RuntimeError(f"the node directory belongs to {self._directory_owner}, not {name}")
        self._directory_owner = name
        return self.directory

    def _start_extension(self, ext: Extension) -> None:
        section = getattr(self.config, ext.name, None)
        ctx: ExtensionContext[Any] = ExtensionContext(ext, section if section is not None else ext.Config(),
                                                      self.core)
        self.contexts[ext.name] = ctx
        self.extension_state[ext.name] = {"state": "starting"}
        began = time.monotonic()
        try:
            ext.start(ctx)
        except Exception as exc:
            self._failed_to_start(ext.name, exc)
            self.extension_state[ext.name] = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
            self._close(ext, ctx)
            return
        self.extension_state[ext.name] = {"state": "running",
                                          "start_seconds": round(time.monotonic() - began, 3)}

    def _failed_to_start(self, name: str, exc: Exception) -> None:
        """One line naming the feature, the cause and the key to change. An error the feature
        worded (RuntimeError, OSError) has no traceback; anything else is a bug and keeps it."""
        reason = _reason(exc)
        bug = not isinstance(exc, (RuntimeError, OSError))
        if name in self.config.bridge.keep_running_without:
            log.warning("%s: %s; running without %s (bridge.keep_running_without)", name, reason, name,
                        exc_info=bug)
            return
        line = f"{name}: {reason}"
        self.unstartable.append(line)
        log.error("%s (or list %s in bridge.keep_running_without to run without it)", line, name, exc_info=bug)

    def stop_extension(self, name: str) -> None:
        """Stop one running extension and undo everything it registered; the rest keep running."""
        ext = self.extension(name)
        ctx = self.contexts.pop(name, None)
        if ctx is not None and self.extension_state[name]["state"] == "running":
            self._close(ext, ctx)
        self.extension_state[name] = {"state": "stopped"}

    def _close(self, ext: Extension, ctx: ExtensionContext) -> None:
        ctx.stopping.set()
        try:
            ext.stop()
        except Exception:
            log.exception("stopping extension %s failed", ext.name)
        ctx.close()
        if self._directory_owner == ext.name:
            self._directory_owner = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.started_at = time.time()
        self._start_logging()
        for ext in self.extensions:  # what bridge/info says until each has started (or failed)
            self.extension_state[ext.name] = {"state": "starting"}
        self.core_inbox.start()
        self.states.start()
        self.events.start()
        self.services.start()
        self.api.start()
        # before the session: a dead predecessor's retained health is heard before ours replaces it
        self.mqtt.subscribe(self.topics.bridge_health, self._on_health_heard)
        self.mqtt.start()
        self.supervisor.spawn("health", self._health_loop, self._stop)
        for ext in self.extensions:
            self._start_extension(ext)
        self.publish_info()

    def stop(self) -> None:
        self._stop.set()
        for ext in reversed(self.extensions):
            if ext.name in self.contexts:
                self.stop_extension(ext.name)
        self.states.flush()  # states conflated while the link was behind go out before `offline`
        self.mqtt.stop(self.config.bridge.shutdown_timeout)
        self.core_inbox.stop()
        self.store.close()
        self._stop_logging()

    # ------------------------------------------------------------ the log on MQTT

    def _start_logging(self) -> None:
        """Every record at or above the bridge's level goes to `<base>/bridge/log` as well."""
        root = logging.getLogger()
        self._root_level = root.level  # put back at stop (the log_level request may change it)
        if root.getEffectiveLevel() > self.log_handler.level:  # not set up by the CLI (tests, embedding)
            root.setLevel(self.log_handler.level)
        root.addHandler(self.log_handler)

    def _stop_logging(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.log_handler)
        if self._root_level is not None:
            root.setLevel(self._root_level)
            self._root_level = None

    def set_log_level(self, level: str) -> None:
        """The level from now on, on MQTT, the console and the log file (the request keeps it over restarts)."""
        if level not in console.LEVELS:
            raise ValueError(f"expected one of {', '.join(console.LEVELS)}")
        # said at the level it leaves, so that it is seen whichever way it goes
        log.log(logging.getLevelName(self.log_level.upper()), "log level %s -> %s",
                self.log_level, level)
        self.log_level = level
        console.set_level(level)
        self.log_handler.setLevel(level.upper())

    def _request_log_level(self, request: dict[str, Any]) -> dict[str, Any]:
        level = request.get("level", request.get("value"))
        if not isinstance(level, str) or level.lower() not in console.LEVELS:
            raise ApiError(f"level: expected one of {', '.join(console.LEVELS)}, got {str(level)[:40]!r} "
                           '(send {"level": "debug"})')
        try:  # kept over restarts, unless config.yaml's bridge.log_level is edited since
            self.store.scope("bridge").put("log_level", {"level": level.lower(),
                                                         "config": self.config.bridge.log_level})
        except StoreError as exc:
            raise ApiError(f"not changed: {exc}") from None
        self.set_log_level(level.lower())
        return {"level": self.log_level}

    def _request_restart(self, _request: dict[str, Any]) -> dict[str, Any]:
        """Restart with the config file as it is now: read and checked first, so a broken or empty
        file is answered with its problems and the running bridge goes on as it was."""
        if self.config_source is not None:
            try:
                self.next_config = self.config_source()
            except ConfigError as exc:
                raise ApiError(f"not restarted, the running configuration is kept: {'; '.join(exc.lines)}") from None
        # answer first; the CLI restarts us once the response is on its way
        self.core_inbox.call_later(0.5, self.restart_requested.set)
        return {}

    def inboxes(self) -> list[Inbox]:
        every = [self.core_inbox, *(i for ctx in list(self.contexts.values()) for i in ctx.inboxes())]
        return [i for i in every if i.running]

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every inbox has run what it holds, and what that made the others hold.

        Done when a round of markers, one per inbox, ran with no other call anywhere in between:
        then nothing was left and nothing new was made. Timers not yet due do not count. A test's
        barrier, so that "nothing happened" is checked after everything that could happen has.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inboxes = self.inboxes()
            before = sum(i.handled + i.errors for i in inboxes)
            marks = [threading.Event() for _ in inboxes]
            if not all(i.put(m.set) for i, m in zip(inboxes, marks)):
                continue
            for mark in marks:
                if not mark.wait(max(0.0, deadline - time.monotonic())):
                    return False
            if sum(i.handled + i.errors for i in inboxes) - before == len(inboxes):
                return True
        return False

    # ------------------------------------------------------------ info and health

    def info(self) -> dict[str, Any]:
        info = {
            "version": __version__,
            "python": platform.python_version(),
            "base_topic": self.topics.base,
            "instance": self.topics.instance,
            "share_group": self.topics.share_group,
            "log_level": self.log_level,
            "broker": {"url": self.mqtt.broker_url, "embedded": self.embedded_broker,
                       "protocol": "5" if self.mqtt.is_v5 else "3.1.1"},
            "config": redacted(self.config),
            "extensions": {name: s["state"] for name, s in self.extension_state.items()},
            "requests": self.api.verbs(),
            "services": self.services.names(),
            "nodes": [], "plugins": self.modules.all(), "languages": [],
            "started": datetime.fromtimestamp(self.started_at or time.time(), timezone.utc).isoformat(),
        }
        for key, provider in list(self.info_providers.items()):
            info[key] = _safely(provider, key)
        return info

    def publish_info(self) -> None:
        with self._info_lock:  # a session's info and start()'s cannot overtake each other
            self.mqtt.publish(self.topics.bridge_info, dumps(self.info()), qos=1, retain=True)

    def health(self) -> dict[str, Any]:
        health = {
            "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else 0,
            "time": utc_now_iso(),
            "mqtt": self.mqtt.stats(),
            "handlers": {**self.core_inbox.stats(), "router_dropped": self.router.dropped,
                         "ignored_retained": self.router.ignored_retained},
            "states": {"entities": len(self.states), "rejected": self.states.rejected,
                       "superseded": self.states.superseded},
            "services": {"calls": self.services.calls, "failures": self.services.failures},
            "requests": {"received": self.api.requests, "errors": self.api.errors},
            "extensions": {name: {**state, **({"inbox": self.contexts[name].inbox.stats()}
                                              if name in self.contexts else {})}
                           for name, state in self.extension_state.items()},
            "threads": self.supervisor.stats(),
            "log": self.log_handler.stats(),
            "store": self.store.health(),
            "os_threads": threading.active_count(),  # flat while the bridge runs: no thread per timer
            "run": self.run_id,  # tells this bridge's health from another's on the same topic
            **({"another_bridge": self.twin} if self.twin else {}),
        }
        for key, provider in list(self.health_providers.items()):
            health[key] = _safely(provider, key)
        return health

    def _on_health_heard(self, msg: Message) -> None:
        """Another live bridge publishing our own health topic (two bridges on one base topic
        without a share group, or one instance name twice) would run every call twice: said
        loudly. One message from another run may be a dead bridge's retained one; a second is live."""
        try:
            run = orjson.loads(msg.payload).get("run") if msg.payload else None
        except (orjson.JSONDecodeError, AttributeError):
            return
        if not isinstance(run, str) or run == self.run_id:
            return
        self._heard_runs[run] = self._heard_runs.get(run, 0) + 1
        if self._heard_runs[run] == 2 and self.twin is None:
            self.twin = run
            log.error("another bridge is running on %s (run %s): two bridges on one base topic both execute "
                      "every service call and request; give each its own mqtt.base_topic, or set the same "
                      "bridge.share_group and a different bridge.instance on each", self.topics.bridge_health,
                      run[:16])

    def publish_health(self) -> None:
        self.mqtt.publish(self.topics.bridge_health, dumps(self.health()), qos=0, retain=True)

    def _health_loop(self) -> None:
        while not self._stop.wait(self.config.bridge.health_interval):
            self.publish_health()


def _safely(provider: Callable[[], Any], key: str) -> Any:
    """One feature's figure; a provider that fails shows its error instead of hiding the rest."""
    try:
        return provider()
    except Exception as exc:
        log.exception("reporting %s failed", key)
        return {"error": f"{type(exc).__name__}: {exc}"}


def build_bridge(config: Any, *, broker_url: str | None = None, embedded_broker: bool = False,
                 force_protocol: str | None = None,
                 extensions: Iterable[Extension] | None = None, log_level: str | None = None) -> Bridge:
    """The bridge with the extensions config enables (or exactly `extensions`), not started."""
    bridge = Bridge(config, broker_url, embedded_broker=embedded_broker, force_protocol=force_protocol,
                    log_level=log_level)
    for ext in catalog.enabled(config) if extensions is None else extensions:
        bridge.add(ext)
    return bridge

"""Bridge: owns the MQTT connection, the core services and the features built on them.

Features ("extensions", as Zigbee2MQTT calls them) get the Bridge and use
its narrow parts — `mqtt`, `states`, `events`, `services`, `api`, `bus` —
and add to `bridge/info` and `bridge/health` through providers. The Bridge
never imports a feature; `cli.py` decides which ones run.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from bridge import __version__
from bridge.config import redacted
from bridge.core.api import BridgeApi
from bridge.core.bus import EventBus
from bridge.core.context import utc_now_iso
from bridge.core.events import EventChannel
from bridge.core.payload import dumps
from bridge.core.services import ServiceRegistry
from bridge.core.state import StateMachine
from bridge.mqtt.client import ConnectionSettings, MqttClient, parse_broker_url
from bridge.mqtt.router import Router
from bridge.topics import Topics

log = logging.getLogger(__name__)


class Extension(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


def connection_settings(config: dict[str, Any], url: str) -> ConnectionSettings:
    m = config["mqtt"]
    host, port, tls = parse_broker_url(url)
    return ConnectionSettings(
        host=host, port=port, tls=tls, ca=m["tls"]["ca"], cert=m["tls"]["cert"],
        key=m["tls"]["key"], verify=m["tls"]["verify"], username=m["username"],
        password=m["password"], client_id=m["client_id"] or f"ruview-bridge-{os.urandom(4).hex()}",
        protocol=m["protocol"], keepalive=m["keepalive"],
        min_delay=m["reconnect"]["min_delay"], max_delay=m["reconnect"]["max_delay"],
        outbox_size=m["outbox_size"], max_payload=m["max_payload"])


class Bridge:
    def __init__(self, config: dict[str, Any], broker_url: str, *,
                 embedded_broker: bool = False, force_protocol: str | None = None) -> None:
        self.config = config
        self.embedded_broker = embedded_broker
        self.topics = Topics(config["mqtt"]["base_topic"])
        self.router = Router()
        settings = connection_settings(config, broker_url)
        if force_protocol:
            settings = replace(settings, protocol=force_protocol)
        self.mqtt = MqttClient(settings, self.router, state_topic=self.topics.bridge_state)
        self.bus = EventBus()
        self.states = StateMachine(self.mqtt, self.topics, self.bus)
        self.events = EventChannel(self.mqtt, self.topics, self.bus)
        self.services = ServiceRegistry(self.mqtt, self.topics)
        self.api = BridgeApi(self.mqtt, self.topics)
        self.extensions: list[Extension] = []
        self.info_providers: dict[str, Callable[[], Any]] = {}
        self.health_providers: dict[str, Callable[[], Any]] = {}
        self.restart_requested = threading.Event()
        self.started_at = 0.0
        self._stop = threading.Event()
        self._health_thread: threading.Thread | None = None
        self.api.register("health_check", lambda _req: {"healthy": self.mqtt.connected})
        self.api.register("info", lambda _req: self.info())
        self.api.register("restart", self._request_restart)
        self.mqtt.on_session(self.publish_info)
        self.mqtt.on_session(self.publish_health)

    # ------------------------------------------------------------ lifecycle

    def add(self, extension: Extension) -> None:
        self.extensions.append(extension)

    def start(self) -> None:
        self.started_at = time.time()
        self.router.start()
        self.states.start()
        self.events.start()
        self.services.start()
        self.api.start()
        for ext in self.extensions:
            ext.start()
        self.mqtt.start()
        self._health_thread = threading.Thread(target=self._health_loop, name="health", daemon=True)
        self._health_thread.start()

    def stop(self) -> None:
        self._stop.set()
        for ext in reversed(self.extensions):
            try:
                ext.stop()
            except Exception:
                log.exception("stopping %s failed", type(ext).__name__)
        self.mqtt.stop(self.config["bridge"]["shutdown_timeout"])
        self.router.stop()

    def _request_restart(self, _request: dict) -> dict:
        # answer first; the CLI restarts us once the response is on its way
        threading.Timer(0.5, self.restart_requested.set).start()
        return {}

    # ------------------------------------------------------------ info and health

    def info(self) -> dict[str, Any]:
        info = {
            "version": __version__,
            "python": platform.python_version(),
            "base_topic": self.topics.base,
            "broker": {"url": self.mqtt.broker_url, "embedded": self.embedded_broker,
                       "protocol": "5" if self.mqtt.is_v5 else "3.1.1"},
            "config": redacted(self.config),
            "requests": self.api.verbs(),
            "services": self.services.names(),
            "nodes": [], "plugins": [], "languages": [],
            "started": datetime.fromtimestamp(self.started_at or time.time(), timezone.utc).isoformat(),
        }
        for key, provider in self.info_providers.items():
            info[key] = provider()
        return info

    def publish_info(self) -> None:
        self.mqtt.publish(self.topics.bridge_info, dumps(self.info()), qos=1, retain=True)

    def health(self) -> dict[str, Any]:
        health = {
            "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else 0,
            "time": utc_now_iso(),
            "mqtt": self.mqtt.stats(),
            "handlers": {"backlog": self.router.backlog, "dropped": self.router.dropped,
                         "handled": self.router.handled, "errors": self.router.handler_errors},
            "states": {"entities": len(self.states), "rejected": self.states.rejected},
            "services": {"calls": self.services.calls, "failures": self.services.failures},
            "requests": {"received": self.api.requests, "errors": self.api.errors},
        }
        for key, provider in self.health_providers.items():
            health[key] = provider()
        return health

    def publish_health(self) -> None:
        self.mqtt.publish(self.topics.bridge_health, dumps(self.health()), qos=0, retain=True)

    def _health_loop(self) -> None:
        interval = self.config["bridge"]["health_interval"]
        while not self._stop.wait(interval):
            try:
                self.publish_health()
            except Exception:
                log.exception("publishing bridge/health failed")

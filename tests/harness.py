"""A whole bridge in process, with no broker: for feature logic that does not cross the wire.

`in_process(config, extensions)` builds the real `Bridge` — the real core, contexts, inboxes,
router, state machine, services and request API — around `LoopbackMqtt`, which behaves as a
broker would for this one client: what the bridge publishes is delivered to its own matching
subscriptions (not to No Local ones), retained messages are kept and given to later
subscribers, and `inject` delivers a message as if another client had sent it. Every delivery
goes through the router onto the subscriber's inbox, as from paho's thread, so the inbox rule
is exercised exactly as in a real bridge; `bridge.drain()` is the barrier.

Tests of what crosses the wire (reconnects, QoS, MQTT 5 properties, brokers) keep a real broker.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable

from bridge.app import Bridge
from bridge.catalog import validate_config
from bridge.core.inbox import Inbox
from bridge.core.supervisor import Supervisor
from bridge.extension import Extension
from bridge.mqtt.client import SessionCallback
from bridge.mqtt.router import Message, Route, Router, filter_matches
from bridge.topics import check_topic


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class LoopbackMqtt:
    """MqttClient's surface, in process: the bridge talks to itself (and to `inject`)."""

    is_v5 = True
    broker_url = "loopback"

    def __init__(self, router: Router, state_topic: str, supervisor: Supervisor) -> None:
        self.router, self.state_topic = router, state_topic
        self.sent: list[Published] = []
        self.retained: dict[str, Published] = {}
        self.connected = False
        self._sessions: list[SessionCallback] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ what the bridge calls

    @property
    def base_topic(self) -> str:
        return self.state_topic.rsplit("/bridge/", 1)[0]

    def start(self) -> None:
        self.connected = True
        self.publish(self.state_topic, b"online", 1, True)
        for handle in list(self._sessions):
            (handle.inbox or self.router.default_inbox).put(handle.callback)

    def stop(self, timeout: float = 0.0) -> None:
        self.publish(self.state_topic, b"offline", 1, True)
        self.connected = False

    def wait_connected(self, timeout: float) -> bool:
        return self.connected

    def listens_to(self, topic: str) -> bool:
        return self.router.listens_to(topic)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                expiry: int | None = None, response_topic: str | None = None,
                correlation_data: bytes | None = None, cache: bool = True) -> bool:
        check_topic(topic)
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        sent = Published(topic, data, qos, retain)
        with self._lock:
            self.sent.append(sent)
            if retain:
                if data:
                    self.retained[topic] = sent
                else:
                    self.retained.pop(topic, None)
        self.router.submit(Message(topic, data, qos, False, response_topic, correlation_data), local=True)
        return True

    def burst(self) -> ContextManager[None]:
        return nullcontext()

    def subscribe(self, topic_filter: str, handler: Callable[[Message], None], *, accept_retained: bool = True,
                  no_local: bool = False, inbox: Inbox | None = None) -> Route:
        route = self.router.add(topic_filter, handler, accept_retained=accept_retained, no_local=no_local,
                                inbox=inbox)
        if accept_retained:
            with self._lock:
                held = [r for t, r in self.retained.items() if filter_matches(topic_filter, t)]
            for r in held:  # what a broker sends a new subscription; our own are No Local's to skip
                if not no_local:
                    route.inbox.put(route.handler, Message(r.topic, r.payload, r.qos, True))
        return route

    def unsubscribe(self, route: Route) -> None:
        self.router.remove(route)

    def on_session(self, callback: Callable[[], None], inbox: Inbox | None = None) -> SessionCallback:
        handle = SessionCallback(callback, inbox)
        self._sessions.append(handle)
        if self.connected:
            (inbox or self.router.default_inbox).put(callback)
        return handle

    def remove_session_callback(self, handle: SessionCallback) -> None:
        if handle in self._sessions:
            self._sessions.remove(handle)

    def republish_retained(self, prefix: str) -> int:
        return 0

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "broker": self.broker_url, "published": len(self.sent),
                "unacknowledged": 0, "outbox": 0}

    # ------------------------------------------------------------ what a test calls

    def inject(self, topic: str, payload: bytes | str | dict[str, Any], *, retain: bool = False,
               response_topic: str | None = None) -> None:
        """A message from another client, delivered as the broker would."""
        import orjson
        data = orjson.dumps(payload) if isinstance(payload, dict) else (
            payload.encode() if isinstance(payload, str) else payload)
        self.router.submit(Message(topic, data, 1, retain, response_topic))

    def on(self, topic: str) -> list[Published]:
        with self._lock:
            return [p for p in self.sent if p.topic == topic]


def in_process(sections: dict[str, Any], extensions: Iterable[Extension]) -> tuple[Bridge, LoopbackMqtt]:
    """A started bridge with `extensions`, config from `sections` (validated as config.yaml is)."""
    raw = {"mqtt": {"url": "mqtt://127.0.0.1:1"}, "bridge": {"health_interval": 60}, **sections}
    config = validate_config(raw, "test", env={})
    made: list[LoopbackMqtt] = []

    def loopback(router: Router, state_topic: str, supervisor: Supervisor) -> LoopbackMqtt:
        made.append(LoopbackMqtt(router, state_topic, supervisor))
        return made[0]

    bridge = Bridge(config, mqtt=loopback)  # type: ignore[arg-type]
    for ext in extensions:
        bridge.add(ext)
    bridge.start()
    return bridge, made[0]

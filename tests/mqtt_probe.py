"""A plain paho client that tests use to watch and poke the bridge over MQTT."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import orjson
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    correlation_data: bytes | None = None
    received: float = 0.0  # time.monotonic() on arrival

    def json(self):
        return orjson.loads(self.payload)


class Probe:
    def __init__(self, port: int, *, v5: bool = False, client_id: str = "",
                 clean: bool = True, host: str = "127.0.0.1", username: str | None = None,
                 password: str | None = None, connect_timeout: float = 10.0) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self.v5 = v5
        kwargs = {"protocol": paho.MQTTv5 if v5 else paho.MQTTv311, "client_id": client_id}
        if not v5:
            kwargs["clean_session"] = clean
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, **kwargs)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.subscriptions: list[str] = []
        self._acked: set[int] = set()
        self._sync_topic = f"probe-sync/{uuid.uuid4().hex}"
        self._syncs_seen: set[int] = set()
        self._sync_numbers = itertools.count(1)
        self._sync_subscribed = False
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client.reconnect_delay_set(0.05, 0.2)
        if username:
            self.client.username_pw_set(username, password)
        self.client.connect(host, port, 30)
        self.client.loop_start()
        if not self.connected.wait(connect_timeout):
            self.close()
            raise TimeoutError(f"probe could not connect to port {port}")

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            return
        self.connected.set()
        self.subscribed.clear()
        if self.subscriptions:
            client.subscribe([(t, 1) for t in self.subscriptions])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()
        self.subscribed.set()

    def _on_disconnect(self, *args):
        self.connected.clear()
        self.subscribed.clear()

    def _on_message(self, client, userdata, msg):
        corr = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        if msg.topic == self._sync_topic:
            with self._cond:
                self._syncs_seen.add(int(msg.payload))
                self._cond.notify_all()
            return
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain), msg.qos, corr,
                                          time.monotonic()))
            self._cond.notify_all()

    def _wait_acked(self, mid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._acked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"the broker did not acknowledge subscription {mid}")
                self._cond.wait(remaining)

    def subscribe(self, *topics: str, timeout: float = 5.0) -> "Probe":
        """Subscribe, wait for the SUBACK, then flush: the retained messages are all in."""
        self.subscriptions += topics
        result, mid = self.client.subscribe([(t, 1) for t in topics])
        self._wait_acked(mid, timeout)
        return self.flush(timeout)

    def flush(self, timeout: float = 5.0) -> "Probe":
        """Send a marker through the broker and wait for it: everything the broker queued for
        this client before it (retained messages of a new subscription, earlier publishes)
        has then arrived. The way to check that something did *not* happen, without sleeping."""
        if not self._sync_subscribed:
            self.subscriptions.append(self._sync_topic)
            _, mid = self.client.subscribe(self._sync_topic, 1)
            self._wait_acked(mid, timeout)
            self._sync_subscribed = True
        n = next(self._sync_numbers)
        self.client.publish(self._sync_topic, str(n), 1).wait_for_publish(timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            while n not in self._syncs_seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the broker did not return the probe's sync marker")
                self._cond.wait(remaining)
        return self

    def publish(self, topic: str, payload: bytes | str | dict, qos: int = 1, retain: bool = False,
                response_topic: str | None = None, correlation: bytes | None = None) -> None:
        if isinstance(payload, (dict, list)):
            payload = orjson.dumps(payload)
        props = None
        if self.v5 and (response_topic or correlation):
            props = Properties(PacketTypes.PUBLISH)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation:
                props.CorrelationData = correlation
        self.client.publish(topic, payload, qos, retain, properties=props).wait_for_publish(5)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 5.0,
                 what: str = "condition") -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.topic, m.payload[:80]) for m in self.messages[-10:]]
                    raise AssertionError(f"timed out waiting for {what}; last messages: {seen}")
                self._cond.wait(remaining)
            return list(self.messages)

    def wait_topic(self, topic: str, timeout: float = 5.0,
                   match: Callable[[Received], bool] = lambda m: True) -> Received:
        msgs = self.wait_for(lambda ms: any(m.topic == topic and match(m) for m in ms),
                             timeout, f"a message on {topic}")
        return [m for m in msgs if m.topic == topic and match(m)][-1]

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

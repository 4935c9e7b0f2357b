"""Whether a node's frames came back after an update: the bridge says so on MQTT.

A node that rebooted into a new image and streams again shows up at the bridge as a new
timeline (sequence and boot clock from zero): the bridge publishes `node_rebooted` on
`<base>/node/<name>/event`. Watching that topic from before the upload is the proof that the
new image does more than answer HTTP.
"""

from __future__ import annotations

import json
import secrets
import threading

from bridge.mqtt.oneshot import client_for
from bridge.mqtt.settings import ConnectionSettings
from bridge.topics import Topics


class BridgeFrameWatch:
    """Subscribed to one node's events until closed; `resumed()` once it has rebooted since."""

    def __init__(self, settings: ConnectionSettings, topics: Topics, node_name: str, timeout: float = 10.0) -> None:
        self._rebooted = threading.Event()
        self._subscribed = threading.Event()
        self.topic = topics.node_event(node_name)
        self.client = client_for(settings, f"ruview-node-ota-{secrets.token_hex(4)}")
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        host, port = settings.host, settings.port
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise OSError(f"could not subscribe to {self.topic} on {settings.url} within {timeout:g} s")

    def _on_message(self, _client: object, _userdata: object, message: object) -> None:
        try:
            event = json.loads(getattr(message, "payload", b""))
        except ValueError:
            return
        if isinstance(event, dict) and event.get("event_type") == "node_rebooted" \
                and not getattr(message, "retain", False):
            self._rebooted.set()

    def resumed(self) -> bool:
        return self._rebooted.is_set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

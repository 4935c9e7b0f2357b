"""Events on `<base>/event/<event_type>`: fired by features, heard from other clients.

Events are facts ("presence started"), not commands, and are never retained.
Local events go out over MQTT and onto the in-process bus; events other
clients publish arrive on the bus with origin REMOTE. Our own echoes are
recognised by their context id and not delivered twice.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from bridge.core.bus import EventBus
from bridge.core.context import context as new_context
from bridge.core.context import utc_now_iso
from bridge.core.eventdata import EventFired
from bridge.core.payload import PayloadError, dumps, parse_json
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.names import IDENTIFIER_RULE, is_identifier
from bridge.topics import Topics

log = logging.getLogger(__name__)


class EventChannel:
    def __init__(self, mqtt: MqttClient, topics: Topics, bus: EventBus) -> None:
        self._mqtt, self._topics, self._bus = mqtt, topics, bus
        self._own: OrderedDict[str, None] = OrderedDict()  # our recent context ids (any feature fires)
        self._own_lock = threading.Lock()

    def start(self) -> None:
        self._mqtt.subscribe(self._topics.event_filter, self._on_message,
                             accept_retained=False, no_local=True)

    def fire(self, event_type: str, data: dict[str, Any] | None = None, *,
             parent_id: str | None = None) -> dict[str, Any]:
        if not is_identifier(event_type):
            raise ValueError(f"invalid event type {event_type!r}: use {IDENTIFIER_RULE}")
        event = EventFired(event_type, data or {}, "LOCAL", utc_now_iso(), new_context(parent_id))
        with self._own_lock:
            self._own[event.context["id"]] = None
            if len(self._own) > 1024:
                self._own.popitem(last=False)
        body = event.as_dict()
        self._mqtt.publish(self._topics.event(event_type), dumps(body), qos=1)
        self._bus.emit(event)
        return body

    def _on_message(self, msg: Message) -> None:
        event_type = msg.topic.rsplit("/", 1)[1]
        if not is_identifier(event_type):
            log.debug("ignored event on %s: not an event type of %s", msg.topic[:200], IDENTIFIER_RULE)
            return
        try:
            body = parse_json(msg.payload)
        except PayloadError as exc:
            log.warning("ignored event on %s: %s", msg.topic, exc)
            return
        ctx = body.get("context") if isinstance(body.get("context"), dict) else {}
        with self._own_lock:
            own = ctx.get("id") in self._own
        if own:
            return
        data = body.get("data", {})
        self._bus.emit(EventFired(event_type, data if isinstance(data, dict) else {"value": data}, "REMOTE",
                                  str(body.get("time_fired") or utc_now_iso()), ctx or new_context()))

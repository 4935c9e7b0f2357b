"""Service calls on `<base>/service/<domain>/<service>`, answered on a response topic.

A feature registers `light.turn_on`; any MQTT client can then call it and
gets `{"id","success","error","result"}` back — an unknown service gets an
error answer too, never silence. Features call each other through `call()`
without going over MQTT.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from bridge.core.context import context as new_context
from bridge.core.payload import PayloadError, parse_json
from bridge.core.reply import answer
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.topics import Topics

log = logging.getLogger(__name__)

NAME = re.compile(r"[a-z0-9_]{1,64}")


class ServiceError(Exception):
    """Raised by a handler for a failure the caller should read."""


@dataclass
class ServiceCall:
    domain: str
    service: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    context: dict[str, Any] = field(default_factory=new_context)


Handler = Callable[[ServiceCall], Any]


class ServiceRegistry:
    def __init__(self, mqtt: MqttClient, topics: Topics) -> None:
        self._mqtt, self._topics = mqtt, topics
        self._handlers: dict[tuple[str, str], Handler] = {}
        self.calls = 0
        self.failures = 0

    def start(self) -> None:
        self._mqtt.subscribe(self._topics.service_filter, self._on_message, accept_retained=False)

    def register(self, domain: str, service: str, handler: Handler) -> None:
        if not (NAME.fullmatch(domain) and NAME.fullmatch(service)):
            raise ValueError(f"invalid service name {domain}.{service}: use [a-z0-9_]")
        self._handlers[(domain, service)] = handler

    def unregister(self, domain: str, service: str) -> None:
        self._handlers.pop((domain, service), None)

    def has(self, domain: str, service: str) -> bool:
        return (domain, service) in self._handlers

    def names(self) -> list[str]:
        return sorted(f"{d}.{s}" for d, s in self._handlers)

    def call(self, domain: str, service: str, data: dict[str, Any] | None = None, *,
             call_id: str | None = None, parent_id: str | None = None) -> Any:
        """Run a service in-process; raises ServiceError on failure."""
        handler = self._handlers.get((domain, service))
        if handler is None:
            raise ServiceError(f"unknown service {domain}.{service}")
        self.calls += 1
        return handler(ServiceCall(domain, service, dict(data or {}), call_id, new_context(parent_id)))

    def _on_message(self, msg: Message) -> None:
        _, _, domain, service = msg.topic.rsplit("/", 3)
        call_id = reply_to = None
        try:
            body = parse_json(msg.payload)
            call_id = body.get("id")
            reply_to = body.get("response_topic")
            if reply_to is not None and (not isinstance(reply_to, str) or not reply_to
                                         or "+" in reply_to or "#" in reply_to):
                reply_to = None
                raise PayloadError('"response_topic" must be a topic without wildcards')
            data = body.get("data", {})
            if not isinstance(data, dict):
                raise PayloadError('"data" must be a JSON object')
            result = self.call(domain, service, data, call_id=call_id)
            reply = {"id": call_id, "success": True, "error": None, "result": result}
        except (PayloadError, ServiceError) as exc:
            self.failures += 1
            reply = {"id": call_id, "success": False, "error": str(exc), "result": None}
        except Exception as exc:
            self.failures += 1
            log.exception("service %s.%s failed", domain, service)
            reply = {"id": call_id, "success": False,
                     "error": f"{type(exc).__name__}: {exc}", "result": None}
        if reply_to is None and msg.response_topic is None:
            reply_to = self._topics.service_response(domain, service)
        answer(self._mqtt, msg, reply_to, reply)

"""Service calls on `<base>/service/<domain>/<service>`, answered on a response topic.

A feature registers `light.turn_on`; any MQTT client can then call it and
gets `{"id","success","error","result"}` back — an unknown service gets an
error answer too, never silence. A handler runs on the inbox of the feature
that registered it, so a slow service delays only its own feature. Features
call each other through `call()` without going over MQTT. With a share group
the call topic is subscribed as `$share/<group>/...`: each call runs once.

An in-process call (`call()`) hops onto the callee's inbox too, and gives the
caller a `ServiceFuture`: the handler never runs on the caller's thread, so a
feature's services touch its state only from its own inbox, and a caller that
must have the answer waits for it with a timeout (`answer()`), never forever.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from bridge.core.context import context as new_context
from bridge.core.inbox import Inbox
from bridge.core.payload import PayloadError, parse_json
from bridge.core.reply import answer, caller_topic_problem
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.names import IDENTIFIER_RULE, is_identifier
from bridge.topics import Topics

log = logging.getLogger(__name__)


CALL_TIMEOUT = 5.0  # seconds an in-process caller waits for a service by default


class ServiceError(Exception):
    """Raised by a handler for a failure the caller should read."""


class ServiceFuture(Future):
    """The answer of an in-process service call, filled in on the callee's inbox."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def answer(self, timeout: float = CALL_TIMEOUT) -> Any:
        """The handler's result; ServiceError if it failed, was refused, or took over `timeout` s."""
        try:
            return self.result(timeout)
        except TimeoutError:
            raise ServiceError(f"{self.name} did not answer within {timeout:g} s") from None


@dataclass
class ServiceCall:
    domain: str
    service: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    context: dict[str, Any] = field(default_factory=new_context)


Handler = Callable[[ServiceCall], Any]


@dataclass(frozen=True, eq=False)
class Registration:
    domain: str
    service: str
    handler: Handler
    inbox: Inbox | None


class ServiceRegistry:
    def __init__(self, mqtt: MqttClient, topics: Topics) -> None:
        self._mqtt, self._topics = mqtt, topics
        self._handlers: dict[tuple[str, str], Registration] = {}
        self._lock = threading.Lock()  # features register and unregister from their own inboxes
        self.calls = 0
        self.failures = 0

    def start(self) -> None:
        self._mqtt.subscribe(self._topics.shared(self._topics.service_filter), self._on_message,
                             accept_retained=False)

    def register(self, domain: str, service: str, handler: Handler, inbox: Inbox | None = None) -> Registration:
        """Add a service; ValueError if the name is invalid or already taken (a name has one owner:
        nobody replaces another's service, a plugin's light.turn_on least of all)."""
        if not (is_identifier(domain) and is_identifier(service)):
            raise ValueError(f"invalid service name {domain}.{service}: use {IDENTIFIER_RULE}")
        reg = Registration(domain, service, handler, inbox)
        with self._lock:
            if (domain, service) in self._handlers:
                raise ValueError(f"{domain}.{service} is already registered by someone else")
            self._handlers[(domain, service)] = reg
        return reg

    def unregister(self, domain: str, service: str, registration: Registration | None = None) -> None:
        """Remove a service (only if it is still `registration`, when one is given)."""
        with self._lock:
            current = self._handlers.get((domain, service))
            if current is not None and (registration is None or current is registration):
                del self._handlers[(domain, service)]

    def has(self, domain: str, service: str) -> bool:
        return (domain, service) in self._handlers

    def names(self) -> list[str]:
        return sorted(f"{d}.{s}" for d, s in self._handlers)

    def call(self, domain: str, service: str, data: dict[str, Any] | None = None, *,
             call_id: str | None = None, parent_id: str | None = None) -> ServiceFuture:
        """Run a service in-process on its feature's inbox; the future holds its answer.

        Raises ServiceError at once for a service nobody registered. Run here only when the
        caller is already on the callee's inbox (a feature calling its own service).
        """
        reg = self._handlers.get((domain, service))
        if reg is None:
            raise ServiceError(f"unknown service {domain}.{service}")
        future = ServiceFuture(f"{domain}.{service}")
        call = ServiceCall(domain, service, dict(data or {}), call_id, new_context(parent_id))
        if reg.inbox is None or reg.inbox.on_worker:
            self._fill(future, reg, call)
        elif not reg.inbox.put(self._fill, future, reg, call):
            self.failures += 1
            future.set_exception(ServiceError(f"{domain}.{service} is too busy to take the call; try again"))
        return future

    def _fill(self, future: ServiceFuture, reg: Registration, call: ServiceCall) -> None:
        if not future.set_running_or_notify_cancel():
            return
        self.calls += 1
        try:
            future.set_result(reg.handler(call))
        except Exception as exc:
            future.set_exception(exc)

    def _on_message(self, msg: Message) -> None:
        _, _, domain, service = msg.topic.rsplit("/", 3)
        call_id = reply_to = None
        try:
            body = parse_json(msg.payload)
            call_id = body.get("id")
            if isinstance(call_id, bool) or (call_id is not None and not isinstance(call_id, (str, int))):
                call_id = None
                raise PayloadError('"id" must be a string or a number')
            reply_to = body.get("response_topic")
            if reply_to is not None:
                problem = caller_topic_problem(reply_to, '"response_topic"', self._mqtt)
                if problem:
                    reply_to = None
                    raise PayloadError(problem)
            data = body.get("data", {})
            if not isinstance(data, dict):
                raise PayloadError('"data" must be a JSON object')
        except PayloadError as exc:
            self.failures += 1
            self._answer(msg, domain, service, reply_to,
                         {"id": call_id, "success": False, "error": str(exc), "result": None})
            return
        reg = self._handlers.get((domain, service))
        if reg is not None and reg.inbox is not None and not reg.inbox.on_worker:
            if not reg.inbox.put(self._run, msg, domain, service, call_id, reply_to, data):
                self.failures += 1
                self._answer(msg, domain, service, reply_to, {
                    "id": call_id, "success": False, "result": None,
                    "error": f"{domain}.{service} is too busy to take the call; try again"})
            return
        self._run(msg, domain, service, call_id, reply_to, data)

    def _run(self, msg: Message, domain: str, service: str, call_id: Any, reply_to: str | None,
             data: dict[str, Any]) -> None:
        """Answer a call that came over MQTT; runs on the callee's inbox."""
        try:
            reg = self._handlers.get((domain, service))
            if reg is None:
                raise ServiceError(f"unknown service {domain}.{service}")
            self.calls += 1
            result = reg.handler(ServiceCall(domain, service, dict(data), call_id, new_context()))
            reply = {"id": call_id, "success": True, "error": None, "result": result}
        except ServiceError as exc:
            self.failures += 1
            reply = {"id": call_id, "success": False, "error": str(exc), "result": None}
        except Exception as exc:
            self.failures += 1
            log.exception("service %s.%s failed", domain, service)
            reply = {"id": call_id, "success": False,
                     "error": f"{type(exc).__name__}: {exc}", "result": None}
        self._answer(msg, domain, service, reply_to, reply)

    def _answer(self, msg: Message, domain: str, service: str, reply_to: str | None,
                reply: dict[str, Any]) -> None:
        if reply_to is None and msg.response_topic is None:
            reply_to = self._topics.service_response(domain, service)
        answer(self._mqtt, msg, reply_to, reply)

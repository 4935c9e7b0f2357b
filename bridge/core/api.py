"""The bridge request API, Zigbee2MQTT style.

`<base>/bridge/request/<verb>` with a JSON body (optional `"transaction"`)
is answered on `<base>/bridge/response/<verb>` with
`{"status":"ok"|"error","data":{...},"error":"...","transaction":...}`, and
also on the MQTT 5 response topic when the request carried one. Features add
verbs (`node/rename`, ...) through `register`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from bridge.core.payload import PayloadError, parse_json
from bridge.core.reply import answer
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.topics import Topics

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by a verb handler: becomes a `status: error` answer with this message."""


Handler = Callable[[dict[str, Any]], dict[str, Any] | None]


class BridgeApi:
    def __init__(self, mqtt: MqttClient, topics: Topics) -> None:
        self._mqtt, self._topics = mqtt, topics
        self._verbs: dict[str, Handler] = {}
        self.requests = 0
        self.errors = 0

    def start(self) -> None:
        self._mqtt.subscribe(self._topics.bridge_request_filter, self._on_message,
                             accept_retained=False)

    def register(self, verb: str, handler: Handler) -> None:
        self._verbs[verb] = handler

    def verbs(self) -> list[str]:
        return sorted(self._verbs)

    def handle(self, verb: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run a verb and build the response body (also used in-process and by tests)."""
        response: dict[str, Any] = {"status": "ok", "data": {}}
        if "transaction" in request:
            response["transaction"] = request["transaction"]
        handler = self._verbs.get(verb)
        try:
            if handler is None:
                raise ApiError(f"unknown request '{verb}' (known: {', '.join(self.verbs())})")
            response["data"] = handler(request) or {}
        except ApiError as exc:
            response.update(status="error", error=str(exc))
        except Exception as exc:
            log.exception("bridge request %s failed", verb)
            response.update(status="error", error=f"{type(exc).__name__}: {exc}")
        if response["status"] == "error":
            self.errors += 1
        return response

    def _on_message(self, msg: Message) -> None:
        self.requests += 1
        verb = self._topics.suffix(msg.topic, self._topics.bridge_request_filter)
        try:
            request = parse_json(msg.payload, expect_object=False)
        except PayloadError as exc:
            self.errors += 1
            response = {"status": "error", "data": {}, "error": str(exc)}
        else:
            if not isinstance(request, dict):
                request = {"value": request}  # z2m accepts a bare value, e.g. "my_node"
            response = self.handle(verb, request)
        answer(self._mqtt, msg, self._topics.bridge_response(verb), response)

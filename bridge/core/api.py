"""The bridge request API, Zigbee2MQTT style.

`<base>/bridge/request/<verb>` with a JSON body (optional `"transaction"`)
is answered on `<base>/bridge/response/<verb>` with
`{"status":"ok"|"error","data":{...},"error":"...","transaction":...}`, and
also on the MQTT 5 response topic when the request carried one. Features add
verbs (`node/rename`, ...) through `register`; a verb's handler runs on the
inbox of the feature that registered it.

With a share group, the request topic is subscribed as `$share/<group>/...`
(each request is answered by one instance), and every instance also answers
on its own `<base>/bridge/<instance>/request/<verb>`. Verbs about one
instance (`restart`, `info`) are only taken from that per-instance topic.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Literal

from bridge.core.inbox import Inbox
from bridge.core.payload import PayloadError, parse_json
from bridge.core.reply import answer
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.topics import Topics

log = logging.getLogger(__name__)

Scope = Literal["shared", "instance"]
LATER_TIMEOUT = 60.0  # seconds an in-process caller waits for a verb that answers later


class ApiError(Exception):
    """Raised by a verb handler: becomes a `status: error` answer with this message."""


# A verb answers now (a dict, or None for {}), or later: a Future of the dict, answered when done.
Handler = Callable[[dict[str, Any]], "dict[str, Any] | None | Future[dict[str, Any]]"]


@dataclass(frozen=True, eq=False)
class Verb:
    name: str
    handler: Handler
    scope: Scope
    inbox: Inbox | None


class BridgeApi:
    def __init__(self, mqtt: MqttClient, topics: Topics) -> None:
        self._mqtt, self._topics = mqtt, topics
        self._verbs: dict[str, Verb] = {}
        self.requests = 0
        self.errors = 0

    def start(self) -> None:
        t = self._topics
        self._mqtt.subscribe(t.shared(t.bridge_request_filter), self._on_message, accept_retained=False)
        if t.instance_request_filter:
            self._mqtt.subscribe(t.instance_request_filter, self._on_message, accept_retained=False)

    def register(self, verb: str, handler: Handler, *, scope: Scope = "shared",
                 inbox: Inbox | None = None) -> Verb:
        entry = Verb(verb, handler, scope, inbox)
        self._verbs[verb] = entry
        return entry

    def unregister(self, verb: str, entry: Verb | None = None) -> None:
        current = self._verbs.get(verb)
        if current is not None and (entry is None or current is entry):
            del self._verbs[verb]

    def verbs(self) -> list[str]:
        return sorted(self._verbs)

    def handle(self, verb: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run a verb and build the response body (in process and in tests: waits for a verb
        that answers later, up to LATER_TIMEOUT). The handler runs on its feature's inbox, as
        one that comes over MQTT does."""
        entry = self._verbs.get(verb)
        inbox = entry.inbox if entry is not None else None
        if inbox is not None and not inbox.on_worker:
            hop: Future[tuple[dict[str, Any], Future[Any] | None]] = Future()
            if not inbox.put(lambda: hop.set_result(self._begin(verb, request))):
                return self._counted({"status": "error", "data": {}, "error": f"{verb}: the bridge is too busy"})
            try:
                response, later = hop.result(LATER_TIMEOUT)
            except TimeoutError:
                return self._counted({"status": "error", "data": {},
                                      "error": f"{verb} did not finish within {LATER_TIMEOUT:g} s"})
        else:
            response, later = self._begin(verb, request)
        if later is not None:
            try:
                later.result(LATER_TIMEOUT)
            except Exception:
                pass  # _finish reads the outcome
            return self._finish(verb, response, later)
        return self._counted(response)

    def _begin(self, verb: str, request: dict[str, Any]) -> tuple[dict[str, Any], Future[Any] | None]:
        """Start a verb: the response so far, and the future of a verb that answers later (one
        that has work to do off its inbox, such as compiling a plugin)."""
        response: dict[str, Any] = {"status": "ok", "data": {}}
        if "transaction" in request:
            response["transaction"] = request["transaction"]
        entry = self._verbs.get(verb)
        try:
            if entry is None:
                raise ApiError(f"unknown request '{verb[:100]}' (known: {', '.join(self.verbs())})")
            result = entry.handler(request)
            if isinstance(result, Future):
                return response, result
            response["data"] = result or {}
        except ApiError as exc:
            response.update(status="error", error=str(exc))
        except Exception as exc:
            log.exception("bridge request %s failed", verb)
            response.update(status="error", error=f"{type(exc).__name__}: {exc}")
        return response, None

    def _finish(self, verb: str, response: dict[str, Any], later: Future[Any]) -> dict[str, Any]:
        if not later.done():
            response.update(status="error", error=f"{verb} did not finish within {LATER_TIMEOUT:g} s")
        elif isinstance(later.exception(), ApiError):
            response.update(status="error", error=str(later.exception()))
        elif later.exception() is not None:
            exc = later.exception()
            log.error("bridge request %s failed: %s: %s", verb, type(exc).__name__, exc)
            response.update(status="error", error=f"{type(exc).__name__}: {exc}")
        else:
            response["data"] = later.result() or {}
        return self._counted(response)

    def _counted(self, response: dict[str, Any]) -> dict[str, Any]:
        if response["status"] == "error":
            self.errors += 1
        return response

    def _on_message(self, msg: Message) -> None:
        self.requests += 1
        verb, own = self._topics.request_verb(msg.topic)
        reply_to = self._topics.bridge_response(verb, instance=own)
        try:
            request = parse_json(msg.payload, expect_object=False)
        except PayloadError as exc:
            self.errors += 1
            answer(self._mqtt, msg, reply_to, {"status": "error", "data": {}, "error": str(exc)})
            return
        if not isinstance(request, dict):
            request = {"value": request}  # z2m accepts a bare value, e.g. "my_node"
        entry = self._verbs.get(verb)
        if entry is not None and entry.scope == "instance" and self._topics.share_group and not own:
            self.errors += 1
            body = {"status": "error", "data": {},
                    "error": f"{verb} is about one bridge instance: publish to "
                             f"{self._topics.base}/bridge/<instance>/request/{verb} (this is "
                             f"{self._topics.instance_request(verb)})"}
            if "transaction" in request:
                body["transaction"] = request["transaction"]
            answer(self._mqtt, msg, reply_to, body)
            return
        inbox = entry.inbox if entry is not None else None
        if inbox is not None and not inbox.on_worker:
            inbox.put(self._run, msg, verb, request, reply_to)
        else:
            self._run(msg, verb, request, reply_to)

    def _run(self, msg: Message, verb: str, request: dict[str, Any], reply_to: str) -> None:
        response, later = self._begin(verb, request)
        if later is None:
            answer(self._mqtt, msg, reply_to, self._counted(response))
        else:  # answered when done, from whichever thread finishes it (publishing is thread-safe)
            later.add_done_callback(lambda done: answer(self._mqtt, msg, reply_to,
                                                        self._finish(verb, response, done)))

"""Topic router: incoming messages to handlers by MQTT filter, run off the network thread.

paho calls `on_message` in its network thread; anything slow there stalls
keep-alives and every other subscription. So the router only matches and
enqueues; one worker thread runs the handlers in arrival order. The queue is
bounded: when it is full the message is dropped and counted, never blocking.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    """An incoming MQTT message as handlers see it (protocol-neutral)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    response_topic: str | None = None  # MQTT 5 property
    correlation_data: bytes | None = None  # MQTT 5 property


Handler = Callable[[Message], None]


def filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 §4.7 matching, including the rule that wildcards skip $-topics."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts):
            return False
        if part != "+" and part != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)


def valid_filter(topic_filter: str) -> bool:
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return bool(topic_filter)


@dataclass(frozen=True, slots=True)
class Route:
    topic_filter: str
    handler: Handler
    accept_retained: bool
    no_local: bool


class Router:
    """Holds routes and hands matched messages to a single worker thread."""

    def __init__(self, max_queue: int = 10000) -> None:
        self._routes: list[Route] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._worker: threading.Thread | None = None
        self.dropped = 0
        self.handled = 0
        self.handler_errors = 0

    def add(self, topic_filter: str, handler: Handler, *, accept_retained: bool = True,
            no_local: bool = False) -> Route:
        if not valid_filter(topic_filter):
            raise ValueError(f"invalid MQTT topic filter: {topic_filter!r}")
        route = Route(topic_filter, handler, accept_retained, no_local)
        with self._lock:
            self._routes.append(route)
        return route

    def remove(self, route: Route) -> None:
        with self._lock:
            if route in self._routes:
                self._routes.remove(route)

    def filters(self) -> dict[str, bool]:
        """Distinct filters to subscribe, each with whether No Local may be asked for."""
        out: dict[str, bool] = {}
        with self._lock:
            for r in self._routes:
                out[r.topic_filter] = out.get(r.topic_filter, True) and r.no_local
        return out

    def submit(self, message: Message) -> None:
        """Called from the network thread: match, enqueue, return at once."""
        with self._lock:
            handlers = [r.handler for r in self._routes
                        if (r.accept_retained or not message.retain)
                        and filter_matches(r.topic_filter, message.topic)]
        for handler in handlers:
            try:
                self._queue.put_nowait((handler, message))
            except queue.Full:
                self.dropped += 1

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run fn on the worker thread, after what is already queued."""
        try:
            self._queue.put_nowait((lambda _m: fn(), None))
        except queue.Full:
            self.dropped += 1

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="mqtt-handlers", daemon=True)
            self._worker.start()

    def stop(self, timeout: float = 2.0) -> None:
        if self._worker is not None:
            self._queue.put((None, None))
            self._worker.join(timeout)
            self._worker = None

    def _run(self) -> None:
        while True:
            handler, message = self._queue.get()
            if handler is None:
                return
            try:
                handler(message)
                self.handled += 1
            except Exception:  # a handler bug must not stop every other handler
                self.handler_errors += 1
                log.exception("handler for %s failed", getattr(message, "topic", "(task)"))

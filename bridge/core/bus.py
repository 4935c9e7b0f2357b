"""In-process event bus: how features hear about each other without imports.

Like Zigbee2MQTT's eventBus: a feature emits `state_changed`, `event`, ...;
others subscribe by name or with "*". A listener is always called on its own
inbox (its extension's worker), never on the emitter's thread: emitting is a
non-blocking put, so the node pipeline, paho's thread or a handler can emit
while holding a lock, and a slow listener delays only itself.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any, Callable

from bridge.core.inbox import Inbox

log = logging.getLogger(__name__)

Listener = Callable[[str, Any], None]


class EventBus:
    def __init__(self, default_inbox: Inbox) -> None:
        self._default = default_inbox
        self._listeners: dict[str, list[tuple[Listener, Inbox]]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, name: str, listener: Listener, inbox: Inbox | None = None) -> Callable[[], None]:
        """Listen to `name` ("*" for everything) on `inbox`; returns a function that unsubscribes."""
        entry = (listener, inbox or self._default)
        with self._lock:
            self._listeners[name].append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._listeners[name]:
                    self._listeners[name].remove(entry)

        return unsubscribe

    def emit(self, name: str, payload: Any = None) -> None:
        with self._lock:
            entries = self._listeners.get(name, []) + self._listeners.get("*", [])
        for listener, inbox in entries:
            inbox.put(listener, name, payload)

    def listener_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._listeners.values())

"""In-process event bus: how features hear about each other without imports.

Like Zigbee2MQTT's eventBus: a feature emits `state_changed`, `event`,
`node_joined` ...; others subscribe by name or with "*". Listeners run in the
emitter's thread (the handler thread for anything that came over MQTT), so
they must be quick; a failing listener is logged and the others still run.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any, Callable

log = logging.getLogger(__name__)

Listener = Callable[[str, Any], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, name: str, listener: Listener) -> Callable[[], None]:
        """Listen to `name` ("*" for everything); returns a function that unsubscribes."""
        with self._lock:
            self._listeners[name].append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners[name]:
                    self._listeners[name].remove(listener)

        return unsubscribe

    def emit(self, name: str, payload: Any = None) -> None:
        with self._lock:
            listeners = self._listeners.get(name, []) + self._listeners.get("*", [])
        for listener in listeners:
            try:
                listener(name, payload)
            except Exception:
                log.exception("listener for %s failed", name)

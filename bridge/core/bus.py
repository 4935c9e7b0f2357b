"""In-process event bus: how features hear about each other without imports.

Like Zigbee2MQTT's eventBus: a feature emits a `StateChanged`, an `EventFired`, ...
(the catalogue is bridge/core/eventdata.py); others listen by the event's class. A
listener is always called on its own inbox (its extension's worker), never on the
emitter's thread: emitting is a non-blocking put, so the node pipeline, paho's thread
or a handler can emit while holding a lock, and a slow listener delays only itself.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any, Callable, TypeVar

from bridge.core.eventdata import BusEvent
from bridge.core.inbox import Inbox

log = logging.getLogger(__name__)

E = TypeVar("E", bound=BusEvent)
Listener = Callable[[Any], None]


class EventBus:
    def __init__(self, default_inbox: Inbox) -> None:
        self._default = default_inbox
        self._listeners: dict[type, list[tuple[Listener, Inbox]]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, kind: type[E], listener: Callable[[E], None],
                  inbox: Inbox | None = None) -> Callable[[], None]:
        """Hear every `kind` event on `inbox`; returns a function that unsubscribes."""
        entry: tuple[Listener, Inbox] = (listener, inbox or self._default)
        with self._lock:
            self._listeners[kind].append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._listeners[kind]:
                    self._listeners[kind].remove(entry)

        return unsubscribe

    def emit(self, event: BusEvent) -> None:
        with self._lock:
            entries = list(self._listeners.get(type(event), ()))
        for listener, inbox in entries:
            inbox.put(listener, event)

    def listener_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._listeners.values())

"""In-process event bus: how features hear about each other without imports.

Like Zigbee2MQTT's eventBus: a feature emits a `StateChanged`, an `EventFired`, ...
(the catalogue is bridge/core/eventdata.py); others listen by the event's class. A
listener is always called on its own inbox (its extension's worker), never on the
emitter's thread: emitting is a non-blocking put, so the node pipeline, paho's thread
or a handler can emit while holding a lock, and a slow listener delays only itself.
(An inbox whose owner asked for back-pressure — a plugin's — may hold the put a moment
for room, bounded; see Inbox.put.) A listener may name `accept`, a cheap test run on the
emitter's thread, so that what it would ignore never costs its queue a place.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, TypeVar

from bridge.core.eventdata import BusEvent
from bridge.core.inbox import Inbox

log = logging.getLogger(__name__)

E = TypeVar("E", bound=BusEvent)
Listener = Callable[[Any], None]
Accept = Callable[[Any], bool]


class Subscription:
    """One listener's place on the bus. Call it to leave (again: nothing happens); `dropped` counts
    the events its inbox refused (full), so that an owner can say what its listener missed."""

    def __init__(self, bus: "EventBus", kind: type, listener: Listener, inbox: Inbox,
                 accept: Accept | None) -> None:
        self.kind, self.listener, self.inbox, self.accept = kind, listener, inbox, accept
        self.dropped = 0
        self._bus = bus
        self._then: list[Callable[[], None]] = []

    def then(self, fn: Callable[[], None]) -> None:
        """Run fn once this subscription has ended (the extension ledger forgets it)."""
        self._then.append(fn)

    def __call__(self) -> None:
        if self._bus._remove(self):
            for fn in self._then:
                fn()


class EventBus:
    def __init__(self, default_inbox: Inbox) -> None:
        self._default = default_inbox
        # kind -> its listeners, a tuple replaced (never changed) under the lock, so emitting reads it
        # without taking the lock: a state write emits on every change (bench/wasm_plugins.py, states)
        self._listeners: dict[type, tuple[Subscription, ...]] = {}
        self._lock = threading.Lock()

    @property
    def default_inbox(self) -> Inbox:
        """The core's own inbox (`mqtt-handlers`): listeners without one of their own, core timers."""
        return self._default

    def subscribe(self, kind: type[E], listener: Callable[[E], None], inbox: Inbox | None = None,
                  accept: Callable[[E], bool] | None = None) -> Subscription:
        """Hear every `kind` event (that `accept` passes, on the emitter's thread) on `inbox`;
        returns the subscription: call it to unsubscribe."""
        sub = Subscription(self, kind, listener, inbox or self._default, accept)
        with self._lock:
            self._listeners[kind] = (*self._listeners.get(kind, ()), sub)
        return sub

    def _remove(self, sub: Subscription) -> bool:
        with self._lock:
            subs = self._listeners.get(sub.kind, ())
            if sub not in subs:
                return False
            self._listeners[sub.kind] = tuple(s for s in subs if s is not sub)
            return True

    def emit(self, event: BusEvent) -> None:
        for sub in self._listeners.get(type(event), ()):
            if (sub.accept is None or sub.accept(event)) and not sub.inbox.put(sub.listener, event):
                sub.dropped += 1

    def listener_count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._listeners.values())

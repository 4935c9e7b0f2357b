"""Bounded outbox for QoS >= 1 messages published while the broker is away.

paho keeps QoS 1 messages only while it has a session and drops nothing
itself, which means unbounded memory during a long outage. The outbox holds
messages in publish order up to a limit. On overflow it first drops the
oldest *non-retained* message (counted as `dropped`); if only retained
messages are left it drops the oldest of those (`superseded`), which is safe
because the client re-publishes every retained topic's latest value from its
cache on reconnect.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable


@dataclass(slots=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    expiry: int | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    row: int | None = None  # its row in the state store (keeper.py): None not kept, 0 being saved, -1 taken


class Outbox:
    def __init__(self, limit: int, on_drop: Callable[[Outgoing], None] = lambda _m: None) -> None:
        self.limit = limit
        self.on_drop = on_drop  # a message evicted or removed: its copy on disk goes too (keeper.py)
        self._items: deque[Outgoing] = deque()
        self.dropped = 0
        self.superseded = 0

    def __len__(self) -> int:
        return len(self._items)

    def append(self, msg: Outgoing) -> None:
        self._items.append(msg)
        if len(self._items) > self.limit:
            self._evict_one()

    def _evict_one(self) -> None:
        for i, item in enumerate(self._items):
            if not item.retain:
                del self._items[i]
                self.dropped += 1
                self.on_drop(item)
                return
        self.on_drop(self._items.popleft())
        self.superseded += 1

    def remove(self, msg: Outgoing) -> None:
        """Forget one message (the broker will not take it)."""
        self._items = type(self._items)(m for m in self._items if m is not msg)
        self.on_drop(msg)

    def pending_topics(self) -> set[str]:
        return {m.topic for m in self._items}

    def drain(self) -> list[Outgoing]:
        items = list(self._items)
        self._items.clear()
        return items

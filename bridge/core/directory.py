"""The node directory: what every feature may know of the current nodes, already gated.

The nodes extension writes it (identity, availability, and each published
state, which the privacy gate has already redacted); Home Assistant, and
later plugins, HTTP, HomeKit and assist, read it. A feature that watches gets
a snapshot of the nodes that exist and then every change, in that order, on
its own inbox — so a feature that starts late misses nothing, and a slow one
delays only itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from bridge.core.inbox import Inbox
from bridge.privacy import PrivacyClass


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    name: str
    room: str | None
    privacy_class: PrivacyClass
    mode: int | None = None
    online: bool = False
    known_only: bool = False  # configured or remembered, not heard from since this start
    offline_after: float = 30.0  # seconds of silence before the node reads offline (nodes.offline_after)
    expected_hours: tuple[str, ...] = ()  # when occupancy is expected ("07:00-23:30", ...), if said
    state: Mapping[str, Any] | None = field(default=None, compare=False)  # last published, gated

    def identity(self) -> tuple:
        """What discovery-like features care about (not availability, not the state)."""
        return (self.name, self.room, self.privacy_class, self.mode)


@dataclass(frozen=True)
class NodeChange:
    node: NodeInfo
    previous: NodeInfo | None = None  # None: new to this watcher (snapshot or first seen)
    removed: bool = False

    @property
    def renamed_from(self) -> str | None:
        if self.previous is not None and self.previous.name != self.node.name:
            return self.previous.name
        return None

    @property
    def identity_changed(self) -> bool:
        return self.previous is None or self.removed or self.previous.identity() != self.node.identity()


@dataclass(frozen=True)
class NodeEvent:
    """Something a node raised (`unknown_presence`, `fall_detected` ...), already gated."""

    node: NodeInfo
    event: Mapping[str, Any]  # exactly what `<base>/node/<name>/event` carries


Watcher = Callable[[NodeChange], None]
EventWatcher = Callable[[NodeEvent], None]


class NodeDirectory:
    def __init__(self) -> None:
        self._nodes: dict[int, NodeInfo] = {}
        self._watchers: list[tuple[Watcher, Inbox, bool]] = []  # (watcher, inbox, wants states)
        self._event_watchers: list[tuple[EventWatcher, Inbox]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ reading

    def get(self, node_id: int) -> NodeInfo | None:
        return self._nodes.get(node_id)

    def by_name(self, name: str) -> NodeInfo | None:
        with self._lock:
            return next((n for n in self._nodes.values() if n.name == name), None)

    def all(self) -> list[NodeInfo]:
        with self._lock:  # read from any thread (HTTP, HomeKit) while the pipeline writes
            nodes = list(self._nodes.values())
        return sorted(nodes, key=lambda n: n.node_id)

    def __len__(self) -> int:
        return len(self._nodes)

    def watch(self, watcher: Watcher, inbox: Inbox, *, states: bool = True) -> Callable[[], None]:
        """Deliver every current node, then every change, to watcher on inbox; returns unwatch.

        With states=False a change of the published state alone is not delivered: every node
        publishes about once a second, and a feature that only follows identity and availability
        (discovery) would otherwise be woken for each of them.
        """
        entry = (watcher, inbox, states)
        with self._lock:  # snapshot and registration under one lock: no change falls between
            for node in sorted(self._nodes.values(), key=lambda n: n.node_id):
                inbox.put(watcher, NodeChange(node))
            self._watchers.append(entry)

        def unwatch() -> None:
            with self._lock:
                if entry in self._watchers:
                    self._watchers.remove(entry)

        return unwatch

    def watch_events(self, watcher: EventWatcher, inbox: Inbox) -> Callable[[], None]:
        """Every node event from now on, on inbox; returns unwatch."""
        entry = (watcher, inbox)
        with self._lock:
            self._event_watchers.append(entry)

        def unwatch() -> None:
            with self._lock:
                if entry in self._event_watchers:
                    self._event_watchers.remove(entry)

        return unwatch

    def watcher_count(self) -> int:
        return len(self._watchers) + len(self._event_watchers)

    # ------------------------------------------------------------ writing (the nodes extension)

    def put(self, node: NodeInfo) -> None:
        with self._lock:
            previous = self._nodes.get(node.node_id)
            if previous == node and previous.state is node.state:
                return
            self._nodes[node.node_id] = node
            self._tell(NodeChange(node, previous))

    def update(self, node_id: int, **changes: Any) -> None:
        with self._lock:
            previous = self._nodes.get(node_id)
            if previous is None:
                return
            node = replace(previous, **changes)
            same = node == previous  # equality leaves the state out
            if not same or node.state is not previous.state:
                self._nodes[node_id] = node
                self._tell(NodeChange(node, previous), states_only=same)

    def remove(self, node_id: int) -> None:
        with self._lock:
            previous = self._nodes.pop(node_id, None)
            if previous is not None:
                self._tell(NodeChange(previous, previous, removed=True))

    def event(self, node_id: int, event: Mapping[str, Any]) -> None:
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                return
            for watcher, inbox in self._event_watchers:
                inbox.put(watcher, NodeEvent(node, event))

    def _tell(self, change: NodeChange, *, states_only: bool = False) -> None:
        for watcher, inbox, states in self._watchers:
            if states or not states_only:
                inbox.put(watcher, change)

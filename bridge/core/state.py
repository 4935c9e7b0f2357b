"""Home state on MQTT: the retained `<base>/state/<entity_id>` topics and their cache.

The broker's retained messages are the store; this class mirrors them (so a
restarted bridge resumes where it was) and is the one writer API for the
bridge's own entities. Semantics follow Home Assistant's state machine:
`last_changed` moves only when the state string changes, `last_updated` on
every write, each write carries a new context, and a write that changes
nothing publishes nothing.

Every change reaches the bus (`StateChanged`: plugins, assist) at once. On MQTT a retained
topic is the entity's current state, and the link carries a few thousand QoS 1 messages a
second where the bridge can write tens of thousands of states (a plugin in a loop, a burst of
node changes). So while the link is BEHIND (that many messages handed to it and not yet
acknowledged), writes are conflated: each entity's newest state waits in `_unsent` (one per
entity, in the order of their last writes) and goes out when the link has caught up, looked at
every FLUSH seconds. A link that keeps up sees every write, as before; one that does not costs
the bridge one message per entity per look instead of one per write, and memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bridge.core.bus import EventBus
from bridge.core.eventdata import StateChanged
from bridge.core.context import context as new_context
from bridge.core.context import utc_now_iso
from bridge.core.payload import PayloadError, dumps, parse_json
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Message
from bridge.names import valid_entity_id
from bridge.topics import Topics

log = logging.getLogger(__name__)

_OWN_CONTEXTS = 4096  # recent context ids we published, to recognise our own echoes
BEHIND = 128  # messages the MQTT link holds unacknowledged before state writes are conflated
FLUSH = 0.2  # seconds between looks at a link that is behind, while writes wait in `_unsent`


class InvalidEntityId(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class State:
    entity_id: str
    state: str
    attributes: dict[str, Any] = field(default_factory=dict)
    last_changed: str = ""
    last_updated: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    _json: bytes | None = field(default=None, init=False, compare=False, repr=False)  # .json, once made

    @property
    def domain(self) -> str:
        return self.entity_id.split(".", 1)[0]

    def as_dict(self) -> dict[str, Any]:
        return {"entity_id": self.entity_id, "state": self.state, "attributes": self.attributes,
                "last_changed": self.last_changed, "last_updated": self.last_updated,
                "context": self.context}

    @property
    def json(self) -> bytes:
        """as_dict() as JSON (what `<base>/state/<entity_id>` carries), encoded once: a state is
        published, then sent to plugins as the new state of one change and the old of the next.
        (Two threads may encode it at once, and get the same bytes.)"""
        data = self._json
        if data is None:
            data = dumps(self.as_dict())
            object.__setattr__(self, "_json", data)
        return data


def _unchanged(old: State | None, state: str, attributes: dict[str, Any]) -> bool:
    return old is not None and old.state == state and old.attributes == attributes


class StateMachine:
    """Cache + writer for `<base>/state/#`; emits `StateChanged` on the bus."""

    def __init__(self, mqtt: MqttClient, topics: Topics, bus: EventBus) -> None:
        self._mqtt = mqtt
        self._topics = topics
        self._bus = bus
        self._states: dict[str, State] = {}
        self._own: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._unsent: dict[str, State | None] = {}  # entity id -> its newest state not yet published (None: removed)
        self._flush_due = False  # a look at the link is scheduled on the core's inbox
        self.rejected = 0
        self.superseded = 0  # writes never published: a newer one of the same entity went in their place

    def start(self) -> None:
        self._mqtt.subscribe(self._topics.state_filter, self._on_message, no_local=True)

    # -------------------------------------------------------------- reading

    def get(self, entity_id: str) -> State | None:
        return self._states.get(entity_id)

    def all(self, domain: str | None = None) -> list[State]:
        states = list(self._states.values())
        return [s for s in states if domain is None or s.domain == domain]

    def __len__(self) -> int:
        return len(self._states)

    # -------------------------------------------------------------- writing

    def set(self, entity_id: str, state: Any, attributes: dict[str, Any] | None = None, *,
            parent_id: str | None = None, force: bool = False) -> State | None:
        """Write a state; returns the new State, or None when nothing changed."""
        state = str(state)
        # Only valid ids are ever stored, so an unchanged write is answered before the id is
        # checked and the attributes copied: every node re-asserts its three entities each beat.
        old = self._states.get(entity_id) if isinstance(entity_id, str) else None
        if not force and _unchanged(old, state, attributes or {}):
            return None
        if old is None and not valid_entity_id(entity_id):
            raise InvalidEntityId(f"invalid entity id {entity_id!r}: use domain.object_id "
                                  "with [a-z0-9_], at most 255 characters")
        attributes = dict(attributes or {})
        with self._lock:
            old = self._states.get(entity_id)
            if not force and _unchanged(old, state, attributes):  # again: another thread may have written
                return None
            now = utc_now_iso()
            ctx = new_context(parent_id)
            since = now if old is None or old.state != state else old.last_changed
            new = State(entity_id, state, attributes, since, now, ctx)
            self._states[entity_id] = new
            self._out(entity_id, new)
        self._bus.emit(StateChanged(entity_id, old, new, "LOCAL"))
        return new

    def remove(self, entity_id: str) -> bool:
        with self._lock:
            old = self._states.pop(entity_id, None)
            if old is None:
                return False
            self._out(entity_id, None)
        self._bus.emit(StateChanged(entity_id, old, None, "LOCAL"))
        return True

    def flush(self) -> None:
        """Publish every conflated state now, behind or not (the bridge calls it before it stops)."""
        with self._lock:
            self._send_unsent()

    def _out(self, entity_id: str, state: State | None) -> None:
        """Publish a write now, or conflate it while the link is behind (the lock is held)."""
        unsent = self._unsent
        if unsent or getattr(self._mqtt, "backlog", 0) >= BEHIND:
            if unsent.pop(entity_id, False) is not False:
                self.superseded += 1
            unsent[entity_id] = state  # last: the order out is the order of the last writes
            if not self._flush_due:
                self._flush_due = True
                self._bus.default_inbox.call_later(FLUSH, self._look)
            return
        self._send(entity_id, state)

    def _look(self) -> None:
        """On the core's inbox: the conflated states go out once the link has caught up."""
        with self._lock:
            if self._unsent and getattr(self._mqtt, "backlog", 0) >= BEHIND:
                self._bus.default_inbox.call_later(FLUSH, self._look)
                return
            self._send_unsent()

    def _send_unsent(self) -> None:
        unsent, self._unsent, self._flush_due = self._unsent, {}, False
        if unsent:
            with self._mqtt.burst():
                for entity_id, state in unsent.items():
                    self._send(entity_id, state)

    def _send(self, entity_id: str, state: State | None) -> None:
        if state is None:
            self._mqtt.publish(self._topics.state(entity_id), b"", qos=1, retain=True)
            return
        self._remember(state.context["id"])
        self._mqtt.publish(self._topics.state(entity_id), state.json, qos=1, retain=True)

    def _remember(self, context_id: str) -> None:
        self._own[context_id] = None
        if len(self._own) > _OWN_CONTEXTS:
            self._own.popitem(last=False)

    # -------------------------------------------------------------- mirroring

    def _on_message(self, msg: Message) -> None:
        entity_id = self._topics.suffix(msg.topic, self._topics.state_filter)
        if not valid_entity_id(entity_id):
            self.rejected += 1
            log.warning("ignored %s: %r is not a valid entity id", msg.topic, entity_id)
            return
        if not msg.payload:
            with self._lock:
                old = self._states.pop(entity_id, None)
            if old is not None:
                self._bus.emit(StateChanged(entity_id, old, None, "REMOTE"))
            return
        try:
            new = self._parse(entity_id, msg.payload)
        except PayloadError as exc:
            self.rejected += 1
            log.warning("ignored %s: %s", msg.topic, exc)
            return
        with self._lock:
            if new.context.get("id") in self._own:
                return  # our own write coming back
            old = self._states.get(entity_id)
            if old == new:
                return
            self._states[entity_id] = new
            self._unsent.pop(entity_id, None)  # another's newer write: ours waiting to go out is stale
        self._bus.emit(StateChanged(entity_id, old, new, "REMOTE"))

    @staticmethod
    def _parse(entity_id: str, payload: bytes) -> State:
        data = parse_json(payload)
        if "state" not in data:
            raise PayloadError('a state payload needs a "state" field')
        attributes = data.get("attributes") or {}
        ctx = data.get("context") or {}
        if not isinstance(attributes, dict) or not isinstance(ctx, dict):
            raise PayloadError('"attributes" and "context" must be JSON objects')
        now = utc_now_iso()
        return State(entity_id, str(data["state"]), attributes,
                     str(data.get("last_changed") or now), str(data.get("last_updated") or now), ctx)

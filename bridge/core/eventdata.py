"""The bus's event catalogue: every event one feature can hear from another, as a typed value.

Like Zigbee2MQTT's `eventdata`: a listener names the class it wants (`ctx.listen(StateChanged,
...)`) and gets an instance of it, so a checker knows every field it reads, and a new event is a
new class here, not a string and a dict shape remembered in two places.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

import orjson

if TYPE_CHECKING:
    from bridge.core.state import State

Origin = Literal["LOCAL", "REMOTE"]  # made by this bridge, or heard from another over MQTT


@dataclass(frozen=True)
class StateChanged:
    """An entity's state was set, changed or removed (`new_state` None)."""

    entity_id: str
    old_state: "State | None"
    new_state: "State | None"
    origin: Origin

    @property
    def json(self) -> bytes:
        """The change as a plugin's receive_event gets it, encoded once however many plugins hear it
        (each on its own worker: two may encode it at once, and get the same bytes). Kept in the
        instance's dict by hand: functools.cached_property takes a lock per read on Python 3.11."""
        data: bytes | None = self.__dict__.get("_json")
        if data is None:  # each State's JSON is made once (State.json): this only joins them
            old, new = self.old_state, self.new_state
            data = b"".join((b'{"entity_id":', orjson.dumps(self.entity_id), b',"old_state":',
                             old.json if old else b"null", b',"new_state":', new.json if new else b"null", b"}"))
            self.__dict__["_json"] = data
        return data


@dataclass(frozen=True)
class EventFired:
    """An event on `<base>/event/<type>`, fired here or heard from another bridge."""

    event_type: str
    data: Mapping[str, Any]
    origin: Origin
    time_fired: str
    context: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """What `<base>/event/<type>` carries (and a plugin's receive_event)."""
        return {"event_type": self.event_type, "data": dict(self.data), "origin": self.origin,
                "time_fired": self.time_fired, "context": dict(self.context)}


@dataclass(frozen=True)
class PluginEntities:
    """The entities a plugin announces now (none: it stopped), for Home Assistant discovery."""

    plugin: str
    title: str
    entities: tuple[Mapping[str, Any], ...] = ()


BusEvent = StateChanged | EventFired | PluginEntities

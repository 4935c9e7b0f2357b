"""What an utterance may name: the home's entities, areas and floors, and where they occur in text.

Built from home state (discovered MQTT devices with their friendly names and areas, HA
entities from statestream, the bridge's own) and the node rooms. A `Home` is immutable: when
the home changes a new one is built beside it and swapped in, so answering never pauses and
never sees half a home. Slots only ever resolve to what is in here — a topic is never built
from utterance text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from bridge.assist.text import key, words
from bridge.core.state import State

# domains an utterance can name (what discovery-in and statestream bring)
NAMEABLE = frozenset({"light", "switch", "fan", "cover", "lock", "climate", "binary_sensor", "sensor",
                      "media_player", "person", "valve", "scene", "script", "input_boolean", "vacuum"})

__all__ = ["Entity", "Home", "Span", "build_home", "key", "words", "NAMEABLE"]


@dataclass(frozen=True)
class Entity:
    entity_id: str
    name: str
    domain: str
    area: str | None = None
    floor: str | None = None
    device_class: str | None = None

    def as_target(self) -> dict[str, str]:
        return {"type": "entity", "name": self.name, "id": self.entity_id}


@dataclass(frozen=True)
class Span:
    """A run of words naming something in the home: kind is name, area or floor."""

    start: int  # word index
    end: int
    kind: str
    value: str  # the canonical name (as the home spells it)
    domains: tuple[str, ...] = ()


@dataclass
class Home:
    entities: tuple[Entity, ...] = ()
    areas: tuple[str, ...] = ()
    floors: tuple[str, ...] = ()
    rooms: tuple[str, ...] = ()  # node rooms (their occupancy is read when asked, not kept here)
    _index: dict[str, list[tuple[tuple[str, ...], str, str]]] = field(default_factory=dict, repr=False)
    _by_name: dict[str, list[Entity]] = field(default_factory=dict, repr=False)
    vocabulary: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for e in self.entities:
            self._by_name.setdefault(key(e.name), []).append(e)
            self._add(e.name, "name", e.name)
        for kind, values in (("area", self.areas), ("floor", self.floors)):
            for value in values:
                self._add(value, kind, value)
        for spots in self._index.values():
            spots.sort(key=lambda s: -len(s[0]))  # longest first
        self.vocabulary = frozenset(w for spots in self._index.values() for s in spots for w in s[0])

    def _add(self, text: str, kind: str, value: str) -> None:
        ws = tuple(words(text))
        if ws and (ws, kind, value) not in self._index.get(ws[0], []):
            self._index.setdefault(ws[0], []).append((ws, kind, value))

    # ------------------------------------------------------------ lookups

    def named(self, name: str) -> list[Entity]:
        return list(self._by_name.get(key(name), ()))

    def area(self, name: str) -> str | None:
        k = key(name)
        return next((a for a in self.areas if key(a) == k), None)

    def floor(self, name: str) -> str | None:
        k = key(name)
        return next((f for f in self.floors if key(f) == k), None)

    def in_area(self, area: str | None = None, floor: str | None = None) -> list[Entity]:
        a, f = (key(area) if area else None), (key(floor) if floor else None)
        return [e for e in self.entities
                if (a is None or key(e.area or "") == a) and (f is None or key(e.floor or "") == f)]

    def spans(self, ws: list[str]) -> list[Span]:
        """Names, areas and floors in a list of words, longest match first, left to right."""
        out: list[Span] = []
        i = 0
        while i < len(ws):
            hit = None
            for spot, kind, value in self._index.get(ws[i], ()):
                if tuple(ws[i:i + len(spot)]) == spot:
                    hit = (spot, kind, value)
                    break
            if hit is None:
                i += 1
                continue
            spot, kind, value = hit
            domains = tuple(sorted({e.domain for e in self._by_name.get(" ".join(spot), ())})) if kind == "name" else ()
            out.append(Span(i, i + len(spot), kind, value, domains))
            i += len(spot)
        return out

    def fingerprint(self) -> tuple:
        """What recognition depends on (names, areas, domains, rooms), not states or occupancy."""
        return (self.entities, self.areas, self.floors, self.rooms)

    def context(self) -> dict:
        """What an agent is told of the home (names only: nothing a node measured)."""
        return {"entities": [{"entity_id": e.entity_id, "name": e.name, "domain": e.domain, "area": e.area}
                             for e in self.entities],
                "areas": list(self.areas), "rooms": list(self.rooms)}


def _name_of(state: State) -> str:
    name = state.attributes.get("friendly_name")
    if isinstance(name, str) and name.strip():
        return name.strip()[:100]
    return state.entity_id.split(".", 1)[1].replace("_", " ")


def build_home(states: Iterable[State], rooms: Iterable[str]) -> Home:
    entities = []
    for s in states:
        if s.domain not in NAMEABLE:
            continue
        area = s.attributes.get("area")
        floor = s.attributes.get("floor")
        dc = s.attributes.get("device_class")
        entities.append(Entity(s.entity_id, _name_of(s), s.domain,
                               area if isinstance(area, str) and area.strip() else None,
                               floor if isinstance(floor, str) and floor.strip() else None,
                               dc if isinstance(dc, str) else None))
    entities.sort(key=lambda e: e.entity_id)
    rooms = tuple(sorted(set(rooms)))
    areas = sorted({e.area for e in entities if e.area} | set(rooms))
    floors = sorted({e.floor for e in entities if e.floor})
    return Home(tuple(entities), tuple(areas), tuple(floors), rooms)

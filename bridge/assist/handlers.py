"""Intents acted on: targets resolved in the home, services called, answers built.

Targets come only from the `Home` (entities that exist, areas and rooms that exist); an
utterance's words never become a topic or an entity id. Actions go through the core service
registry, so a discovered light gets exactly the command its own config asks for. Room
presence is answered from the node directory through the one room rule (core/rooms.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from bridge.assist.home import Entity, Home, key
from bridge.assist.speech import Speech
from bridge.assist.templates import Recognition
from bridge.core.rooms import RoomView
from bridge.core.services import ServiceError
from bridge.core.state import State

ON_OFF = {"HassTurnOn": "turn_on", "HassTurnOff": "turn_off", "HassToggle": "toggle"}
SWITCHABLE = ("light", "switch", "fan", "input_boolean")
OCCUPANCY_CLASSES = ("occupancy", "presence", "motion")


@dataclass
class Outcome:
    response_type: str  # action_done | query_answer | error
    speech: str
    code: str | None = None  # for errors: HA's codes (no_intent_match, no_valid_targets, failed_to_handle ...)
    targets: list[dict[str, Any]] = field(default_factory=list)
    success: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    acted_on: list[Entity] = field(default_factory=list)


class Handlers:
    def __init__(self, speech: Speech, call_service: Callable[..., Any], get_state: Callable[[str], State | None],
                 fire_event: Callable[[str, dict], Any], rooms_now: Callable[[], dict[str, RoomView]]) -> None:
        self.speech = speech
        self._call, self._state, self._fire, self._rooms = call_service, get_state, fire_event, rooms_now
        self._table = {"HassTurnOn": self._switch, "HassTurnOff": self._switch, "HassToggle": self._switch,
                       "HassLightSet": self._light_set, "HassGetState": self._get_state,
                       "HassNevermind": self._nevermind, "HassCancelAll": self._cancel_all,
                       "RuViewRoomPresence": self._room_presence, "RuViewOccupiedRooms": self._occupied_rooms}

    def handles(self, intent: str) -> bool:
        return intent in self._table

    def handle(self, rec: Recognition, home: Home) -> Outcome:
        handler = self._table.get(rec.intent)
        if handler is None:  # an operator's own intent: automations act on ruview/assist/intent/<Intent>
            return Outcome("action_done", rec.speech or "")
        outcome = handler(rec, home)
        if rec.speech and outcome.response_type != "error":
            outcome.speech = rec.speech
        return outcome

    def error(self, language: str, code: str, key: str, **values: Any) -> Outcome:
        return Outcome("error", self.speech.error(language, key, **values), code)

    # ------------------------------------------------------------ targets

    def resolve(self, rec: Recognition, home: Home) -> list[Entity] | Outcome:
        s, lang = rec.slots, rec.language
        area, floor = s.get("area"), s.get("floor")
        home_area = home.area(str(area)) if area is not None else None
        home_floor = home.floor(str(floor)) if floor is not None else None
        if area is not None and home_area is None:
            return self.error(lang, "no_valid_targets", "no_area", area=area)
        domains = s.get("domain")
        domains = {domains} if isinstance(domains, str) else set(domains or ())
        device_class = s.get("device_class")
        if s.get("name") is not None:
            found = home.named(str(s["name"]))
            if not found:
                return self.error(lang, "no_valid_targets", "no_entity", entity=s["name"])
            narrowed = [e for e in found if (area is None or e.area == home_area)
                        and (floor is None or e.floor == home_floor)]
            found = narrowed or (found if area is None and floor is None else [])
        else:
            found = home.in_area(area, floor) if (area or floor) else list(home.entities)
        found = [e for e in found if (not domains or e.domain in domains)
                 and (device_class is None or e.device_class == device_class)]
        if not found:
            return self.error(lang, "no_valid_targets", "no_targets")
        return found

    # ------------------------------------------------------------ actions

    def _act(self, rec: Recognition, home: Home, service_for: Callable[[Entity], tuple[str, str, dict]]) -> Outcome:
        found = self.resolve(rec, home)
        if isinstance(found, Outcome):
            return found
        out = Outcome("action_done", "", targets=_general_targets(rec), acted_on=found)
        errors = []
        for entity in found:
            domain, service, data = service_for(entity)
            try:
                self._call(domain, service, {"entity_id": entity.entity_id, **data})
                out.success.append(entity.as_target())
            except ServiceError as exc:
                out.failed.append(entity.as_target())
                errors.append(str(exc))
        if not out.success:
            out.response_type, out.code = "error", "failed_to_handle"
            out.speech = self.speech.own(rec.language, "failed", error=errors[0] if errors else "?")
            return out
        views = [_state_view(e, self._state(e.entity_id)) for e in found]
        context = {"slots": _slot_texts(rec, found), "state": views[0],
                   "query": {"matched": views, "unmatched": []}}
        out.speech = (self.speech.intent(rec.language, rec.intent, rec.response, context)
                      or self.speech.own(rec.language, "done"))
        return out

    def _switch(self, rec: Recognition, home: Home) -> Outcome:
        service = ON_OFF[rec.intent]

        def service_for(e: Entity) -> tuple[str, str, dict]:
            return (e.domain if e.domain in SWITCHABLE else "homeassistant", service, {})
        return self._act(rec, home, service_for)

    def _light_set(self, rec: Recognition, home: Home) -> Outcome:
        data: dict[str, Any] = {}
        if "brightness" in rec.slots:
            data["brightness_pct"] = rec.slots["brightness"]
        if "color" in rec.slots:
            data["color_name"] = str(rec.slots["color"])
        if not data:
            return self.error(rec.language, "failed_to_handle", "handle_error")
        rec.slots.setdefault("domain", "light")
        return self._act(rec, home, lambda e: ("light", "turn_on", data))

    def _nevermind(self, rec: Recognition, home: Home) -> Outcome:
        return Outcome("action_done", self.speech.intent(rec.language, rec.intent, rec.response, {}) or "")

    def _cancel_all(self, rec: Recognition, home: Home) -> Outcome:
        self._fire("homeassistant_stop_all_scripts", {"source": "assist"})
        return Outcome("action_done", self.speech.own(rec.language, "cancelled"))

    # ------------------------------------------------------------ questions

    def _get_state(self, rec: Recognition, home: Home) -> Outcome:
        found = self.resolve(rec, home)
        if isinstance(found, Outcome):
            room = self._room(str(rec.slots.get("area") or ""))
            if room is not None and rec.slots.get("device_class") in OCCUPANCY_CLASSES:
                return self._room_answer(rec, room)
            return found
        states = [(e, self._state(e.entity_id)) for e in found]
        views = [_state_view(e, st) for e, st in states]
        wanted = rec.slots.get("state")
        matched = [v for v in views if wanted is None or v["state"] == str(wanted)]
        unmatched = [v for v in views if v not in matched]
        context = {"slots": _slot_texts(rec, found), "state": views[0],
                   "query": {"matched": matched, "unmatched": unmatched}}
        speech = self.speech.intent(rec.language, rec.intent, rec.response, context)
        if speech is None:
            speech = self.speech.join(rec.language, [f"{v['name']}: {v['state_with_unit']}" for v in views])
        return Outcome("query_answer", speech, targets=_general_targets(rec),
                       success=[e.as_target() for e in found], acted_on=found)

    def _room_presence(self, rec: Recognition, home: Home) -> Outcome:
        area = str(rec.slots.get("area") or "")
        room = self._room(area)
        if room is None:
            return self.error(rec.language, "no_valid_targets", "no_area", area=area)
        return self._room_answer(rec, room)

    def _room(self, name: str) -> RoomView | None:
        wanted = key(name)
        return next((r for n, r in self._rooms().items() if key(n) == wanted), None)

    def _room_answer(self, rec: Recognition, room: RoomView) -> Outcome:
        target = {"type": "area", "name": room.name, "id": room.name}
        if not room.online:
            return Outcome("query_answer", self.speech.own(rec.language, "offline", room=room.name),
                           targets=[target], failed=[target])
        key = "occupied" if room.occupied else "empty"
        return Outcome("query_answer", self.speech.own(rec.language, key, room=room.name),
                       targets=[target], success=[target])

    def _occupied_rooms(self, rec: Recognition, home: Home) -> Outcome:
        occupied = sorted(r.name for r in self._rooms().values() if r.online and r.occupied)
        speech = (self.speech.own(rec.language, "rooms_occupied", rooms=self.speech.join(rec.language, occupied))
                  if occupied else self.speech.own(rec.language, "no_rooms_occupied"))
        return Outcome("query_answer", speech,
                       success=[{"type": "area", "name": n, "id": n} for n in occupied])


def _state_view(entity: Entity, state: State | None) -> dict[str, Any]:
    value = state.state if state is not None else "unknown"
    unit = state.attributes.get("unit_of_measurement") if state is not None else None
    return {"name": entity.name, "entity_id": entity.entity_id, "domain": entity.domain, "state": value,
            "state_with_unit": f"{value} {unit}" if unit else value,
            "attributes": dict(state.attributes) if state is not None else {}}


def _slot_texts(rec: Recognition, found: list[Entity]) -> dict[str, Any]:
    slots = dict(rec.slots)
    if "name" in slots and found:
        slots["name"] = found[0].name
    return slots


def _general_targets(rec: Recognition) -> list[dict[str, Any]]:
    """HA's `targets`: from general to specific (area, domain, device class)."""
    out = []
    for slot, kind in (("floor", "floor"), ("area", "area"), ("domain", "domain"), ("device_class", "device_class")):
        value = rec.slots.get(slot)
        if isinstance(value, str):
            out.append({"type": kind, "name": value, "id": value})
    return out

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
from bridge.homeassistant.commands import COLORS  # the colours a light command can carry: one table

MAX_PARTS = 3  # "A and B and C" at most: the pipeline splits no more
ON_OFF = {"HassTurnOn": "turn_on", "HassTurnOff": "turn_off", "HassToggle": "toggle"}
ACTIONS = frozenset({*ON_OFF, "HassLightSet"})  # intents that call device services
_DONE = {"HassTurnOn": "turned_on", "HassTurnOff": "turned_off", "HassToggle": "toggled", "HassLightSet": "set"}
SWITCHABLE = ("light", "switch", "fan", "input_boolean")
OCCUPANCY_CLASSES = ("occupancy", "presence", "motion")


@dataclass(frozen=True)
class Call:
    domain: str
    service: str
    data: tuple[tuple[str, Any], ...]
    entity: Entity

    @property
    def key(self) -> tuple:
        return (self.entity.entity_id, self.service, self.data)


@dataclass
class Plan:
    rec: Recognition
    calls: list[Call]
    targets: list[dict[str, Any]]


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
        self._table = {"HassTurnOn": self._action, "HassTurnOff": self._action, "HassToggle": self._action,
                       "HassLightSet": self._action, "HassGetState": self._get_state,
                       "HassNevermind": self._nevermind, "HassCancelAll": self._cancel_all,
                       "RuViewRoomPresence": self._room_presence, "RuViewOccupiedRooms": self._occupied_rooms}

    def handles(self, intent: str) -> bool:
        return intent in self._table

    def handle(self, rec: Recognition, home: Home, context_area: str | None = None) -> Outcome:
        """A query or an own intent, answered (actions go through plan() and run())."""
        handler = self._table.get(rec.intent)
        if handler is None:  # an operator's own intent: automations act on ruview/assist/intent/<Intent>
            return Outcome("action_done", rec.speech or "")
        outcome = self._action(rec, home, context_area) if rec.intent in ACTIONS else handler(rec, home)
        if rec.speech and outcome.response_type != "error":
            outcome.speech = rec.speech
        return outcome

    def handle_all(self, recs: list[Recognition], home: Home, context_area: str | None = None) -> list[Outcome]:
        """One sentence's intents: every action planned first, then all done, or none.

        A part that cannot be done, or parts that contradict each other (on and off, or two
        brightnesses, for one device), leave the whole sentence undone; a command said twice
        is done once."""
        plans: dict[int, Plan] = {}
        for i, rec in enumerate(recs):
            if rec.intent in ACTIONS:
                plan = self.plan(rec, home, context_area)
                if isinstance(plan, Outcome):
                    return [plan]
                plans[i] = plan
        if len(plans) > 1:
            # a lock, a cover or a valve answers only when its command runs: in a compound that would be
            # after another part acted, so a compound is only ever made of what simply switches
            odd = next((c.entity for p in plans.values() for c in p.calls if c.entity.domain not in SWITCHABLE), None)
            if odd is not None:
                return [self.error(recs[0].language, "failed_to_handle", "not_in_compound", entity=odd.name)]
        wanted: dict[str, set[tuple]] = {}
        for plan in plans.values():
            for call in plan.calls:
                wanted.setdefault(call.entity.entity_id, set()).add((call.service, call.data))
        clash = next((e for e, asks in wanted.items()
                      if len({svc for svc, _ in asks}) > 1 or len({d for _, d in asks if d}) > 1), None)
        if clash is not None:
            name = next(c.entity.name for p in plans.values() for c in p.calls if c.entity.entity_id == clash)
            return [self.error(recs[0].language, "no_intent_match", "contradiction", entity=name)]
        # "turn on the lamp and set it to 40%": the plain turn_on is part of the one with a brightness
        done: set[tuple] = {(e, svc, ()) for e, asks in wanted.items() for svc, d in asks if d}
        out = []
        for i, rec in enumerate(recs):
            outcome = self.run(plans[i], done) if i in plans else self.handle(rec, home, context_area)
            if rec.speech and outcome.response_type != "error":
                outcome.speech = rec.speech
            out.append(outcome)
        if len(plans) > 1 and all(out[i].response_type == "action_done" for i in plans):
            self._say_once(recs, plans, out)
        return out

    def _say_once(self, recs: list[Recognition], plans: dict[int, Plan], out: list[Outcome]) -> None:
        """One answer for a compound: each kind of action once, with every device it was done to."""
        said: dict[str, list[str]] = {}
        for i in plans:
            said.setdefault(recs[i].intent, []).extend(t["name"] for t in out[i].success)
        language = recs[0].language
        sentences = [self.speech.own(language, _DONE.get(intent, "done"),
                                     names=self.speech.join(language, list(dict.fromkeys(names))))
                     for intent, names in said.items()]
        for n, i in enumerate(plans):
            out[i].speech = " ".join(sentences) if n == 0 else ""

    def _action(self, rec: Recognition, home: Home, context_area: str | None = None) -> Outcome:
        plan = self.plan(rec, home, context_area)
        return plan if isinstance(plan, Outcome) else self.run(plan)

    def error(self, language: str, code: str, key: str, **values: Any) -> Outcome:
        return Outcome("error", self.speech.error(language, key, **values), code)

    def refused(self, language: str, why: str | None, detail: str | None = None) -> Outcome:
        """The answer to a sentence the pipeline did not act on (Understood.refusal), saying why."""
        if why == "no_area":
            return self.error(language, "no_valid_targets", "no_area", area=detail or "")
        if why is None:
            return self.error(language, "no_intent_match", "no_intent")
        return Outcome("error", self.speech.own(language, why, part=detail or "", parts=MAX_PARTS), "no_intent_match")

    # ------------------------------------------------------------ targets

    def resolve(self, rec: Recognition, home: Home, context_area: str | None = None) -> list[Entity] | Outcome:
        """The entities a recognition names, as Home Assistant resolves them, or the error to answer.

        A name shared by several entities acts only when an area in the sentence, or else the
        satellite's area, leaves exactly one; otherwise the answer says which areas have it."""
        s, lang = rec.slots, rec.language
        area, floor = s.get("area"), s.get("floor")
        home_area = home.area(str(area)) if area is not None else None
        home_floor = home.floor(str(floor)) if floor is not None else None
        if area is not None and home_area is None:
            return self.error(lang, "no_valid_targets", "no_area", area=area)
        if floor is not None and home_floor is None:
            return self.error(lang, "no_valid_targets", "no_floor", floor=floor)
        domains = s.get("domain")
        domains = {domains} if isinstance(domains, str) else set(domains or ())
        if rec.domains:
            domains = (domains & set(rec.domains)) if domains else set(rec.domains)
            if not domains:
                return self.error(lang, "no_valid_targets", "no_targets")
        device_class = s.get("device_class")

        def fits(e: Entity) -> bool:
            return (not domains or e.domain in domains) and (device_class is None or e.device_class == device_class)

        if s.get("name") is None:
            found = [e for e in (home.in_area(area, floor) if (area or floor) else list(home.entities)) if fits(e)]
            return found or self.error(lang, "no_valid_targets", "no_targets")
        named = home.named(str(s["name"]))
        if not named:
            return self.error(lang, "no_valid_targets", "no_entity", entity=s["name"])
        found = [e for e in named if fits(e)]
        if not found:
            return self.error(lang, "no_valid_targets", "no_targets")
        if home_area is not None or home_floor is not None:
            found = [e for e in found if (home_area is None or e.area == home_area)
                     and (home_floor is None or e.floor == home_floor)]
            if not found:
                return self.error(lang, "no_valid_targets", "no_entity_in_area", entity=s["name"],
                                  area=home_area or home_floor)
        elif len(found) > 1 and context_area:
            here = [e for e in found if e.area and key(e.area) == key(context_area)]
            found = here if len(here) == 1 else found
        if len(found) > 1:
            areas = sorted({e.area for e in found if e.area})
            out = self.error(lang, "no_valid_targets", "duplicate_entities", entity=found[0].name)
            if areas:
                more = self.speech.own(lang, "duplicate_areas", areas=self.speech.join(lang, areas))
                out.speech = f"{out.speech.rstrip('.')}. {more}"
            return out
        return found

    # ------------------------------------------------------------ actions

    def plan(self, rec: Recognition, home: Home, context_area: str | None = None) -> Plan | Outcome:
        """The service calls an action would make, nothing called yet; or the error to answer."""
        found = self.resolve(rec, home, context_area)
        if isinstance(found, Outcome):
            return found
        if rec.intent == "HassToggle":  # ours, not HA's templates: only what switches, never a lock or cover
            found = [e for e in found if e.domain in SWITCHABLE]
            if not found:
                return self.error(rec.language, "no_valid_targets", "no_targets")
        if rec.intent in ON_OFF:
            service = ON_OFF[rec.intent]
            calls = [Call(e.domain if e.domain in SWITCHABLE else "homeassistant", service, (), e) for e in found]
        else:  # HassLightSet
            data: dict[str, Any] = {}
            if "brightness" in rec.slots:
                data["brightness_pct"] = rec.slots["brightness"]
            if "color" in rec.slots:
                color = str(rec.slots["color"])
                if color.replace(" ", "").lower() not in COLORS:  # found now, not once another part acted
                    return self.error(rec.language, "failed_to_handle", "unknown_color", color=color)
                data["color_name"] = color
            if not data:
                return self.error(rec.language, "failed_to_handle", "handle_error")
            lights = [e for e in found if e.domain == "light"]
            if not lights:
                return self.error(rec.language, "no_valid_targets", "no_targets")
            calls = [Call("light", "turn_on", tuple(sorted(data.items())), e) for e in lights]
        return Plan(rec, calls, _general_targets(rec))

    def run(self, plan: Plan, already: set[tuple] | None = None) -> Outcome:
        """Make a plan's calls (each one once, across the plans of one sentence) and say what was done."""
        rec = plan.rec
        out = Outcome("action_done", "", targets=plan.targets, acted_on=[c.entity for c in plan.calls])
        done = already if already is not None else set()
        for call in plan.calls:
            if call.key in done:  # "turn on the fan and turn on the fan": once
                out.success.append(call.entity.as_target())
                continue
            done.add(call.key)
            try:
                self._call(call.domain, call.service, {"entity_id": call.entity.entity_id, **dict(call.data)})
                out.success.append(call.entity.as_target())
            except ServiceError:
                out.failed.append(call.entity.as_target())
        if not out.success:
            out.response_type, out.code = "error", "failed_to_handle"
            names = self.speech.join(rec.language, [c.entity.name for c in plan.calls])
            out.speech = self.speech.own(rec.language, "failed", names=names)
            return out
        found = [c.entity for c in plan.calls]
        views = [_state_view(e, self._state(e.entity_id)) for e in found]
        context = {"slots": _slot_texts(rec, found), "state": views[0],
                   "query": {"matched": views, "unmatched": []}}
        several = len({e.entity_id for e in found}) > 1 and rec.slots.get("name") is not None
        speech = None if several else self.speech.intent(rec.language, rec.intent, rec.response, context)
        out.speech = speech or self.speech.own(rec.language, _DONE.get(rec.intent, "done"),
                                               names=self.speech.join(rec.language, [e.name for e in found]))
        if out.failed:
            names = self.speech.join(rec.language, [t["name"] for t in out.failed])
            out.speech = f"{out.speech} {self.speech.own(rec.language, 'failed', names=names)}"
        return out

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

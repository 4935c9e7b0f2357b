"""Rooms as HomeKit accessories: which nodes are exposed, how they make rooms, the names Apple Home
accepts, and what each room's services show.

Which nodes: `homekit.expose` decides (`Exposure`). By default every *configured* node (one with a
room, or a name of its own, from `nodes.devices` or an operator's `node/register`/`node/rename`),
never a node id nobody configured: any host on the network can send a frame with a new node id,
and HomeKit allows 150 accessories per bridge, so an unconfigured id must not add a room.

One child accessory per room (nodes grouped by their room; a node without one is a room of its
own, named by the node), so Siri answers "is there motion in the kitchen?". Each has a
MotionSensor and an OccupancySensor (occupancy from the presence engine), both with StatusActive /
StatusFault, and the custom characteristic "BFLD Privacy Class" (2 or 3) on the motion service.
A room none of whose nodes is online is *unavailable* (HAP-python's `available`: reads answer
"communication failure", which Apple Home shows as "No Response"), and its motion and occupancy
keep their last values: a silent node never reads as "unoccupied". A room with some nodes silent
stays available with StatusFault set, so Apple Home flags it; bridge/info names the silent node.

Two stateless switches, as Apple Home automates on them ("when ... is pressed"): "Fall Detected"
in every room (the node event `fall_detected`, which both exportable classes publish), and
"Unrecognized Activity Pattern" only in rooms with a Restricted node (as in the seed). Nothing
here reads a vitals field or a score: HomeKit gets presence, motion, availability and those two
ambient events only (docs/privacy.md).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterable

from pyhap.accessory import Accessory
from pyhap.const import CATEGORY_SENSOR
from pyhap.iid_manager import IIDManager
from pyhap.loader import Loader

from bridge import names
from bridge.core.directory import NodeInfo
from bridge.core.rooms import RoomView, rooms

PRIVACY_CLASS_CHAR = "BFLD Privacy Class"
PRIVACY_CLASS_UUID = "8B0E1C00-0001-4B0E-9C00-1234567890AB"
ACTIVITY_SWITCH = "Unrecognized Activity Pattern"
FALL_SWITCH = "Fall Detected"
SINGLE_PRESS = 0
MAX_ACCESSORIES = 150  # HomeKit's limit for one bridge, its own accessory object included
MAX_ROOMS = MAX_ACCESSORIES - 1
NAME_MAX = 64  # HomeKit's limit for a name

RoomKey = tuple[str, str | int]  # ("room", room name) or ("node", node id): what a room is, whatever its name


def make_loader() -> Loader:
    """HAP-python's service and characteristic definitions, plus the seed's custom one — added to
    the loader, so HAP-python's own `add_preload_service` gives it an iid like any other."""
    loader = Loader()
    loader.char_types[PRIVACY_CLASS_CHAR] = {"Format": "uint8", "Permissions": ["pr", "ev"],
                                             "UUID": PRIVACY_CLASS_UUID, "minValue": 2, "maxValue": 3,
                                             "minStep": 1}
    return loader


# ------------------------------------------------------------ names Apple Home accepts

# Home Assistant's HOMEKIT_CHAR_TRANSLATIONS (homeassistant/components/homekit/util.py, used by its
# cleanup_name_for_homekit since HA issue 60261): control characters and `"` and `_` become spaces,
# the other ASCII symbols a hyphen.
_HA_TRANSLATIONS = {0: " ", 10: " ", 13: " ", 34: " ", 95: " ",
                    **{c: "-" for c in (33, 36, 37, 40, 41, 42, 43, 47, 58, 59, 60, 61, 62, 63, 64,
                                        91, 92, 93, 94, 96, 123, 124, 125, 126, 127)}}
_KEPT_SYMBOLS = {" ", "'", "\u2019", "-", ".", ","}  # what Apple's naming guidance allows besides letters and digits


def homekit_name(text: str, fallback: str) -> str:
    """`text` as a name Apple Home accepts: HA's translation first (so `node_4` is "node 4", as a Home
    Assistant user sees it), then what HA leaves but Apple refuses (emoji, `#`, `&`, other
    symbols) becomes a space; runs of spaces become one; the name starts and ends with a letter or
    digit (Apple's rule; HA strips only "-_ " at the ends) and has at most 64 characters.
    `fallback` when nothing is left (a room named "🎉")."""
    text = unicodedata.normalize("NFC", text).translate(_HA_TRANSLATIONS)
    kept = "".join(c if c.isalnum() or c in _KEPT_SYMBOLS else " " for c in text)
    words = " ".join(kept.split())

    def trimmed(s: str) -> str:
        start, end = 0, len(s)
        while start < end and not s[start].isalnum():
            start += 1
        while end > start and not s[end - 1].isalnum():
            end -= 1
        return s[start:end]

    return trimmed(trimmed(words)[:NAME_MAX]) or fallback


# ------------------------------------------------------------ which nodes HomeKit shows

def configured(node: NodeInfo) -> bool:
    """Someone named this node or gave it a room (config, `node/register`, `node/rename`), as
    opposed to an id heard on the network that nobody configured."""
    return bool((node.room or "").strip()) or node.name != names.default_node_name(node.node_id)


def room_key(node: NodeInfo) -> RoomKey:
    """What the node's room *is*: its room's name, or the node itself when it has none (so
    renaming a node without a room keeps its accessory)."""
    room = (node.room or "").strip()[:NAME_MAX]
    return ("room", room) if room else ("node", node.node_id)


@dataclass(frozen=True)
class Exposure:
    """`homekit.expose`. Exclusions win. A node listed in include_nodes is shown (configured or
    not: the way to show an id nobody named). Otherwise a configured node is shown — in one of
    include_rooms, if any are listed. Rooms are compared without regard to case ("bedroom" keeps
    "Bedroom" out: an exclusion is a privacy decision and must not miss on a capital letter)."""

    include_rooms: frozenset[str] = frozenset()
    include_nodes: frozenset[int] = frozenset()
    exclude_rooms: frozenset[str] = frozenset()
    exclude_nodes: frozenset[int] = frozenset()

    @classmethod
    def of(cls, include_rooms: Iterable[str] = (), include_nodes: Iterable[int] = (),
           exclude_rooms: Iterable[str] = (), exclude_nodes: Iterable[int] = ()) -> "Exposure":
        return cls(frozenset(r.strip().casefold() for r in include_rooms), frozenset(include_nodes),
                   frozenset(r.strip().casefold() for r in exclude_rooms), frozenset(exclude_nodes))

    def exposes(self, node: NodeInfo) -> bool:
        room = (node.room or "").strip().casefold()
        if node.node_id in self.exclude_nodes or (room and room in self.exclude_rooms):
            return False
        if node.node_id in self.include_nodes:
            return True
        if self.include_rooms:
            return bool(room and room in self.include_rooms)
        return configured(node)


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    name: str
    online: bool


@dataclass(frozen=True)
class RoomGroup:
    """The exposed nodes of one room, before it has an accessory id."""

    key: RoomKey
    view: RoomView  # presence, motion, availability and class, by the rule every edge uses (core/rooms.py)
    nodes: tuple[NodeStatus, ...]
    label: str  # the room's (or node's) own name, uncleaned: what its aid was made from before ids were kept

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(n.node_id for n in self.nodes)


def group_rooms(nodes: Iterable[NodeInfo], exposure: Exposure) -> dict[RoomKey, RoomGroup]:
    """The rooms HomeKit may show, from the exposed nodes that may cross an edge (privacy rule 2,
    applied by core/rooms.py)."""
    members: dict[RoomKey, list[NodeInfo]] = {}
    for node in nodes:
        if exposure.exposes(node):
            members.setdefault(room_key(node), []).append(node)
    out: dict[RoomKey, RoomGroup] = {}
    for key, group in members.items():
        views = rooms(group)  # one room: all of the group have the same room (or it is one node)
        if not views:
            continue  # no node of it may cross an edge
        view = next(iter(views.values()))
        crossing = [n for n in sorted(group, key=lambda n: n.node_id) if n.node_id in view.node_ids]
        out[key] = RoomGroup(key, view, tuple(NodeStatus(n.node_id, n.name, n.online) for n in crossing),
                             view.name)
    return out


@dataclass(frozen=True)
class RoomPlan:
    """One room as the HAP loop is to show it: immutable, handed over from the inbox."""

    aid: int
    name: str  # as Apple Home accepts it
    group: RoomGroup
    saved: bool = True  # the aid is in homekit.accessories: the room may be added or rebuilt under it

    @property
    def view(self) -> RoomView:
        return self.group.view

    @property
    def available(self) -> bool:
        return self.view.online

    @property
    def fault(self) -> bool:
        """Some node of the room is silent (all of them: unavailable as well)."""
        return any(not n.online for n in self.group.nodes)

    @property
    def layout(self) -> tuple[str, bool]:
        """What the accessory's database entry depends on: a change rebuilds it under the same aid."""
        return (self.name, self.view.restricted)

    def info(self) -> dict[str, object]:
        return {"name": self.name, "aid": self.aid, "available": self.available, "fault": self.fault,
                "nodes": [{"node_id": n.node_id, "name": n.name, "online": n.online} for n in self.group.nodes]}


# ------------------------------------------------------------ the accessory

class RoomIIDs(IIDManager):
    """Instance ids that stay put: HomeKit's automations name a characteristic by (aid, iid), so a
    service a room gains or lacks must not move the others'."""

    counter: int  # the last iid given (IIDManager's; pyhap is not type-checked)

    def skip_to(self, iid: int) -> None:
        if self.counter >= iid:
            raise RuntimeError(f"instance ids overlap: {self.counter} already used, {iid} reserved")
        self.counter = iid - 1


ACTIVITY_IIDS_END = 59  # the activity switch sits right after occupancy (where the seed put it) ...
FALL_IIDS_START = 60  # ... and the switch label and the fall switch after a gap it never reaches


class RoomAccessory(Accessory):
    category = CATEGORY_SENSOR

    def __init__(self, driver, plan: RoomPlan, firmware: str) -> None:
        super().__init__(driver, plan.name, aid=plan.aid, iid_manager=RoomIIDs())
        self.set_info_service(firmware_revision=firmware, manufacturer="RuView", model="Wi-Fi sensing room",
                              serial_number=f"room-{plan.aid}")
        motion = self.add_preload_service("MotionSensor", chars=["StatusActive", "StatusFault", PRIVACY_CLASS_CHAR])
        occupancy = self.add_preload_service("OccupancySensor", chars=["StatusActive", "StatusFault"])
        self.motion = motion.configure_char("MotionDetected", value=False)
        self.occupied = occupancy.configure_char("OccupancyDetected", value=0)
        self.active = [motion.configure_char("StatusActive", value=False),
                       occupancy.configure_char("StatusActive", value=False)]
        self.fault = [motion.configure_char("StatusFault", value=1), occupancy.configure_char("StatusFault", value=1)]
        self.privacy_class = motion.configure_char(PRIVACY_CLASS_CHAR, value=plan.view.privacy_class)
        self.activity = self._switch(ACTIVITY_SWITCH, 2) if plan.view.restricted else None
        if self.iid_manager.counter > ACTIVITY_IIDS_END:
            raise RuntimeError("the room's services outgrew their instance ids")
        self.iid_manager.skip_to(FALL_IIDS_START)
        label = self.add_preload_service("ServiceLabel")  # two switches in one accessory: HAP wants them labelled
        label.configure_char("ServiceLabelNamespace", value=1)  # arabic numerals
        self.fall = self._switch(FALL_SWITCH, 1)
        label.add_linked_service(self.fall.service)
        if self.activity is not None:
            label.add_linked_service(self.activity.service)
        self._available = False
        self.layout = plan.layout
        self.show(plan)

    def _switch(self, name: str, index: int):
        switch = self.add_preload_service("StatelessProgrammableSwitch", chars=["Name", "ServiceLabelIndex"])
        switch.configure_char("Name", value=name)
        switch.configure_char("ServiceLabelIndex", value=index)
        return switch.configure_char("ProgrammableSwitchEvent", valid_values={"SinglePress": SINGLE_PRESS})

    @property
    def available(self) -> bool:
        """False while no node of the room is online: HAP-python then answers every read of it with
        "communication failure", which Apple Home shows as "No Response"."""
        return self._available

    def show(self, plan: RoomPlan) -> None:
        """Set what changed (HAP-python sends an event for each value that differs). While the room
        is unavailable its motion and occupancy keep their values: no 1 -> 0 "unoccupied" event."""
        self.plan = plan
        self._available = plan.available
        if plan.available:
            _set(self.motion, bool(plan.view.motion))
            _set(self.occupied, 1 if plan.view.occupied else 0)
        for char in self.active:
            _set(char, plan.available)
        for char in self.fault:
            _set(char, 1 if plan.fault else 0)
        _set(self.privacy_class, plan.view.privacy_class)

    def press(self, event_type: str) -> bool:
        switch = {"fall_detected": self.fall, "unrecognized_activity_pattern": self.activity}.get(event_type)
        if switch is None:
            return False
        switch.set_value(SINGLE_PRESS)
        return True


def _set(char, value) -> None:
    if char.value != value:
        char.set_value(value)

"""Rooms as HomeKit accessories: which nodes make a room, and what each of its services shows.

One child accessory per room (nodes grouped by their configured room; a node without one is a
room of its own, named by the node), so Siri answers "is there motion in the kitchen?". Each has
a MotionSensor and an OccupancySensor (occupancy from the presence engine), both with
StatusActive / StatusFault from availability — an offline room is "not responding", never
"unoccupied" — and the custom characteristic "BFLD Privacy Class" (2 or 3) on the motion
service. A room with a Restricted node also has the stateless switch "Unrecognized Activity
Pattern", pressed when that event comes. Nothing here reads a vitals field: HomeKit gets
presence, motion and availability only (privacy rule 3 is not even needed at this edge).
"""

from __future__ import annotations

import zlib

from pyhap.accessory import Accessory
from pyhap.const import CATEGORY_SENSOR
from pyhap.loader import Loader

from bridge.core.rooms import RoomView

PRIVACY_CLASS_CHAR = "BFLD Privacy Class"
PRIVACY_CLASS_UUID = "8B0E1C00-0001-4B0E-9C00-1234567890AB"
ACTIVITY_SWITCH = "Unrecognized Activity Pattern"
SINGLE_PRESS = 0


def make_loader() -> Loader:
    """HAP-python's service and characteristic definitions, plus the seed's custom one — added to
    the loader, so HAP-python's own `add_preload_service` gives it an iid like any other."""
    loader = Loader()
    loader.char_types[PRIVACY_CLASS_CHAR] = {"Format": "uint8", "Permissions": ["pr", "ev"],
                                             "UUID": PRIVACY_CLASS_UUID, "minValue": 2, "maxValue": 3,
                                             "minStep": 1}
    return loader


def stable_aid(room: str, taken: set[int]) -> int:
    """The same accessory id for a room on every start, so pairings and automations hold."""
    aid = 2 + zlib.crc32(room.encode()) % 2_000_000_000
    while aid in taken:
        aid += 1
    return aid


class RoomAccessory(Accessory):
    category = CATEGORY_SENSOR

    def __init__(self, driver, view: RoomView, aid: int) -> None:
        super().__init__(driver, view.name, aid=aid)
        self.set_info_service(manufacturer="RuView", model="Wi-Fi sensing room",
                              serial_number=f"room-{aid}")
        motion = self.add_preload_service("MotionSensor", chars=["StatusActive", "StatusFault", PRIVACY_CLASS_CHAR])
        occupancy = self.add_preload_service("OccupancySensor", chars=["StatusActive", "StatusFault"])
        self.motion = motion.configure_char("MotionDetected", value=False)
        self.occupied = occupancy.configure_char("OccupancyDetected", value=0)
        self.active = [motion.configure_char("StatusActive", value=False),
                       occupancy.configure_char("StatusActive", value=False)]
        self.fault = [motion.configure_char("StatusFault", value=1), occupancy.configure_char("StatusFault", value=1)]
        self.privacy_class = motion.configure_char(PRIVACY_CLASS_CHAR, value=view.privacy_class)
        self.switch = None
        if view.restricted:
            switch = self.add_preload_service("StatelessProgrammableSwitch", chars=["Name"])
            switch.configure_char("Name", value=ACTIVITY_SWITCH)
            self.switch = switch.configure_char("ProgrammableSwitchEvent",
                                                valid_values={"SinglePress": SINGLE_PRESS})
        self.view = view
        self.show(view)

    def show(self, view: RoomView) -> None:
        """Set what changed (HAP-python sends an event for each value that differs)."""
        self.view = view
        _set(self.motion, bool(view.motion and view.online))
        _set(self.occupied, 1 if view.occupied and view.online else 0)
        for char in self.active:
            _set(char, view.online)
        for char in self.fault:
            _set(char, 0 if view.online else 1)
        _set(self.privacy_class, view.privacy_class)

    def press(self) -> None:
        if self.switch is not None:
            self.switch.set_value(SINGLE_PRESS)


def _set(char, value) -> None:
    if char.value != value:
        char.set_value(value)

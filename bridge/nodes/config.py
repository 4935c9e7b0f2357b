"""The `nodes:` section: how nodes reach the bridge, what leaves it, and how presence is decided."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

from pydantic import Field

from bridge import names
from bridge.config import ExtensionSection, Problem, Section
from bridge.config.types import (Bool, Check, Int, IPAddress, Number, NodeName, OptionalPrivacy, Privacy, Room,
                                 Slug, Text, expected)
from bridge.nodes.presence import THRESHOLD_RANGES, PresenceSettings
from bridge.nodes.reporting import FIELD_RULES, HEARTBEAT, MIN_INTERVAL, REFRESH
from bridge.nodes.schedule import expected_hours
from bridge.privacy import PrivacyClass, export_refusal

_PRESENCE = PresenceSettings()  # the one source of the presence defaults


def _node_id(v: Any) -> int:
    """A node id as a YAML key or value: a whole number, or its digits (an environment override)."""
    try:
        n = int(v)
    except (TypeError, ValueError):
        n = -1
    if isinstance(v, (bool, float)) or not names.is_node_id(n):
        raise expected(f"a node id {names.NODE_ID_MIN}..{names.NODE_ID_MAX}")
    return n


NodeId: TypeAlias = Annotated[int, Check(_node_id)]


def _hours(v: Any) -> list[str] | None:
    try:
        return expected_hours(v)
    except ValueError as exc:
        raise expected(str(exc).removeprefix("expected ")) from None


ExpectedHoursField: TypeAlias = Annotated[list[str] | None, Check(_hours, optional=True)]


class UdpConfig(Section):
    enabled: Bool = True
    bind: IPAddress = "0.0.0.0"
    port: Annotated[int, Int(1, 65535)] = 5005
    queue: Annotated[int, Int(100, 10_000_000)] = 20000


class SerialLink(Section):
    url: Annotated[str, Text(what="a device path or pyserial URL")]  # required: no default
    baudrate: Annotated[int, Int(300, 4_000_000)] = 115200
    log: Bool = False


class PresenceConfig(Section):
    enter_ratio: Annotated[float, Number(*THRESHOLD_RANGES["enter_ratio"])] = _PRESENCE.enter_ratio
    exit_ratio: Annotated[float, Number(*THRESHOLD_RANGES["exit_ratio"])] = _PRESENCE.exit_ratio
    hold: Annotated[float, Number(*THRESHOLD_RANGES["hold"])] = _PRESENCE.hold
    window: Annotated[float, Number(0.2, 60)] = _PRESENCE.window
    warmup: Annotated[float, Number(1, 3600)] = _PRESENCE.warmup
    calibration: Annotated[float, Number(1, 3600)] = _PRESENCE.calibration
    drift_tau: Annotated[float, Number(10, 864000)] = _PRESENCE.drift_tau
    occupancy_window: Annotated[float, Number(0, 86400)] = _PRESENCE.occupancy_window

    def check(self, root: Any) -> list[Problem]:
        if self.exit_ratio > self.enter_ratio:
            return [("exit_ratio", "expected at most nodes.presence.enter_ratio")]
        return []


class FieldReporting(Section):
    """One numeric field's rule; a key not given keeps the field's default (reporting.py)."""

    delta: Annotated[float | None, Number(0, 1e6, optional=True)] = None
    relative: Annotated[float | None, Number(0, 100, optional=True)] = None
    smooth: Annotated[float | None, Number(0, 86400, optional=True)] = None


def _reporting_problems(fields: dict[str, FieldReporting]) -> list[Problem]:
    return [(f"fields.{name}", f"no numeric field {name!r}; one of {', '.join(FIELD_RULES)}")
            for name in fields if name not in FIELD_RULES]


class ReportingConfig(Section):
    """When a node's numbers are published again (presence, motion, occupancy and events: at once)."""

    refresh: Annotated[float, Number(0, 86400)] = REFRESH  # 0: every beat a node was heard on
    heartbeat: Annotated[float, Number(0, 86400)] = HEARTBEAT
    min_interval: Annotated[float, Number(0, 86400)] = MIN_INTERVAL
    fields: dict[str, FieldReporting] = Field(default_factory=dict)

    def check(self, root: Any) -> list[Problem]:
        return _reporting_problems(self.fields)


class DeviceReporting(Section):
    """A node's own reporting: what it sets replaces nodes.reporting's value."""

    refresh: Annotated[float | None, Number(0, 86400, optional=True)] = None
    heartbeat: Annotated[float | None, Number(0, 86400, optional=True)] = None
    min_interval: Annotated[float | None, Number(0, 86400, optional=True)] = None
    fields: dict[str, FieldReporting] = Field(default_factory=dict)

    def check(self, root: Any) -> list[Problem]:
        return _reporting_problems(self.fields)


class DeviceConfig(Section):
    name: NodeName = None
    room: Room = None
    privacy_class: OptionalPrivacy = None
    enter_ratio: Annotated[float | None, Number(*THRESHOLD_RANGES["enter_ratio"], optional=True)] = None
    exit_ratio: Annotated[float | None, Number(*THRESHOLD_RANGES["exit_ratio"], optional=True)] = None
    hold: Annotated[float | None, Number(*THRESHOLD_RANGES["hold"], optional=True)] = None
    expected_hours: ExpectedHoursField = None
    reporting: DeviceReporting = Field(default_factory=DeviceReporting)

    def overrides(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in THRESHOLD_RANGES if getattr(self, k) is not None}


class NodesConfig(ExtensionSection):
    udp: UdpConfig = Field(default_factory=UdpConfig)
    serial: dict[Slug, SerialLink] = Field(default_factory=dict)
    offline_after: Annotated[float, Number(1, 86400)] = 30.0
    publish_interval: Annotated[float, Number(0.05, 3600)] = 1.0
    max_delay: Annotated[float, Number(0.1, 3600)] = 1.0
    privacy_class: Privacy = PrivacyClass.ANONYMOUS
    presence: PresenceConfig = Field(default_factory=PresenceConfig)
    reporting: ReportingConfig = Field(default_factory=ReportingConfig)
    devices: dict[NodeId, DeviceConfig] = Field(default_factory=dict)

    def check(self, root: Any) -> list[Problem]:
        problems = []
        reason = export_refusal(self.privacy_class)
        if reason:
            problems.append(("privacy_class", f"the default class {reason}"))
        for node_id, dev in self.devices.items():
            reason = export_refusal(dev.privacy_class) if dev.privacy_class is not None else None
            if reason:
                label = f"node {node_id}{' (' + dev.name + ')' if dev.name else ''}"
                problems.append((f"devices.{node_id}.privacy_class", f"{label} {reason}"))
        spans = [("reporting.refresh", self.reporting.refresh)] + [
            (f"devices.{n}.reporting.refresh", d.reporting.refresh) for n, d in self.devices.items()
            if d.reporting.refresh is not None]
        for key, refresh in spans:  # HA's expire_after is two offline spans, at least 60 s
            if refresh is not None and refresh >= max(60.0, 2 * self.offline_after):
                problems.append((key, f"expected less than {max(60.0, 2 * self.offline_after):g} s (Home "
                                 "Assistant shows a node's entities unavailable when its state is older)"))
        named = [d.name for d in self.devices.values() if d.name]
        if len(named) != len(set(named)):
            problems.append(("devices", "two nodes share a name; names must be unique"))
        taken = {names.default_node_name(i): i for i, d in self.devices.items() if not d.name}
        for node_id, dev in self.devices.items():
            if dev.name in taken and taken[dev.name] != node_id:
                problems.append((f"devices.{node_id}.name", f"{dev.name!r} is node {taken[dev.name]}'s "
                                 "default name; choose another"))
        return problems

    def device(self, node_id: int) -> DeviceConfig:
        return self.devices.get(node_id) or DeviceConfig()

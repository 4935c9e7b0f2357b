"""Discovery out: the HA config messages for the bridge and for each node.

Pure functions from what we know about a node to {config topic: payload},
in either of HA's two layouts: one retained config per entity
(`<prefix>/<component>/<node_key>/<object>/config`, every HA since 2023) or
one per device (`<prefix>/device/<node_key>/config` with `cmps`, HA 2024.11+).
Values come from the node's retained JSON state through value templates;
unique ids hang on the node id and base topic, so they survive renames and
restarts. Entities the node's privacy class forbids are never built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge import __version__
from bridge.nodes.presence import THRESHOLD_RANGES
from bridge.topics import Topics

ORIGIN = {"name": "ruview-bridge", "sw": __version__, "url": "https://github.com/ruvnet/RuView"}
EVENT_TYPES = ["unknown_presence", "presence_cleared", "unexpected_occupancy", "fall_detected",
               "unrecognized_activity_pattern", "node_rebooted"]
RESTRICTED_EVENTS = {"unrecognized_activity_pattern"}
THRESHOLD_STEPS = {"enter_ratio": 0.1, "exit_ratio": 0.1, "hold": 1}
FIRMWARE_MODES = {0: "feature state", 1: "edge vitals", 2: "raw CSI"}


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    name: str
    room: str | None
    restricted: bool
    mode: int | None = None


def _avail(topics: Topics, node: NodeInfo | None) -> dict[str, Any]:
    sources = [{"topic": topics.bridge_state, "value_template": "{{ value_json.state }}"}]
    if node is not None:
        sources.append({"topic": topics.node_availability(node.name),
                        "value_template": "{{ value_json.state }}"})
    return {"availability": sources, "availability_mode": "all"}


def bridge_key(topics: Topics) -> str:
    return f"ruview_bridge_{topics.base.replace('/', '_')}"


def node_key(topics: Topics, node_id: int) -> str:
    return f"ruview_{topics.base.replace('/', '_')}_node_{node_id}"


def _flag(key: str) -> str:
    return "{{ 'ON' if value_json.%s else 'OFF' }}" % key


def node_components(topics: Topics, node: NodeInfo, expire_after: int) -> dict[str, dict[str, Any]]:
    """object id -> component config (full keys, with `platform`) for one node."""
    state = topics.node(node.name)
    key = node_key(topics, node.node_id)

    def comp(platform: str, object_id: str, name: str, **extra: Any) -> tuple[str, dict[str, Any]]:
        return object_id, {"platform": platform, "name": name, "unique_id": f"{key}_{object_id}",
                           "default_entity_id": f"{platform}.{node.name.replace('-', '_')}_{object_id}",
                           **extra}

    sensors = [
        comp("binary_sensor", "presence", "Presence", device_class="presence", state_topic=state,
             value_template=_flag("presence")),
        comp("binary_sensor", "occupancy", "Occupancy", device_class="occupancy", state_topic=state,
             value_template=_flag("occupancy")),
        comp("binary_sensor", "motion", "Motion", device_class="motion", state_topic=state,
             value_template=_flag("motion")),
        comp("sensor", "presence_score", "Presence score", state_topic=state, state_class="measurement",
             value_template="{{ value_json.presence_score }}", suggested_display_precision=2,
             icon="mdi:radar"),
        comp("sensor", "baseline", "Presence baseline", state_topic=state, state_class="measurement",
             value_template="{{ value_json.baseline }}", suggested_display_precision=2,
             entity_category="diagnostic"),
        comp("sensor", "rssi", "Signal strength", device_class="signal_strength",
             unit_of_measurement="dBm", state_class="measurement", state_topic=state,
             value_template="{{ value_json.rssi }}", entity_category="diagnostic"),
        comp("sensor", "packet_loss", "Packet loss", unit_of_measurement="%", state_class="measurement",
             state_topic=state, value_template="{{ (value_json.packet_loss * 100) | round(2) }}",
             entity_category="diagnostic"),
        comp("event", "event", "Event", state_topic=topics.node_event(node.name),
             event_types=[e for e in EVENT_TYPES if not (node.restricted and e in RESTRICTED_EVENTS)]),
        comp("button", "calibrate", "Calibrate", command_topic=f"{state}/set",
             payload_press='{"calibrate": true}', entity_category="config", icon="mdi:tune"),
    ]
    if not node.restricted:
        sensors += [
            comp("sensor", "breathing", "Breathing rate", unit_of_measurement="br/min",
                 state_class="measurement", state_topic=state, expire_after=expire_after,
                 value_template="{{ value_json.breathing_bpm | default(None) }}", icon="mdi:lungs"),
            comp("sensor", "heart_rate", "Heart rate", unit_of_measurement="bpm", state_class="measurement",
                 state_topic=state, expire_after=expire_after,
                 value_template="{{ value_json.heart_bpm | default(None) }}", icon="mdi:heart-pulse"),
        ]
    for name, (lo, hi) in THRESHOLD_RANGES.items():
        sensors.append(comp("number", name, name.replace("_", " ").capitalize(), state_topic=state,
                            command_topic=f"{state}/set",
                            command_template='{"%s": {{ value }}}' % name,
                            value_template="{{ value_json.thresholds.%s }}" % name,
                            min=lo, max=hi, step=THRESHOLD_STEPS[name], mode="box",
                            entity_category="config"))
    return dict(sensors)


def node_device(topics: Topics, node: NodeInfo) -> dict[str, Any]:
    device = {"identifiers": [node_key(topics, node.node_id)], "name": node.name.replace("_", " ").title(),
              "manufacturer": "RuView", "model": "ESP32-C6 Wi-Fi sensing node",
              "via_device": bridge_key(topics)}
    if node.room:
        device["suggested_area"] = node.room
    if node.mode is not None:
        device["hw_version"] = FIRMWARE_MODES.get(node.mode, f"mode {node.mode}")
    return device


def bridge_components(topics: Topics) -> dict[str, dict[str, Any]]:
    key = bridge_key(topics)

    def diag(object_id: str, name: str, **extra: Any) -> tuple[str, dict[str, Any]]:
        return object_id, {"platform": "sensor", "name": name, "unique_id": f"{key}_{object_id}",
                           "entity_category": "diagnostic", **extra}

    return dict([
        ("connection_state", {"platform": "binary_sensor", "name": "Connection state",
                              "unique_id": f"{key}_connection_state", "device_class": "connectivity",
                              "state_topic": topics.bridge_state, "value_template": "{{ value_json.state }}",
                              "payload_on": "online", "payload_off": "offline",
                              "entity_category": "diagnostic", "standalone": True}),
        diag("version", "Version", state_topic=topics.bridge_info, value_template="{{ value_json.version }}",
             icon="mdi:tag"),
        diag("frames_per_second", "Frames per second", state_topic=topics.bridge_health,
             unit_of_measurement="frames/s", state_class="measurement",
             value_template="{{ value_json.nodes.frames_per_second }}"),
        diag("crc_errors", "CRC errors", state_topic=topics.bridge_health, state_class="total_increasing",
             value_template="{{ value_json.nodes.crc_errors }}"),
    ])


def bridge_device(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [bridge_key(topics)], "name": "RuView bridge", "manufacturer": "RuView",
            "model": "ruview-bridge", "sw_version": __version__}


def configs(prefix: str, mode: str, key: str, device: dict[str, Any],
            components: dict[str, dict[str, Any]], availability: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{topic: payload} for one device in the chosen layout."""
    if mode == "device":  # availability per component, so the connectivity sensor can go without
        cmps = {}
        for object_id, comp in components.items():
            cmps[object_id] = {k: v for k, v in comp.items() if k != "standalone"}
            if not comp.get("standalone"):
                cmps[object_id].update(availability)
        return {f"{prefix}/device/{key}/config": {"device": device, "origin": ORIGIN, "components": cmps}}
    out = {}
    for object_id, comp in components.items():
        body = {k: v for k, v in comp.items() if k not in ("platform", "standalone")}
        if not comp.get("standalone"):
            body.update(availability)
        out[f"{prefix}/{comp['platform']}/{key}/{object_id}/config"] = {
            **body, "device": device, "origin": ORIGIN}
    return out


def node_configs(prefix: str, mode: str, topics: Topics, node: NodeInfo,
                 expire_after: int) -> dict[str, dict[str, Any]]:
    return configs(prefix, mode, node_key(topics, node.node_id), node_device(topics, node),
                   node_components(topics, node, expire_after), _avail(topics, node))


def bridge_configs(prefix: str, mode: str, topics: Topics) -> dict[str, dict[str, Any]]:
    return configs(prefix, mode, bridge_key(topics), bridge_device(topics), bridge_components(topics),
                   _avail(topics, None))


def device_triggers(prefix: str, topics: Topics, node: NodeInfo) -> dict[str, dict[str, Any]]:
    """One device trigger per event type (HA device automations), matched on event_type."""
    key = node_key(topics, node.node_id)
    return {f"{prefix}/device_automation/{key}/{event}/config": {
        "automation_type": "trigger", "topic": topics.node_event(node.name),
        "value_template": "{{ value_json.event_type }}", "payload": event,
        "type": "action", "subtype": event, "device": node_device(topics, node), "origin": ORIGIN}
        for event in EVENT_TYPES if not (node.restricted and event in RESTRICTED_EVENTS)}

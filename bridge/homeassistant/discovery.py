"""Discovery out: the HA config messages for the bridge and for each node.

Pure functions from what we know about a node to {config topic: payload},
in either of HA's two layouts: one retained config per entity
(`<prefix>/<component>/<node_key>/<object>/config`, every HA since 2023) or
one per device (`<prefix>/device/<node_key>/config` with `cmps`, HA 2024.11+).
Values come from the node's retained JSON state through value templates;
unique ids hang on the node id and base topic, so they survive renames and
restarts. Each entity names the state fields it shows, and the privacy module
decides whether the node's class lets it exist at all.
"""

from __future__ import annotations

from typing import Any

from bridge import __version__, names, privacy
from bridge.core.directory import NodeInfo
from bridge.nodes.presence import THRESHOLD_RANGES
from bridge.topics import DiscoveryTopics, Topics

ORIGIN = {"name": "ruview-bridge", "sw": __version__, "url": "https://github.com/ruvnet/RuView"}
THRESHOLD_STEPS = {"enter_ratio": 0.1, "exit_ratio": 0.1, "hold": 1}
FIRMWARE_MODES = {0: "feature state", 1: "edge vitals", 2: "raw CSI"}
# scores, baseline, signal strength, loss: for finding a fault, not for the dashboard or the recorder
# (as Zigbee2MQTT's linkquality): listed under Diagnostic and off until a user turns one on
DIAGNOSTIC = {"entity_category": "diagnostic", "enabled_by_default": False}


def _avail(topics: Topics, node: NodeInfo | None) -> dict[str, Any]:
    sources = [{"topic": topics.bridge_state, "value_template": "{{ value_json.state }}"}]
    if node is not None:
        sources.append({"topic": topics.node_availability(node.name),
                        "value_template": "{{ value_json.state }}"})
    return {"availability": sources, "availability_mode": "all"}


def bridge_key(topics: Topics) -> str:
    own = f"_{topics.instance}" if topics.share_group else ""
    return f"ruview_bridge_{topics.base.replace('/', '_')}{own}"


def node_key(topics: Topics, node_id: int) -> str:
    return f"ruview_{topics.base.replace('/', '_')}_node_{node_id}"


def _flag(key: str) -> str:
    return "{{ 'ON' if value_json.%s else 'OFF' }}" % key


def node_components(topics: Topics, node: NodeInfo, expire_after: int) -> dict[str, dict[str, Any]]:
    """object id -> component config (full keys, with `platform`) for one node.

    Every entity read from the node's state topic expires after `expire_after` seconds without
    an update (a streaming node's state goes out every beat): if the bridge dies where its Last
    Will is never published (a cluster node gone; NATS and RabbitMQ do not send a dead client's
    Will), Home Assistant shows the node unavailable instead of frozen values."""
    state = topics.node(node.name)
    key = node_key(topics, node.node_id)
    built: list[tuple[str, dict[str, Any]]] = []

    def comp(platform: str, object_id: str, name: str, reads: tuple[str, ...] = (), **extra: Any) -> None:
        if privacy.allows_fields(node.privacy_class, reads):
            built.append((object_id, {"platform": platform, "name": name, "unique_id": f"{key}_{object_id}",
                                      "default_entity_id": names.node_entity_id(platform, node.name, object_id),
                                      **extra}))

    comp("binary_sensor", "presence", "Presence", ("presence",), device_class="presence",
         state_topic=state, expire_after=expire_after, value_template=_flag("presence"))
    comp("binary_sensor", "occupancy", "Occupancy", ("occupancy",), device_class="occupancy",
         state_topic=state, expire_after=expire_after, value_template=_flag("occupancy"))
    comp("binary_sensor", "motion", "Motion", ("motion",), device_class="motion", state_topic=state,
         expire_after=expire_after, value_template=_flag("motion"))
    comp("sensor", "presence_score", "Presence score", ("presence_score",), state_topic=state,
         expire_after=expire_after, state_class="measurement", value_template="{{ value_json.presence_score }}",
         suggested_display_precision=2, icon="mdi:radar", **DIAGNOSTIC)
    comp("sensor", "baseline", "Presence baseline", ("baseline",), state_topic=state,
         expire_after=expire_after, state_class="measurement", value_template="{{ value_json.baseline }}",
         suggested_display_precision=2, **DIAGNOSTIC)
    comp("sensor", "rssi", "Signal strength", ("rssi",), device_class="signal_strength",
         unit_of_measurement="dBm", state_class="measurement", state_topic=state,
         expire_after=expire_after, value_template="{{ value_json.rssi }}", **DIAGNOSTIC)
    comp("sensor", "packet_loss", "Packet loss", ("packet_loss",), unit_of_measurement="%",
         state_class="measurement", state_topic=state, expire_after=expire_after,
         value_template="{{ (value_json.packet_loss * 100) | round(2) }}", **DIAGNOSTIC)
    comp("event", "event", "Event", state_topic=topics.node_event(node.name),
         event_types=list(privacy.events_for(node.privacy_class)))
    comp("button", "calibrate", "Calibrate", command_topic=topics.node_set(node.name),
         payload_press='{"calibrate": true}', entity_category="config", icon="mdi:tune")
    comp("sensor", "breathing", "Breathing rate", ("breathing_bpm",), unit_of_measurement="br/min",
         state_class="measurement", state_topic=state, expire_after=expire_after,
         value_template="{{ value_json.breathing_bpm | default(None) }}", icon="mdi:lungs")
    comp("sensor", "heart_rate", "Heart rate", ("heart_bpm",), unit_of_measurement="bpm",
         state_class="measurement", state_topic=state, expire_after=expire_after,
         value_template="{{ value_json.heart_bpm | default(None) }}", icon="mdi:heart-pulse")
    for name, (lo, hi) in THRESHOLD_RANGES.items():
        comp("number", name, name.replace("_", " ").capitalize(), ("thresholds",), state_topic=state,
             command_topic=topics.node_set(node.name), command_template='{"%s": {{ value }}}' % name,
             value_template="{{ value_json.thresholds.%s }}" % name,
             min=lo, max=hi, step=THRESHOLD_STEPS[name], mode="box", entity_category="config")
    return dict(built)


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
    name = f"RuView bridge {topics.instance}" if topics.share_group else "RuView bridge"
    return {"identifiers": [bridge_key(topics)], "name": name, "manufacturer": "RuView",
            "model": "ruview-bridge", "sw_version": __version__}


def configs(dt: DiscoveryTopics, mode: str, key: str, device: dict[str, Any],
            components: dict[str, dict[str, Any]], availability: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{topic: payload} for one device in the chosen layout."""
    if mode == "device":  # availability per component, so the connectivity sensor can go without
        cmps = {}
        for object_id, comp in components.items():
            cmps[object_id] = {k: v for k, v in comp.items() if k != "standalone"}
            if not comp.get("standalone"):
                cmps[object_id].update(availability)
        return {dt.device(key): {"device": device, "origin": ORIGIN, "components": cmps}}
    out = {}
    for object_id, comp in components.items():
        body = {k: v for k, v in comp.items() if k not in ("platform", "standalone")}
        if not comp.get("standalone"):
            body.update(availability)
        out[dt.component(comp["platform"], key, object_id)] = {**body, "device": device, "origin": ORIGIN}
    return out


def node_configs(dt: DiscoveryTopics, mode: str, topics: Topics, node: NodeInfo,
                 expire_after: int) -> dict[str, dict[str, Any]]:
    return configs(dt, mode, node_key(topics, node.node_id), node_device(topics, node),
                   node_components(topics, node, expire_after), _avail(topics, node))


def bridge_configs(dt: DiscoveryTopics, mode: str, topics: Topics) -> dict[str, dict[str, Any]]:
    return configs(dt, mode, bridge_key(topics), bridge_device(topics), bridge_components(topics),
                   _avail(topics, None))


def device_triggers(dt: DiscoveryTopics, topics: Topics, node: NodeInfo) -> dict[str, dict[str, Any]]:
    """One device trigger per event type (HA device automations), matched on event_type."""
    key = node_key(topics, node.node_id)
    return {dt.trigger(key, event): {
        "automation_type": "trigger", "topic": topics.node_event(node.name),
        "value_template": "{{ value_json.event_type }}", "payload": event,
        "type": "action", "subtype": event, "device": node_device(topics, node), "origin": ORIGIN}
        for event in privacy.events_for(node.privacy_class)}


PLUGIN_PLATFORMS = ("binary_sensor", "sensor")  # what a plugin may announce: states, never commands
PLUGIN_FIELDS = ("unit_of_measurement", "icon")
BINARY_SENSOR_CLASSES = frozenset({  # Home Assistant's; a config with another is refused by HA
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window"})
STATE_CLASSES = frozenset({"measurement", "total", "total_increasing"})


def plugin_key(topics: Topics, domain: str) -> str:
    return f"ruview_{topics.base.replace('/', '_')}_plugin_{domain}"


def plugin_configs(dt: DiscoveryTopics, mode: str, topics: Topics, domain: str, title: str,
                   entities: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A plugin's registered entities (hc_entity_register) as one HA device, reading home state."""
    key = plugin_key(topics, domain)
    components: dict[str, dict[str, Any]] = {}
    for entity in entities:
        platform, _, object_id = str(entity.get("entity_id", "")).partition(".")
        if platform not in PLUGIN_PLATFORMS or not names.valid_entity_id(entity["entity_id"]):
            continue
        state = topics.state(entity["entity_id"])
        given = entity.get("name")
        name = given if isinstance(given, str) else object_id.replace("_", " ")
        comp = {"platform": platform, "name": name[:100], "unique_id": f"{key}_{object_id}",
                "default_entity_id": entity["entity_id"], "state_topic": state,
                "value_template": "{{ value_json.state }}" if platform == "sensor"
                else "{{ 'ON' if value_json.state == 'on' else 'OFF' }}",
                "json_attributes_topic": state, "json_attributes_template": "{{ value_json.attributes | tojson }}"}
        for field in PLUGIN_FIELDS:
            value = entity.get(field)
            if isinstance(value, str) and 0 < len(value) <= 64:
                comp[field] = value
        device_class = entity.get("device_class")
        if platform == "binary_sensor" and device_class in BINARY_SENSOR_CLASSES:
            comp["device_class"] = device_class
        elif platform == "sensor" and isinstance(device_class, str) and names.is_identifier(device_class):
            comp["device_class"] = device_class
        if platform == "sensor" and entity.get("state_class") in STATE_CLASSES:
            comp["state_class"] = entity["state_class"]
        components[object_id] = comp
    if not components:
        return {}
    device = {"identifiers": [key], "name": f"RuView plugin {title}"[:100], "manufacturer": "RuView",
              "model": "WASM plugin", "via_device": bridge_key(topics)}
    return configs(dt, mode, key, device, components, _avail(topics, None))

"""Home Assistant entities of each node's firmware: an `update` entity and a recalibrate `button`.

Both hang on the node's device (the same identifiers as the homeassistant feature's discovery).
The update entity reads `<base>/node/<name>/ota` (installed and latest version, in progress,
percentage); its Install button sends "install" to `<base>/node/<name>/ota/set`, which runs the
same rollout as the `node/ota` request; the button sends "recalibrate" there.
"""

from __future__ import annotations

from typing import Any

from bridge.core.directory import NodeInfo
from bridge.homeassistant.discovery import ORIGIN, node_device, node_key
from bridge.topics import DiscoveryTopics, Topics


def ota_topic(topics: Topics, name: str) -> str:
    return f"{topics.node(name)}/ota"


def command_topic(topics: Topics, name: str) -> str:
    return f"{topics.node(name)}/ota/set"


def configs(dt: DiscoveryTopics, topics: Topics, node: NodeInfo, release_url: str | None) -> dict[str, dict[str, Any]]:
    key = node_key(topics, node.node_id)
    device = node_device(topics, node)
    avail = {"availability_topic": topics.bridge_state, "availability_template": "{{ value_json.state }}"}
    update: dict[str, Any] = {
        "name": "Firmware", "unique_id": f"{key}_firmware", "device_class": "firmware",
        "state_topic": ota_topic(topics, node.name), "command_topic": command_topic(topics, node.name),
        "payload_install": "install", "entity_category": "config", "device": device, "origin": ORIGIN,
        "title": "RuView node firmware", **avail,
        # a node that takes an update without any PSK is a risk, shown as an attribute
        "json_attributes_topic": ota_topic(topics, node.name),
        "json_attributes_template": "{{ {'ota_psk': value_json.ota_psk} | tojson }}"}
    if release_url:
        update["release_url"] = release_url
    button = {"name": "Recalibrate", "unique_id": f"{key}_recalibrate",
              "command_topic": command_topic(topics, node.name), "payload_press": "recalibrate",
              "entity_category": "config", "device": device, "origin": ORIGIN, **avail}
    return {dt.component("update", key, "firmware"): update,
            dt.component("button", key, "recalibrate"): button}


def state(installed: str | None, latest: str | None, progress: dict[str, Any] | None,
          open_node: bool | None = None) -> dict[str, Any]:
    """The update entity's JSON state (HA's MQTT update schema) with the rollout's own fields."""
    phase = (progress or {}).get("state")
    busy = phase in ("queued", "uploading", "rebooting", "verifying")
    out: dict[str, Any] = {"installed_version": installed, "latest_version": latest or installed,
                           "in_progress": busy,
                           "update_percentage": (progress or {}).get("percent") if busy else None,
                           "ota_psk": None if open_node is None else ("missing: anyone can update it" if open_node
                                                                      else "required")}
    if progress:
        out["ota"] = progress
    return out

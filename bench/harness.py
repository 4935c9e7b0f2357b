"""A bridge with the nodes pipeline on a benchmark's broker: one way to build it for every bench."""

from __future__ import annotations

from typing import Any

from bridge.app import Bridge, build_bridge
from bridge.catalog import validate_config
from bridge.nodes.extension import NodesExtension


def start_nodes_bridge(broker_port: int, base: str, *, mqtt: dict[str, Any] | None = None,
                       nodes: dict[str, Any] | None = None,
                       homeassistant: dict[str, Any] | None = None) -> tuple[Bridge, NodesExtension]:
    """The bridge with the nodes pipeline, and Home Assistant discovery when `homeassistant` is given."""
    raw = {"mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}", "base_topic": base, **(mqtt or {})},
           "nodes": nodes or {}, "bridge": {"health_interval": 3600}}
    extensions = [NodesExtension()]
    if homeassistant is not None:
        from bridge.homeassistant.extension import HomeAssistantExtension
        raw["homeassistant"] = homeassistant
        extensions.append(HomeAssistantExtension())
    config = validate_config(raw, env={})
    bridge = build_bridge(config, extensions=extensions)
    bridge.start()
    if not bridge.mqtt.wait_connected(10):
        raise RuntimeError(f"the bridge did not connect to the broker on port {broker_port}")
    return bridge, bridge.extension("nodes")

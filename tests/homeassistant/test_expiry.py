"""A dead bridge shows as unavailable within a bounded time on any broker, Will or no Will.

NATS and RabbitMQ never publish the Last Will of a client whose cluster node died, so Home
Assistant would show a node's last values frozen. Every entity read from a node's state topic
carries `expire_after` (two offline spans, at least 60 s): a streaming node's state goes out
every beat, so only a silent bridge lets them expire.
"""

from __future__ import annotations

from bridge.core.directory import NodeInfo
from bridge.homeassistant.discovery import node_components
from bridge.homeassistant.extension import expire_after
from bridge.privacy import PrivacyClass
from bridge.topics import Topics


def test_every_entity_read_from_the_node_state_expires_when_it_stops_coming():
    topics = Topics("ruview")
    node = NodeInfo(3, "hall", "Hall", PrivacyClass.ANONYMOUS, offline_after=45.0)
    components = node_components(topics, node, expire_after(node))
    from_state = {k: c for k, c in components.items() if c.get("state_topic") == topics.node("hall")
                  and c["platform"] in ("sensor", "binary_sensor")}
    assert {"presence", "occupancy", "motion", "presence_score", "rssi"} <= set(from_state)
    assert all(c.get("expire_after") == 90 for c in from_state.values()), \
        {k: c.get("expire_after") for k, c in from_state.items()}
    assert expire_after(NodeInfo(4, "x", None, PrivacyClass.ANONYMOUS, offline_after=5.0)) == 60

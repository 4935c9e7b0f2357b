"""A bridge with the nodes extension listening on a free loopback UDP port."""

from __future__ import annotations

import pytest

from bridge.app import Bridge
from bridge.nodes.extension import NodesExtension
from tests.brokers import free_port


@pytest.fixture
def node_bridge(make_config):
    made = []

    def make(broker, **nodes_cfg):
        port = free_port()
        nodes_cfg.setdefault("udp", {"bind": "127.0.0.1", "port": port})
        config = make_config(broker, nodes={"publish_interval": 0.2, **nodes_cfg})
        bridge = Bridge(config, config["mqtt"]["url"])
        ext = NodesExtension(bridge)
        bridge.add(ext)
        bridge.start()
        assert bridge.mqtt.wait_connected(15)
        made.append(bridge)
        return bridge, ext, port

    yield make
    for bridge in made:
        bridge.stop()

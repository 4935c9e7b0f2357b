"""`ruview-node rollout` against a running bridge on a real broker: the node/ota verb over MQTT,
followed until the rollout halts at a node that never comes back (exit 1, one line naming it)."""

from __future__ import annotations

import pytest

from bridge.app import build_bridge
from bridge.nodes.extension import NodesExtension
from bridge.ota import releases
from bridge.ota.extension import OtaExtension
from firmware_tools.cli import main
from firmware_tools.mock_ota import MockOtaNode
from firmware_tools.node_secrets import PskStore
from tests.brokers import free_port, free_port_udp
from tests.polling import wait_until
from tests.tools.images import app_image

PSK = "77" * 32


@pytest.mark.slow
def test_rollout_cli_follows_a_rollout_that_halts(mosquitto, make_config, tmp_path, capsys):
    image = tmp_path / "in.bin"
    image.write_bytes(app_image("2.0.0"))
    releases.add(tmp_path, image)
    udp, node_port = free_port_udp(), free_port()
    nodes = []
    for i, behaviour in ((1, "confirm"), (2, "never_back"), (3, "confirm")):
        PskStore(tmp_path).put(i, PSK)
        nodes.append(MockOtaNode(node_id=i, version="1.0.0", psk=PSK, host=f"127.0.0.{10 + i}", port=node_port,
                                 udp_target=("127.0.0.1", udp), reboot_delay=0.2, reboot_gap=0.5,
                                 on_update=behaviour).start())
    bridge = None
    try:
        assert wait_until(lambda: all(n.frames_sent >= 25 for n in nodes), 10)
        config = make_config(mosquitto, bridge={"state_dir": str(tmp_path)},
                             nodes={"udp": {"bind": "127.0.0.1", "port": udp}},
                             ota={"enabled": True, "node_port": node_port, "timeout": 5, "settle": 0.3,
                                  "batch_size": 1})
        bridge = build_bridge(config, extensions=[NodesExtension(), OtaExtension()])
        bridge.start()
        assert bridge.mqtt.wait_connected(15)
        assert wait_until(lambda: len(bridge.health()["nodes"]["per_node"]) == 3, 10)
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"mqtt:\n  url: {mosquitto.url}\n")
        code = main(["rollout", "--nodes", "node_1,node_2,node_3", "--config", str(cfg)])
        err = capsys.readouterr().err
        assert code == 1, err
        assert "node_1: verified" in err
        assert "halted: node node_2 did not come back within 5 s after taking 2.0.0 (was 1.0.0)" in err
        assert nodes[0].version == "2.0.0" and nodes[2].uploads == 0
    finally:
        if bridge is not None:
            bridge.stop()
        for n in nodes:
            n.stop()

"""The real @ruvnet/rvagent 0.2.0 MCP server (from npm) against the bridge: what an agent reads is what
the bridge publishes on MQTT, through the same privacy gate."""

from __future__ import annotations

from tests.http.mcp import McpClient
from tests.http.test_http_api import http_bridge, recording, replay  # noqa: F401  (fixtures)

TOOLS = {"ruview_presence_now", "ruview_vitals_get_breathing", "ruview_vitals_get_heart_rate",
         "ruview_vitals_get_all", "ruview_bfld_last_scan", "ruview_bfld_subscribe", "ruview_registry_list",
         "ruview_csi_latest"}


def test_an_mcp_agent_reads_presence_vitals_and_scans_of_the_replayed_recording(
        mosquitto, http_bridge, make_probe, recording):  # noqa: F811
    probe = make_probe(mosquitto, "ruview/node/+")
    bridge, base, udp = http_bridge(mosquitto, nodes={"devices": {2: {"privacy_class": "restricted"}}})
    published = replay(bridge, udp, probe, recording)

    agent = McpClient(base)
    try:
        assert agent.initialize()["serverInfo"]["name"]
        listed = {t["name"] for t in agent.request("tools/list")["tools"]}
        assert TOOLS <= listed, TOOLS - listed

        presence = agent.call("ruview_presence_now", {"node_id": "1"})
        assert presence["ok"] is True and presence["node_id"] == "1"
        assert presence["present"] == published["node_1"]["presence"]
        assert presence["n_persons"] == published["node_1"]["persons"]

        breathing = agent.call("ruview_vitals_get_breathing", {"node_id": "1"})
        assert breathing["ok"] and breathing["breathing_rate_bpm"] == published["node_1"]["breathing_bpm"]
        restricted = agent.call("ruview_vitals_get_breathing", {"node_id": "2"})
        assert restricted["ok"] and restricted["breathing_rate_bpm"] is None  # Restricted: never vitals

        scan = agent.call("ruview_bfld_last_scan", {"node_id": "2"})
        assert scan["ok"] and scan["privacy_class"] == "restricted" and scan["identity_risk_score"] is None
        assert scan["n_frames"] == published["node_2"]["persons"]

        registry = agent.call("ruview_registry_list")
        assert registry["ok"] and {c["name"] for c in registry["cogs"] if c["category"] == "node"} == \
            {"node_1", "node_2"}
        assert agent.call("ruview_registry_list", {"category": "plugin"})["cogs"] == []  # none installed

        sub = agent.call("ruview_bfld_subscribe", {"node_id": "1", "duration_s": 30})
        assert sub["ok"] and sub["subscription_id"] and sub["expires_at"] > 0

        default = agent.call("ruview_presence_now")  # no node id: rvagent asks for "default"
        assert default["ok"] is False and "default" in default["error"]  # two nodes, no http.default_node
    finally:
        agent.close()

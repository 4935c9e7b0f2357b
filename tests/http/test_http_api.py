"""The sensing HTTP API on a bridge fed the real recording: the seed's shapes, privacy, access, limits, stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from bridge.app import build_bridge
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.http.extension import HttpExtension
from bridge.nodes.extension import NodesExtension
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import free_port, free_port_udp
from tests.conftest import settled
from tests.nodes.test_recording import load_recording
from tests.nodes.test_replay_e2e import send_all
from tests.polling import wait_until


def get(url: str, token: str | None = None, method: str = "GET", body: bytes | None = None):
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


@pytest.fixture
def http_bridge(make_config):
    made = []

    def make(broker, *, http=None, nodes=None, env=None):
        from bridge.catalog import validate_config
        udp, port = free_port_udp(), free_port()
        raw = {"mqtt": {"url": broker.url, "reconnect": {"min_delay": 0.2, "max_delay": 1.0}},
               "bridge": {"health_interval": 1},
               "nodes": {"publish_interval": 0.2, "udp": {"bind": "127.0.0.1", "port": udp},
                         "reporting": {"refresh": 0}, **(nodes or {})},  # every frame's state on a beat
               "homeassistant": {"collect_seconds": 0.3},
               "http": {"enabled": True, "port": port, **(http or {})}}
        config = validate_config(raw, "test", env=env or {})
        bridge = build_bridge(config, extensions=[NodesExtension(), HomeAssistantExtension(), HttpExtension()])
        bridge.start()
        assert bridge.mqtt.wait_connected(15)
        assert bridge.extension_state["http"]["state"] == "running", bridge.extension_state
        made.append(bridge)
        return bridge, f"http://127.0.0.1:{port}", udp

    yield make
    for bridge in made:
        bridge.stop()


def replay(bridge, udp: int, probe, recording) -> dict:
    """The recording into the bridge, until every node state is published: {node name: state}."""
    nodes = bridge.extension("nodes")
    send_all(udp, recording)
    assert wait_until(lambda: nodes.udp.processed >= len(recording), 20)
    assert wait_until(lambda: all(v.dirty_since is None for v in nodes.pipeline.views.values()), 5)
    settled(bridge)
    probe.flush()
    return {m.topic.rsplit("/", 1)[1]: m.json() for m in probe.messages if m.payload}


@pytest.fixture(scope="module")
def recording():
    return load_recording()


def test_the_seeds_endpoints_answer_from_the_state_the_bridge_publishes(mosquitto, http_bridge, make_probe,
                                                                        recording):
    probe = make_probe(mosquitto, "ruview/node/+")
    bridge, base, udp = http_bridge(mosquitto, nodes={"devices": {2: {"name": "bedroom", "room": "Bedroom",
                                                                      "privacy_class": "restricted",
                                                                      "expected_hours": ["07:00-23:00"]}}})
    published = replay(bridge, udp, probe, recording)

    status, health, headers = get(f"{base}/health")
    assert status == 200 and health["status"] == "ok" and health["nodes"] == {"count": 2, "online": 2}
    assert "default-src 'self'" in headers["Content-Security-Policy"]

    status, v1, _ = get(f"{base}/api/v1/vitals/1/latest")
    state = published["node_1"]
    assert status == 200 and v1["node_id"] == "1" and isinstance(v1["timestamp_ms"], int)
    assert (v1["presence"], v1["n_persons"], v1["motion"]) == (state["presence"], state["persons"], state["motion"])
    assert v1["breathing_rate_bpm"] == state["breathing_bpm"] and v1["heartrate_bpm"] == state["heart_bpm"]
    assert "withheld" not in v1

    status, v2, _ = get(f"{base}/api/v1/vitals/bedroom/latest")  # by name; the restricted node
    assert status == 200 and v2["node_id"] == "2" and v2["privacy_class"] == "restricted"
    assert v2["breathing_rate_bpm"] is None and v2["heartrate_bpm"] is None
    assert set(v2["withheld"]) == {"breathing_rate_bpm", "heartrate_bpm"} and "rule 3" in v2["withheld"]["heartrate_bpm"]
    assert v2["n_persons"] == published["bedroom"]["persons"]

    status, scan, _ = get(f"{base}/api/v1/bfld/2/last_scan")
    assert status == 200 and scan["identity_risk_score"] is None and scan["privacy_class"] == "restricted"
    assert scan["timestamp_ns"] == v2["timestamp_ms"] * 1_000_000 and scan["person_count"] == v2["n_persons"]

    for method in ("GET", "POST"):  # rvagent 0.2.0 sends GET; the seed's server took POST
        status, sub, _ = get(f"{base}/api/v1/bfld/1/subscribe?duration_s=30", method=method,
                             body=b"" if method == "POST" else None)
        assert status == 200 and sub["node_id"] == "1" and sub["duration_s"] == 30
        assert sub["subscription_id"] and sub["endpoint_hint"] == "/api/v1/events/stream?node=node_1"
    assert get(f"{base}/api/v1/bfld/1/subscribe?duration_s=99999")[0] == 400

    status, sem, _ = get(f"{base}/api/v1/semantic-events/bedroom/latest")
    assert status == 200 and sem["schedule_aware"] is True and "anomaly_score" in sem["redacted_fields"]
    assert set(sem["events"]) == {"unknown_presence", "unexpected_occupancy", "unrecognized_activity_pattern"}
    assert get(f"{base}/api/v1/semantic-events/1/latest")[1]["schedule_aware"] is False

    status, latest, _ = get(f"{base}/api/v1/sensing/latest")
    assert status == 200 and latest["schema_version"] == 2 and latest["window"] is None
    assert "raw CSI" in latest["withheld"][0]
    assert [n["name"] for n in latest["nodes"]] == ["node_1", "bedroom"]
    assert "breathing_bpm" not in latest["nodes"][1]

    status, reg, _ = get(f"{base}/api/v1/edge/registry")
    assert status == 200 and reg["registry"]["plugins"] == [] and len(reg["registry"]["nodes"]) == 2
    assert [c["category"] for c in reg["registry"]["cogs"]] == ["node", "node"]
    assert {"fetched_at", "ttl_seconds", "stale", "upstream_url", "upstream_sha256"} <= set(reg)

    status, err, _ = get(f"{base}/api/v1/vitals/default/latest")  # two nodes and no default_node
    assert status == 404 and "node_1 (1), bedroom (2)" in err["error"]
    status, err, _ = get(f"{base}/api/v1/vitals/kitchen/latest")
    assert status == 404 and "no node 'kitchen'" in err["error"]
    status, err, _ = get(f"{base}/api/v1/nothing")
    assert status == 404 and err["status"] == 404

    # not a byte of raw CSI in any answer
    blob = json.dumps([get(f"{base}{p}")[1] for p in ("/api/v1/sensing/latest", "/api/v1/vitals/1/latest",
                                                       "/api/v1/status")]).encode()
    iq = [d.data[20:32] for d in recording if d.data[:4] == b"\x01\x00\x11\xc5"][:500]
    assert not [w for w in iq if w.hex().encode() in blob]


def test_default_means_the_configured_node_or_the_only_one(mosquitto, http_bridge):
    bridge, base, udp = http_bridge(mosquitto, http={"default_node": "node_4"})
    send_udp(generate(make_nodes(2, "empty", 3, first_id=3), 3), "127.0.0.1", udp, speed=0)
    assert wait_until(lambda: get(f"{base}/api/v1/vitals/default/latest")[0] == 200, 5)
    assert get(f"{base}/api/v1/vitals/default/latest")[1]["name"] == "node_4"


def test_a_token_guards_every_answer_and_a_wrong_one_gets_401(mosquitto, http_bridge):
    bridge, base, udp = http_bridge(mosquitto, env={"RUVIEW_API_TOKEN": "s3cret-token-for-agents"})
    assert get(f"{base}/health")[0] == 401
    status, body, _ = get(f"{base}/api/v1/vitals/1/latest", token="wrong")
    assert status == 401 and "bearer token" in body["error"] and "s3cret" not in json.dumps(body)
    assert get(f"{base}/health", token="s3cret-token-for-agents")[0] == 200
    request = urllib.request.Request(f"{base}/api/v1/status", headers={"Cookie": "ruview_token=s3cret-token-for-agents"})
    with urllib.request.urlopen(request, timeout=5) as r:  # the status page's cookie works too
        assert r.status == 200
    with urllib.request.urlopen(f"{base}/", timeout=5) as r:  # the page shell itself is open; its data is not
        assert r.status == 200 and b"RuView bridge" in r.read()
    assert bridge.health()["http"]["unauthorized"] >= 2


def test_a_non_loopback_bind_without_a_token_refuses_to_start(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("http:\n  enabled: true\n  bind: 0.0.0.0\n")
    env = {k: v for k, v in os.environ.items() if k != "RUVIEW_API_TOKEN"}
    for command in ("check-config", "run"):
        out = subprocess.run([sys.executable, "-m", "bridge", command, "-c", str(cfg)], capture_output=True,
                             text=True, env=env, timeout=20)
        assert out.returncode == 2 and "http.bind: listening on 0.0.0.0 (beyond this host) requires a token" \
            in out.stderr, out.stderr
    cfg.write_text("http:\n  enabled: true\n  bind: 0.0.0.0\n  token: abc\n")
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config", "-c", str(cfg)], capture_output=True,
                         text=True, env=env, timeout=20)
    assert out.returncode == 2 and "http.token: not taken from a file" in out.stderr and "abc" not in out.stderr
    cfg.write_text("http:\n  enabled: true\n  bind: 0.0.0.0\n")
    out = subprocess.run([sys.executable, "-m", "bridge", "check-config", "-c", str(cfg)], capture_output=True,
                         text=True, timeout=20, env={**env, "RUVIEW_API_TOKEN": "abcdef"})
    assert out.returncode == 0, out.stderr  # with the token in the environment it may listen beyond


def test_request_rate_and_body_are_capped(mosquitto, http_bridge):
    bridge, base, udp = http_bridge(mosquitto, http={"rate_limit": 5})
    codes = [get(f"{base}/health")[0] for _ in range(20)]
    assert codes.count(200) >= 10 and 429 in codes  # a burst of twice the rate, then refused
    assert bridge.health()["http"]["rate_limited"] >= 1
    bridge, base, udp = http_bridge(mosquitto, http={"max_body": 1024})
    send_udp(generate(make_nodes(1, "empty", 2), 2), "127.0.0.1", udp, speed=0)
    assert wait_until(lambda: get(f"{base}/api/v1/vitals/1/latest")[0] == 200, 10)
    status, body, _ = get(f"{base}/api/v1/bfld/1/subscribe", method="POST", body=b"x" * 5000)
    assert status == 413


def test_the_event_stream_carries_node_events_and_state_as_they_happen(mosquitto, http_bridge):
    bridge, base, udp = http_bridge(mosquitto)
    lines: list[str] = []
    connected = threading.Event()

    def listen():
        with urllib.request.urlopen(f"{base}/api/v1/events/stream?node=node_1", timeout=30) as r:
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith(": connected"):
                    connected.set()
                lines.append(line)
                # node state is coalesced (at most 4 a second per node), so it may come after the events
                if any('"presence_cleared"' in seen for seen in lines) and "event: node_state" in lines:
                    return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert connected.wait(5)
    send_udp(generate(make_nodes(2, "visit", 60), 60), "127.0.0.1", udp, speed=0)  # node 2 is filtered out
    reader.join(20)
    kinds = [line.split(": ", 1)[1] for line in lines if line.startswith("event: ")]
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert "node_state" in kinds and "node_event" in kinds
    events = [d["event_type"] for d in data if "event_type" in d]
    assert "unknown_presence" in events and events[-1] == "presence_cleared"
    assert all(d.get("name", d.get("node")) == "node_1" for d in data)

"""Bridge request API over a real broker."""

from __future__ import annotations

from bridge.core.api import ApiError
from tests.conftest import served


def test_health_check_info_and_transaction(broker, make_bridge, make_probe):
    make_bridge(broker)
    probe = make_probe(broker, "ruview/bridge/response/#")
    probe.publish("ruview/bridge/request/health_check", {"transaction": "t-1"})
    r = probe.wait_topic("ruview/bridge/response/health_check").json()
    assert r == {"status": "ok", "data": {"healthy": True}, "transaction": "t-1"}
    probe.publish("ruview/bridge/request/info", b"")
    info = probe.wait_topic("ruview/bridge/response/info").json()
    assert info["status"] == "ok" and "transaction" not in info
    assert info["data"]["base_topic"] == "ruview"


def test_malformed_and_unknown_requests_get_errors_and_bridge_keeps_serving(broker, make_bridge,
                                                                            make_probe):
    bridge = make_bridge(broker)
    bridge.api.register("boom", lambda req: (_ for _ in ()).throw(RuntimeError("kaput")))
    bridge.api.register("refuse", lambda req: (_ for _ in ()).throw(ApiError("not today")))
    probe = make_probe(broker, "ruview/bridge/response/#")
    probe.publish("ruview/bridge/request/health_check", b'{"transaction": 1,')
    bad = probe.wait_topic("ruview/bridge/response/health_check").json()
    assert bad["status"] == "error" and "not valid JSON" in bad["error"]
    probe.publish("ruview/bridge/request/no/such/verb", {"transaction": 2})
    unknown = probe.wait_topic("ruview/bridge/response/no/such/verb").json()
    assert unknown["status"] == "error" and unknown["transaction"] == 2
    probe.publish("ruview/bridge/request/boom", {})
    assert "kaput" in probe.wait_topic("ruview/bridge/response/boom").json()["error"]
    probe.publish("ruview/bridge/request/refuse", {})
    assert probe.wait_topic("ruview/bridge/response/refuse").json()["error"] == "not today"
    probe.clear()
    probe.publish("ruview/bridge/request/health_check", {"transaction": 3})
    ok = probe.wait_topic("ruview/bridge/response/health_check").json()
    assert ok["status"] == "ok" and ok["transaction"] == 3


def test_retained_requests_are_ignored(broker, make_bridge, make_probe):
    probe = make_probe(broker, "ruview/bridge/response/#")
    probe.publish("ruview/bridge/request/restart", {}, retain=True)
    bridge = make_bridge(broker)
    served(probe, bridge)
    assert not bridge.restart_requested.is_set()
    assert not probe.on("ruview/bridge/response/restart")
    probe.publish("ruview/bridge/request/restart", b"", retain=True)


def test_restart_answers_then_requests_restart(broker, make_bridge, make_probe):
    bridge = make_bridge(broker)
    probe = make_probe(broker, "ruview/bridge/response/#")
    probe.publish("ruview/bridge/request/restart", {"transaction": 9})
    assert probe.wait_topic("ruview/bridge/response/restart").json()["status"] == "ok"
    assert bridge.restart_requested.wait(3)

"""A persistent session (`mqtt.session_expiry`): requests sent while the bridge is away are answered
when it returns (issue 32).

On Mosquitto, with the connection cut (tests/tcp_gate.py) or the bridge process killed and started
again: the broker keeps the bridge's session under its stable client id (kept in the state store)
and delivers the QoS 1 request it queued. Without a session the request is lost, which is what
these tests show for `session_expiry: 0`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from bridge.app import build_bridge
from bridge.core.store import StateStore
from tests.brokers import free_port_udp
from tests.conftest import served
from tests.polling import wait_until
from tests.tcp_gate import TcpGate

RESPONSE = "ruview/bridge/response/health_check"


def ask(probe, tx: str) -> None:
    probe.publish("ruview/bridge/request/health_check", {"transaction": tx}, qos=1)


def answered(probe, tx: str) -> bool:
    return any(m.json().get("transaction") == tx for m in probe.on(RESPONSE))


@pytest.mark.parametrize("protocol,expiry", [("5", 300), ("3.1.1", 300), ("5", 0)])
def test_a_request_sent_while_the_link_is_cut_is_answered_when_it_returns(mosquitto, make_config, make_probe,
                                                                          protocol, expiry):
    gate = TcpGate(mosquitto.port)
    via_gate = type("Via", (), {"url": f"mqtt://127.0.0.1:{gate.port}", "supports_v5": True})()
    config = make_config(via_gate, mqtt={"protocol": protocol, "session_expiry": expiry})
    bridge = build_bridge(config, extensions=[])
    probe = make_probe(mosquitto, RESPONSE)
    try:
        bridge.start()
        assert bridge.mqtt.wait_connected(10)
        served(probe, bridge)
        subscribes = bridge.mqtt.counters.subscribes
        gate.shut()
        assert wait_until(lambda: not bridge.mqtt.connected, 5)
        ask(probe, "while-away")
        gate.open()
        assert bridge.mqtt.wait_connected(10)
        served(probe, bridge)  # the bridge is back and answering
        if expiry:
            probe.wait_for(lambda _m: answered(probe, "while-away"), 5, "the answer to the request sent while away")
            assert bridge.mqtt.counters.subscribes == subscribes, "the resumed session has its filters"
        else:
            assert not answered(probe, "while-away"), "a clean session has nothing queued"
            assert bridge.mqtt.counters.subscribes > subscribes, "a clean session is subscribed again"
        assert bridge.mqtt.stats()["connects"] == 2
    finally:
        bridge.stop()
        gate.close()


@pytest.mark.slow
def test_a_request_sent_while_the_bridge_was_killed_is_answered_after_its_restart(mosquitto, make_probe, tmp_path):
    config = tmp_path / "config.yaml"
    state = tmp_path / "state"
    config.write_text(f"mqtt:\n  url: {mosquitto.url}\n  session_expiry: 300\n"
                      f"  reconnect: {{min_delay: 0.2, max_delay: 1}}\n"
                      f"bridge:\n  state_dir: {state}\n"
                      f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {free_port_udp()}\n")
    probe = make_probe(mosquitto, RESPONSE, "ruview/bridge/state")

    def run() -> subprocess.Popen:
        probe.clear()
        bridge = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config), "--no-status"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        probe.wait_for(lambda ms: any(m.topic == "ruview/bridge/state" and m.json()["state"] == "online"
                                      and not m.retain for m in ms), 30, "the bridge online")
        return bridge

    first = run()
    try:
        ask(probe, "before")
        probe.wait_for(lambda _m: answered(probe, "before"), 10, "an answer before the kill")
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        probe.wait_for(lambda ms: any(m.topic == "ruview/bridge/state" and m.json()["state"] == "offline"
                                      for m in ms), 10, "the Will: the broker saw the bridge go")
        ask(probe, "while-dead")
        time.sleep(0.2)  # the scenario: the bridge stays away a moment
        second = run()
        try:
            probe.wait_for(lambda _m: answered(probe, "while-dead"), 15, "the request sent while it was dead")
        finally:
            second.terminate()
            second.wait(15)
    finally:
        if first.poll() is None:
            first.kill()
    store = StateStore.in_dir(state)
    kept = store.scope("mqtt").get("client_id")
    store.close()
    assert kept and kept.startswith("ruview-"), kept
    assert f"as {kept}" in (mosquitto.workdir / "broker.log").read_text(), "both runs used the stored id"

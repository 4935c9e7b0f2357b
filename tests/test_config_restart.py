"""`restart` reads the config file first: a file that cannot be trusted is answered with its
problems and the running bridge goes on (issue 33, finding 5). Run as users run it: a bridge
process on a config file, requests from another MQTT client."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.brokers import free_port_udp
from tests.mqtt_probe import Probe

CLI = [sys.executable, "-m", "bridge"]
# 657 bytes that expand to millions of values: each level refers to the one before nine times
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def _config(broker, udp: int) -> str:
    return (f"mqtt:\n  url: {broker.url}\nbridge:\n  health_interval: 1\n"
            f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {udp}\n")


def _restart(probe: Probe, n: int) -> dict:
    probe.publish("ruview/bridge/request/restart", {"transaction": n})
    return probe.wait_topic("ruview/bridge/response/restart", 10,
                            match=lambda m: m.json().get("transaction") == n).json()


def _run_id(probe: Probe) -> str:
    return probe.wait_topic("ruview/bridge/health", 10).json()["run"]


@pytest.mark.slow
def test_restart_with_a_broken_empty_or_exploding_file_is_refused_and_the_bridge_runs_on(mosquitto, tmp_path):
    cfg = tmp_path / "config.yaml"
    udp = free_port_udp()
    cfg.write_text(_config(mosquitto, udp))
    proc = subprocess.Popen([*CLI, "run", "-c", str(cfg), "--no-status"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    probe = Probe(mosquitto.port)
    try:
        probe.subscribe("ruview/bridge/response/#", "ruview/bridge/health", "ruview/bridge/info")
        first = _run_id(probe)
        for n, (text, said) in enumerate([
                ("mqtt: [unclosed\n", "invalid YAML"),
                ("", "is empty"),
                ("# only a comment\n", "is empty"),
                (ALIAS_BOMB, "expands to over"),
                ("x" * (2 << 20), "is over"),
                ("big: &s " + "y" * 500_000 + "\nmany: [" + ", ".join(["*s"] * 20) + "]\n", "expands to over"),
                ("deep: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
                ("deep: " + "[" * 100 + "]" * 100 + "\n", "expands to over"),
                ("mqtt:\n  url: 42\n", "mqtt.url")], start=1):
            cfg.write_text(text)
            answer = _restart(probe, n)
            assert answer["status"] == "error" and str(cfg) in answer["error"] and said in answer["error"], answer
            assert "running configuration is kept" in answer["error"]
        probe.clear()
        assert _run_id(probe) == first, "the same run goes on: nothing restarted"
        cfg.write_text(_config(mosquitto, udp) + "  publish_interval: 2\n")
        assert _restart(probe, 99)["status"] == "ok"
        probe.clear()
        assert probe.wait_for(lambda ms: any(m.topic == "ruview/bridge/health" and m.json()["run"] != first
                                             for m in ms), 20, "a new run after the good restart")
        assert proc.poll() is None
    finally:
        probe.close()
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "Traceback" not in out, out[-3000:]


def test_an_empty_or_exploding_config_file_stops_run_with_one_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    for text, said in (("", "is empty"), (ALIAS_BOMB, "expands to over")):
        cfg.write_text(text)
        out = subprocess.run([*CLI, "run", "-c", str(cfg), "--no-status"], capture_output=True, text=True,
                             timeout=30)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and str(cfg) in lines[0] and said in lines[0], out.stderr


@pytest.mark.slow
def test_a_restart_into_a_configuration_that_cannot_start_goes_on_with_the_one_that_ran(mosquitto, tmp_path):
    import socket
    cfg = tmp_path / "config.yaml"
    udp = free_port_udp()
    cfg.write_text(_config(mosquitto, udp))
    proc = subprocess.Popen([*CLI, "run", "-c", str(cfg), "--no-status"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    probe = Probe(mosquitto.port)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.subscribe("ruview/bridge/response/#", "ruview/bridge/health")
        first = _run_id(probe)
        taken.bind(("127.0.0.1", 0))
        cfg.write_text(_config(mosquitto, taken.getsockname()[1]))  # valid, but its UDP port is another's
        assert _restart(probe, 1)["status"] == "ok"
        probe.clear()
        assert probe.wait_for(lambda ms: any(m.topic == "ruview/bridge/health" and m.json()["run"] != first
                                             and m.json()["extensions"]["nodes"]["state"] == "running"
                                             for m in ms), 30, "running again, on the configuration that ran")
        assert proc.poll() is None
    finally:
        taken.close()
        probe.close()
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "the new configuration could not start" in out and "Traceback" not in out, out[-3000:]

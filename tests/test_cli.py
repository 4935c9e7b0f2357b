"""`ruview-bridge` as a user runs it: a real process, real signals, real brokers."""

from __future__ import annotations

import ctypes
import os
import threading
import time
import signal
import subprocess
import sys

import pytest

from bridge import __version__
from tests.brokers import free_port, free_port_udp, wait_port
from tests.mqtt_probe import Probe
from tests.polling import wait_until

CLI = [sys.executable, "-m", "bridge"]


def run_cli(*args, cwd=None, env=None, timeout=20):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"ruview-bridge {__version__}"


def test_check_config_accepts_the_shipped_config():
    root = os.path.dirname(os.path.dirname(__file__))
    out = run_cli("check-config", "-c", os.path.join(root, "config.yaml"))
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


@pytest.mark.parametrize("content,expected", [
    ("mqtt:\n  embedded:\n    port: abc\n", 'mqtt.embedded.port: expected a whole number 1..65535, got "abc"'),
    ("mqtt:\n  protocl: 5\n", "mqtt.protocl: unknown key (did you mean 'protocol'?)"),
    ("mqtt:\n  url: http://x\n", "mqtt.url: expected auto, mqtt://host[:port] or mqtts://host[:port]"),
    ("mqtt: [1, 2\n", "invalid YAML"),
    ("nodes:\n  devices:\n    7:\n      name: lab\n      privacy_class: raw\n",
     "nodes.devices.7.privacy_class: node 7 (lab) is raw (0); only anonymous (2) or restricted (3) "
     "may leave this host (privacy rule 2)"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    for command in ("check-config", "run"):
        out = run_cli(command, "-c", str(path))
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], out.stderr


def test_unreadable_config_exits_2(tmp_path):
    out = run_cli("run", "-c", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    assert "missing.yaml: cannot read" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def _start_bridge(config_text: str, tmp_path, env=None) -> subprocess.Popen:
    """`ruview-bridge run` on a config file; the nodes listen on a free UDP port, never 5005."""
    cfg = tmp_path / "config.yaml"
    if "nodes:" not in config_text:
        config_text += f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {free_port_udp()}\n"
    cfg.write_text(config_text)
    return subprocess.Popen([*CLI, "run", "-c", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def test_auto_starts_embedded_broker_and_sigint_publishes_offline(tmp_path):
    port = free_port()
    proc = _start_bridge(f"mqtt:\n  embedded:\n    port: {port}\n", tmp_path)
    try:
        wait_port(port, 20)
        probe = Probe(port).subscribe("ruview/#")
        assert probe.wait_topic("ruview/bridge/state", 10).json() == {"state": "online"}
        info = probe.wait_topic("ruview/bridge/info").json()
        assert info["broker"]["embedded"] is True and info["broker"]["protocol"] == "5"
        proc.send_signal(signal.SIGINT)
        probe.wait_topic("ruview/bridge/state", 10,
                         match=lambda m: m.json() == {"state": "offline"})
        probe.close()
        assert proc.wait(15) == 0
    finally:
        proc.kill()
    out = proc.stdout.read()
    assert "started the embedded broker" in out
    assert "(embedded)" in out


def test_auto_uses_a_broker_that_already_answers(mosquitto, tmp_path):
    proc = _start_bridge(f"mqtt:\n  embedded:\n    port: {mosquitto.port}\n", tmp_path)
    try:
        probe = Probe(mosquitto.port).subscribe("ruview/bridge/info")
        info = probe.wait_topic("ruview/bridge/info", 15).json()
        assert info["broker"]["embedded"] is False and info["broker"]["protocol"] == "5"
        probe.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        proc.kill()


def _signal_thread(pid: int, thread: str, sig: int) -> None:
    """Deliver `sig` to one named thread of process `pid` (Linux tgkill), as the kernel may
    deliver a signal sent to the whole process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "tgkill"):
        pytest.skip("needs glibc's tgkill")
    def named_threads() -> dict[str, int]:
        tids = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    tids[f.read().strip()] = int(tid)
            except OSError:  # the thread ended
                pass
        return tids
    assert wait_until(lambda: thread in named_threads(), 15), named_threads()  # extensions start after "online"
    tids = named_threads()
    assert libc.tgkill(pid, tids[thread], sig) == 0, ctypes.get_errno()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals one thread through /proc and tgkill")
def test_a_sigterm_that_lands_on_another_thread_stops_the_bridge(mosquitto, tmp_path):
    """The kernel delivered it to the UDP ingest thread (as it may deliver a SIGTERM sent to the
    process): before bridge/stop_signals.py the main thread never woke and the bridge ran on."""
    proc = _start_bridge(f"mqtt:\n  url: {mosquitto.url}\n", tmp_path)
    try:
        probe = Probe(mosquitto.port).subscribe("ruview/bridge/state")
        probe.wait_topic("ruview/bridge/state", 15, match=lambda m: m.json()["state"] == "online")
        _signal_thread(proc.pid, "nodes-udp-inges", signal.SIGTERM)
        assert proc.wait(15) == 0
        assert probe.wait_topic("ruview/bridge/state", 5, match=lambda m: m.json()["state"] == "offline")
        probe.close()
    finally:
        proc.kill()
    assert "stopped" in proc.stdout.read()


def test_restart_request_restarts_the_running_process(mosquitto, tmp_path):
    proc = _start_bridge(f"mqtt:\n  url: {mosquitto.url}\n", tmp_path)
    try:
        probe = Probe(mosquitto.port).subscribe("ruview/bridge/#")
        probe.wait_topic("ruview/bridge/state", 15, match=lambda m: m.json()["state"] == "online")
        probe.clear()
        probe.publish("ruview/bridge/request/restart", {"transaction": 1})
        assert probe.wait_topic("ruview/bridge/response/restart").json()["status"] == "ok"
        probe.wait_for(
            lambda ms: [m.json()["state"] for m in ms if m.topic == "ruview/bridge/state"]
            == ["offline", "online"], 15, "offline then online")
        assert proc.poll() is None
        probe.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        proc.kill()
    assert "restarting on request" in proc.stdout.read()


def test_killed_bridge_leaves_offline_via_last_will(mosquitto, tmp_path):
    proc = _start_bridge(f"mqtt:\n  url: {mosquitto.url}\n  keepalive: 5\n", tmp_path)
    try:
        probe = Probe(mosquitto.port).subscribe("ruview/bridge/state")
        probe.wait_topic("ruview/bridge/state", 15, match=lambda m: m.json()["state"] == "online")
        proc.send_signal(signal.SIGKILL)
        probe.wait_topic("ruview/bridge/state", 15, match=lambda m: m.json()["state"] == "offline")
        probe.close()
    finally:
        proc.kill()


def test_password_from_environment_guards_embedded_broker_and_stays_secret(tmp_path):
    port = free_port()
    secret = "env-Secret-4242"
    proc = _start_bridge(f"mqtt:\n  username: bridge\n  embedded:\n    port: {port}\n"
                         "bridge:\n  log_level: debug\n", tmp_path,
                         env={"RUVIEW_MQTT_PASSWORD": secret})
    try:
        wait_port(port, 20)
        with pytest.raises(TimeoutError):
            Probe(port, connect_timeout=2)  # anonymous: refused
        with pytest.raises(TimeoutError):
            Probe(port, username="bridge", password="wrong", connect_timeout=2)
        probe = Probe(port, username="bridge", password=secret).subscribe("#")
        info = probe.wait_topic("ruview/bridge/info", 10).json()
        assert info["config"]["mqtt"]["password"] == "***"
        assert all(secret.encode() not in m.payload for m in probe.messages)
        probe.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        out = proc.stdout.read()
    assert "connected to MQTT broker" in out
    assert secret not in out
    assert secret not in " ".join(proc.args)


def test_check_config_prints_every_mistake_on_its_own_line_and_never_a_secret(tmp_path):
    path = tmp_path / "three.yaml"
    path.write_text("mqtt:\n  url: mqtt://ruview:TopSecret@broker.lan\n  password: TopSecret\n"
                    "  tls:\n    ca: /etc/ruview/missing-ca.pem\n"
                    "nodes:\n  offline_after: soon\n")
    for command in ("check-config", "run"):
        out = run_cli(command, "-c", str(path), env={"RUVIEW_MQTT_PASSWORD": ""})
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 3, out.stderr
        assert all(line.startswith(f"ruview-bridge: {path}: ") for line in lines)
        assert "mqtt.url: expected a URL without credentials" in lines[0]
        assert 'mqtt.tls.ca: expected a file that exists (no such file), got "/etc/ruview/missing-ca.pem"' in lines[1]
        assert 'nodes.offline_after: expected a number 1..86400, got "soon"' in lines[2]
        assert "TopSecret" not in out.stderr + out.stdout


def test_the_console_shows_frames_apart_from_mqtt_and_says_what_nodes_do(mosquitto, tmp_path):
    import pty
    import re
    import select
    from firmware_tools.simulate import generate, make_nodes, send_udp
    from tests.brokers import free_port_udp

    udp = free_port_udp()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"mqtt:\n  url: {mosquitto.url}\nnodes:\n  offline_after: 2\n  udp:\n    bind: 127.0.0.1\n"
                   f"    port: {udp}\n  presence:\n    warmup: 2\n")
    master, slave = pty.openpty()  # a terminal: the status line is drawn
    proc = subprocess.Popen([*CLI, "run", "-c", str(cfg)], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""

    def read_for(seconds):
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    return

    try:
        read_for(3)
        sender = threading.Thread(target=send_udp, args=(generate(make_nodes(3, "visit", 8), 8), "127.0.0.1", udp),
                                  kwargs={"speed": 1})
        sender.start()
        read_for(6)
        sender.join()
        read_for(5)  # silence: the nodes go offline
    finally:
        proc.send_signal(signal.SIGINT)
        read_for(3)
        proc.wait(15)
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out.decode("utf-8", "replace"))
    rates = [float(x) for x in re.findall(r"frames (\d+\.\d)/s", text)]
    assert rates and max(rates) > 10, text[-1500:]  # ~16 frames/s from three nodes at 5 Hz
    assert re.search(r"MQTT in \d+\.\d/s out \d+\.\d/s", text)
    assert "nodes 3/3 online" in text
    for node_id in (1, 2, 3):
        assert f"node node_{node_id} ({node_id}) joined from 127.0.0.1" in text
        assert f"node node_{node_id} ({node_id}) went offline" in text
    assert "node_1: presence" in text

"""Operator basics (issue 34): a feature that cannot start stops `run`; nodes go offline at a stop;
the node list and the log on MQTT; the first `bridge/info` never says a starting feature is stopped.

Two boards with one node id are tests/nodes/test_node_conflict.py.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from bridge.app import build_bridge
from bridge.console import file_handler
from bridge.extension import Extension
from bridge.nodes.extension import NodesExtension
from firmware_tools.simulate import generate, make_nodes
from tests.brokers import free_port, free_port_udp
from tests.conftest import served, settled
from tests.mqtt_probe import Probe
from tests.polling import wait_until

CLI = [sys.executable, "-m", "bridge"]
# `ruview-bridge run` on a host without a default route: HAP-python finds "this host's address"
# by routing toward 8.8.8.8, which then fails as it does there
NO_ROUTE = [sys.executable, "-c", (
    "import errno, sys, pyhap.util\n"
    "def no_route():\n"
    "    raise OSError(errno.ENETUNREACH, 'Network is unreachable')\n"
    "pyhap.util.get_local_address = no_route\n"
    "from bridge.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n")]


def _config(tmp_path, text: str) -> str:
    """A config file whose nodes listen on a free UDP port (never 5005) unless it says otherwise."""
    if "nodes:" not in text:
        text += f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {free_port_udp()}\n"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def _run(command: list[str], config: str, timeout: float = 30) -> tuple[int, str]:
    proc = subprocess.Popen([*command, "run", "-c", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
        pytest.fail(f"ruview-bridge run went on without the feature:\n{out}")
    return proc.returncode, out


def _taken_tcp() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


# ------------------------------------------------------------ 1. a feature that cannot start


def test_a_taken_http_port_stops_run_with_exit_2_and_one_line_naming_the_key(mosquitto, tmp_path):
    with _taken_tcp() as taken:
        port = taken.getsockname()[1]
        code, out = _run(CLI, _config(tmp_path, f"mqtt:\n  url: {mosquitto.url}\n"
                                                f"http:\n  enabled: true\n  bind: 127.0.0.1\n  port: {port}\n"))
    assert code == 2, out
    said = [line for line in out.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(said) == 1, out
    assert f"http: cannot listen on 127.0.0.1:{port}: address in use; set http.port" in said[0]
    assert "bridge.keep_running_without" in said[0] and "ERROR" in said[0]
    assert "Traceback" not in out


def test_a_taken_udp_port_stops_run_with_exit_2(mosquitto, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        code, out = _run(CLI, _config(tmp_path, f"mqtt:\n  url: {mosquitto.url}\n"
                                                f"nodes:\n  udp:\n    bind: 127.0.0.1\n    port: {port}\n"))
    assert code == 2, out
    said = [line for line in out.splitlines() if f"UDP 127.0.0.1:{port}" in line]
    assert len(said) == 1 and said[0].split(": ", 1)[1].startswith("nodes: cannot listen"), out
    assert "set nodes.udp.port" in said[0] and "Traceback" not in out


def test_homekit_without_a_default_route_says_to_set_its_address(mosquitto, tmp_path):
    code, out = _run(NO_ROUTE, _config(tmp_path, f"mqtt:\n  url: {mosquitto.url}\n"
                                                 f"bridge:\n  state_dir: {tmp_path / 'state'}\n"
                                                 f"homekit:\n  enabled: true\n  port: {free_port()}\n"
                                                 "  advertise: false\n"))
    assert code == 2, out
    said = [line for line in out.splitlines() if "homekit:" in line and "ERROR" in line]
    assert len(said) == 1 and "Network is unreachable" in said[0] and "set homekit.address" in said[0], out
    assert "AttributeError" not in out and "Traceback" not in out


def test_a_feature_in_keep_running_without_fails_with_a_warning_and_the_bridge_runs_on(mosquitto, tmp_path):
    with _taken_tcp() as taken:
        port = taken.getsockname()[1]
        config = _config(tmp_path, f"mqtt:\n  url: {mosquitto.url}\nbridge:\n  keep_running_without: [http]\n"
                                   f"http:\n  enabled: true\n  bind: 127.0.0.1\n  port: {port}\n")
        probe = Probe(mosquitto.port).subscribe("ruview/bridge/info")
        proc = subprocess.Popen([*CLI, "run", "-c", config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            info = probe.wait_topic("ruview/bridge/info", 20,
                                    match=lambda m: m.json()["extensions"].get("http") == "failed").json()
            assert info["extensions"]["nodes"] == "running"
            assert proc.poll() is None, "the bridge stopped though http may fail"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(15) == 0
        finally:
            proc.kill()
            probe.close()
    out = proc.stdout.read()
    said = [line for line in out.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(said) == 1 and "WARNING" in said[0] and "running without http" in said[0], out
    assert "Traceback" not in out


def test_keep_running_without_names_features_only(tmp_path):
    out = subprocess.run([*CLI, "check-config", "-c", _config(tmp_path, "bridge:\n  keep_running_without: [htpp]\n")],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2
    assert "bridge.keep_running_without: 'htpp' is not a feature" in out.stderr and "http" in out.stderr


def test_a_homekit_that_could_not_start_stops_without_an_attribute_error(mosquitto, make_config, monkeypatch,
                                                                         tmp_path, caplog):
    import pyhap.util
    from bridge.homekit.extension import HomeKitExtension

    def no_route() -> str:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(pyhap.util, "get_local_address", no_route)
    config = make_config(mosquitto, bridge={"state_dir": str(tmp_path), "keep_running_without": ["homekit"]},
                         homekit={"enabled": True, "port": free_port(), "advertise": False})
    bridge = build_bridge(config, extensions=[HomeKitExtension()])
    bridge.start()
    try:
        state = bridge.extension_state["homekit"]
        assert state["state"] == "failed" and "set homekit.address" in state["error"], state
        assert bridge.unstartable == []  # listed in keep_running_without
    finally:
        bridge.stop()
    assert not [r for r in caplog.records if r.exc_info or "AttributeError" in r.getMessage()], caplog.text


# ------------------------------------------------------------ 2. nodes offline at a clean stop


def _stream(port: int, seconds: float, sock: socket.socket, *, first_id: int = 1, count: int = 2,
            start: float = 0.0, until: float | None = None) -> int:
    """Frames of `count` nodes from one socket, as fast as possible: those from `start` s until `until`."""
    sent = 0
    for t, data in generate(make_nodes(count, "empty", seconds, first_id=first_id), seconds):
        if start <= t < (seconds if until is None else until):
            sock.sendto(data, ("127.0.0.1", port))
            sent += 1
    return sent


def test_a_clean_stop_says_every_node_is_offline_before_the_bridge(mosquitto, make_config, make_probe):
    udp = free_port_udp()
    config = make_config(mosquitto, nodes={"udp": {"bind": "127.0.0.1", "port": udp}, "publish_interval": 0.2})
    bridge = build_bridge(config, extensions=[NodesExtension()])
    probe = make_probe(mosquitto, "ruview/node/+/availability", "ruview/bridge/state")
    bridge.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            assert bridge.mqtt.wait_connected(15)
            _stream(udp, 3, sock)
            for node in ("node_1", "node_2"):
                probe.wait_topic(f"ruview/node/{node}/availability", 10,
                                 match=lambda m: m.json() == {"state": "online"})
        finally:
            bridge.stop()
    messages = probe.wait_for(lambda ms: any(m.topic == "ruview/bridge/state" and m.json()["state"] == "offline"
                                             for m in ms), 10, "the bridge's offline")
    said = [(m.topic, m.json()["state"]) for m in messages]
    bridge_offline = said.index(("ruview/bridge/state", "offline"))
    for node in ("node_1", "node_2"):
        topic = f"ruview/node/{node}/availability"
        assert (topic, "offline") in said[:bridge_offline], said
    late = make_probe(mosquitto, "ruview/node/+/availability")  # what the broker keeps
    assert {m.topic: m.json()["state"] for m in late.messages if m.retain} == {
        "ruview/node/node_1/availability": "offline", "ruview/node/node_2/availability": "offline"}


# ------------------------------------------------------------ 4. the node list and the log on MQTT


def test_bridge_nodes_lists_every_node_and_changes_with_identity_and_availability_only(
        mosquitto, node_bridge, make_probe):
    bridge, ext, port = node_bridge(mosquitto, devices={7: {"name": "hall", "room": "Hall"}},
                                    reporting={"refresh": 0})  # node states on every beat
    probe = make_probe(mosquitto, "ruview/bridge/nodes")

    def latest() -> list[dict]:
        lists = probe.on("ruview/bridge/nodes")
        return lists[-1].json() if lists else []

    assert wait_until(lambda: [n["name"] for n in latest()] == ["hall"], 10), latest()
    assert latest() == [{"node_id": 7, "name": "hall", "room": "Hall", "privacy_class": "anonymous",
                         "online": False, "last_seen": None, "address": None, "firmware": None,
                         "conflict": False}]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sent = _stream(port, 6, sock, first_id=6, until=3)
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        assert wait_until(lambda: [(n["name"], n["online"]) for n in latest()] == [("node_6", True), ("hall", True)],
                          10), latest()
        assert wait_until(lambda: ext.udp.processed >= sent, 10)
        settled(bridge)
        served(probe, bridge)
        probe.flush()
        listed = latest()
        assert all(n["address"] == address and n["last_seen"] for n in listed), listed
        assert [(n["room"], n["privacy_class"]) for n in listed] == [(None, "anonymous"), ("Hall", "anonymous")]
        lists = len(probe.on("ruview/bridge/nodes"))

        # three more seconds of frames: node states on the beats, the list not once
        state_probe = make_probe(mosquitto, "ruview/node/node_6")
        sent += _stream(port, 6, sock, first_id=6, start=3)
        assert wait_until(lambda: ext.udp.processed >= sent, 10)
        assert wait_until(lambda: len(state_probe.on("ruview/node/node_6")) >= 2, 10)
        settled(bridge)
        served(probe, bridge)
        probe.flush()
        assert len(probe.on("ruview/bridge/nodes")) == lists, latest()

    # a rename is a change of identity: the list says it
    probe.publish("ruview/bridge/request/node/rename", {"from": "node_6", "to": "desk", "transaction": 1})
    assert wait_until(lambda: [n["name"] for n in latest()] == ["desk", "hall"], 10), latest()
    # and a stop leaves it saying that no node is online
    bridge.stop()
    assert wait_until(lambda: [n["online"] for n in latest()] == [False, False], 10), latest()
    late = make_probe(mosquitto, "ruview/bridge/nodes")
    assert late.on("ruview/bridge/nodes")[-1].retain and late.on("ruview/bridge/nodes")[-1].json() == latest()


def test_bridge_nodes_says_the_firmware_a_serial_nodes_boot_log_names(mosquitto, node_bridge, make_probe,
                                                                       tmp_path):
    link = tmp_path / "ttyRUVIEW"
    master, slave = os.openpty()
    os.symlink(os.ttyname(slave), link)
    probe = make_probe(mosquitto, "ruview/bridge/nodes", "ruview/node/node_4/log")
    bridge, ext, _ = node_bridge(mosquitto, serial={"desk": {"url": str(link), "log": False}})
    try:
        assert wait_until(lambda: ext.serial[0].connected, 10)
        # the boot log comes before the first frame names the node
        os.write(master, b"I (31) app_init: App version:      v9.8.7-ruview\r\n")
        for _, data in generate(make_nodes(1, "empty", 3, first_id=4), 3):
            os.write(master, data)

        def listed() -> list[tuple[int, str | None]]:
            lists = probe.on("ruview/bridge/nodes")
            return [(n["node_id"], n["firmware"]) for n in lists[-1].json()] if lists else []

        assert wait_until(lambda: listed() == [(4, "v9.8.7-ruview")], 10), listed()
        served(probe, bridge)
        assert probe.on("ruview/node/node_4/log") == []  # log: false publishes no line
    finally:
        os.close(master)
        os.close(slave)


def _log_lines(probe, logger: str | None = None) -> list[dict]:
    return [m.json() for m in probe.on("ruview/bridge/log") if logger is None or m.json()["logger"] == logger]


def test_the_log_on_mqtt_at_the_bridges_level_masked_and_its_level_changed_by_request(
        mosquitto, make_bridge, make_probe):
    secret = "Hunter2-secret-pw"
    probe = make_probe(mosquitto, "ruview/bridge/log", "ruview/bridge/response/log_level")
    bridge = make_bridge(mosquitto, mqtt={"username": "bridge", "password": secret})
    test_log = logging.getLogger("tests.operator")
    test_log.debug("quiet-1")
    test_log.warning("the password is %s", secret)
    line = probe.wait_topic("ruview/bridge/log", 5,
                            match=lambda m: m.json()["logger"] == "tests.operator").json()
    assert line["level"] == "warning" and line["message"] == "the password is ***" and line["time"]
    assert set(line) == {"level", "logger", "message", "time"}
    assert [n["message"] for n in _log_lines(probe, "tests.operator")] == ["the password is ***"]  # no debug

    probe.publish("ruview/bridge/request/log_level", {"level": "debug", "transaction": "t1"})
    answer = probe.wait_topic("ruview/bridge/response/log_level").json()
    assert answer == {"status": "ok", "data": {"level": "debug"}, "transaction": "t1"}
    test_log.debug("loud-1")
    probe.wait_topic("ruview/bridge/log", 5, match=lambda m: m.json()["message"] == "loud-1")
    assert bridge.info()["requests"].count("log_level") == 1

    probe.clear()
    probe.publish("ruview/bridge/request/log_level", {"level": "chatty"})
    answer = probe.wait_topic("ruview/bridge/response/log_level").json()
    assert answer["status"] == "error" and "expected one of debug, info, warning, error" in answer["error"]
    for m in probe.messages:
        assert secret.encode() not in m.payload


def test_the_log_on_mqtt_is_rate_capped_and_says_how_many_lines_it_dropped(mosquitto, make_bridge, make_probe):
    probe = make_probe(mosquitto, "ruview/bridge/log")
    bridge = make_bridge(mosquitto)
    flood = logging.getLogger("tests.flood")
    began = time.monotonic()
    for i in range(300):
        flood.warning("line %d", i)
    took = time.monotonic() - began
    reports = probe.wait_for(lambda ms: any("log lines dropped" in m.json()["message"] for m in ms
                                            if m.topic == "ruview/bridge/log"), 10, "the dropped lines report")
    settled(bridge)
    probe.flush()
    published = _log_lines(probe, "tests.flood")
    # a burst of 40 (less what the bridge itself said just before), then 20 a second
    assert 20 <= len(published) <= 40 + 20 * took + 2, (len(published), took)
    dropped = sum(int(m.json()["message"].split()[0]) for m in reports if m.topic == "ruview/bridge/log"
                  and "log lines dropped" in m.json()["message"])
    assert dropped == bridge.log_handler.dropped and len(published) + dropped >= 300
    numbers = [int(line["message"].split()[1]) for line in published]
    assert numbers[:20] == list(range(20)) and numbers == sorted(set(numbers))  # the burst first, in order


def test_the_log_on_mqtt_never_blocks_the_thread_that_logs_and_never_recurses(mosquitto, make_bridge, make_probe):
    probe = make_probe(mosquitto, "ruview/bridge/log")
    bridge = make_bridge(mosquitto)
    quiet = logging.getLogger("tests.quiet")

    # the MQTT client is busy (its lock held elsewhere): a thread that logs is not held up
    with bridge.mqtt._lock:
        logger = threading.Thread(target=lambda: [quiet.warning("held %d", i) for i in range(20)])
        logger.start()
        logger.join(2)
        assert not logger.is_alive(), "logging waited for the MQTT client"
    assert wait_until(lambda: len(_log_lines(probe, "tests.quiet")) == 20, 5)

    # the MQTT path logs while it publishes a log line: that record is not published (which would
    # log again, and again)
    publish = bridge.mqtt.publish

    def chatty(topic, payload, *args, **kwargs):
        if topic == "ruview/bridge/log":
            logging.getLogger("bridge.mqtt.client").warning("publishing %d bytes", len(payload))
        return publish(topic, payload, *args, **kwargs)

    bridge.mqtt.publish = chatty
    try:
        quiet.warning("once")
        probe.wait_topic("ruview/bridge/log", 5, match=lambda m: m.json()["message"] == "once")
        served(probe, bridge)
        settled(bridge)
        probe.flush()
    finally:
        del bridge.mqtt.publish
    assert [m["message"] for m in _log_lines(probe, "bridge.mqtt.client") if "publishing" in m["message"]] == []
    assert [m["message"] for m in _log_lines(probe, "tests.quiet")].count("once") == 1


def test_the_log_file_rotates_and_every_file_is_0600_and_masked(tmp_path):
    path = tmp_path / "bridge.log"
    path.write_text("from an earlier version\n")
    path.chmod(0o644)
    handler = file_handler(str(path), 4096, 2, ["Hunter2-secret-pw"])
    log = logging.getLogger("tests.file")
    log.addHandler(handler)
    log.propagate = False
    try:
        for i in range(400):
            log.warning("line %d with Hunter2-secret-pw", i)
    finally:
        log.removeHandler(handler)
        log.propagate = True
        handler.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["bridge.log", "bridge.log.1", "bridge.log.2"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert "Hunter2-secret-pw" not in f.read_text() and "with ***" in f.read_text()
        assert f.stat().st_size <= 4096


def test_run_writes_the_log_file_and_check_config_refuses_one_it_cannot_write(mosquitto, tmp_path):
    log_file = tmp_path / "logs" / "bridge.log"
    bad = subprocess.run([*CLI, "check-config", "-c", _config(tmp_path, f"bridge:\n  log_file: {log_file}\n")],
                         capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2 and f"bridge.log_file: expected a file in a directory that exists " \
                                   f"({log_file.parent} does not)" in bad.stderr, bad.stderr
    log_file.parent.mkdir()
    config = _config(tmp_path, f"mqtt:\n  url: {mosquitto.url}\nbridge:\n  log_file: {log_file}\n")
    probe = Probe(mosquitto.port).subscribe("ruview/bridge/state")
    proc = subprocess.Popen([*CLI, "run", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        probe.wait_topic("ruview/bridge/state", 20, match=lambda m: m.json()["state"] == "online")
        assert wait_until(lambda: log_file.exists() and "connected to MQTT broker" in log_file.read_text(), 10)
        assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        probe.close()
    assert log_file.read_text().rstrip().endswith("stopped")


# ------------------------------------------------------------ 5. the first bridge/info


class _Slow(Extension):
    """Starts until an info has gone out (as a plugin host compiling modules might)."""

    name = "slow"

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def start(self, ctx) -> None:
        assert wait_until(lambda: self.probe.on("ruview/bridge/info"), 10), "no info while starting"


class _After(Extension):
    name = "after"

    def start(self, ctx) -> None:
        pass


def test_no_bridge_info_says_a_feature_that_is_starting_is_stopped(mosquitto, make_config, make_probe):
    probe = make_probe(mosquitto, "ruview/bridge/info")
    bridge = build_bridge(make_config(mosquitto), extensions=[_Slow(probe), _After()])
    bridge.start()
    try:
        infos = probe.wait_for(lambda ms: any(m.json()["extensions"] == {"slow": "running", "after": "running"}
                                              for m in ms), 10, "an info with both running")
        said = [m.json()["extensions"] for m in infos]
        assert said[0] == {"slow": "starting", "after": "starting"}, said
        assert all("stopped" not in states.values() for states in said), said
        served(probe, bridge)
        probe.flush()
        assert probe.on("ruview/bridge/info")[-1].json()["extensions"] == {"slow": "running", "after": "running"}
    finally:
        bridge.stop()

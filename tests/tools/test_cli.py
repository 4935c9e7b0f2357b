"""`ruview-node` as a user runs it: real processes, a fake node on a pty, the mock bootloader,
a real broker and bridge for --register."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.polling import wait_until
from serial.tools.list_ports_common import ListPortInfo

from firmware_tools import cli
from firmware_tools.nvs import build_nvs, parse_nvs
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.tools.fake_node import FakeNode
from tests.tools.flash_reader import read_back
from tests.tools.test_nvs import NODE, PSK, _seed_board


def ruview_node(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "firmware_tools", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def fake_node():
    node = FakeNode()
    yield node
    node.close()


def test_every_help_text_renders():
    for command in ([], ["ports"], ["flash"], ["provision"], ["monitor"], ["simulate"]):
        result = ruview_node(*command, "--help")
        assert result.returncode == 0 and "usage: ruview-node" in result.stdout, command
    assert "never argv" in ruview_node("provision", "--help").stdout


def test_flash_dry_run_lists_offsets_and_a_real_flash_verifies(release_dir, mock_c6):
    dry = ruview_node("flash", release_dir, "--dry-run")
    assert dry.returncode == 0
    assert "0x020000  app" in dry.stderr and "0x008000  partition-table" in dry.stderr
    assert "esp32-csi-node 1.4.2" in dry.stderr
    done = ruview_node("flash", release_dir, "--port", mock_c6.url, "--before", "no-reset",
                       "--after", "no-reset", "--connect-attempts", "2")
    assert done.returncode == 0, done.stderr
    assert "flashed and verified" in done.stderr and "next: ruview-node provision" in done.stderr


def test_flash_refuses_a_wrong_chip_release_with_exit_2(tmp_path):
    from tests.tools.images import app_image

    (tmp_path / "s3.bin").write_bytes(app_image(chip="esp32s3"))
    result = ruview_node("flash", tmp_path / "s3.bin", "--port", "/dev/does-not-exist")
    assert result.returncode == 2 and "built for ESP32-S3, not ESP32-C6" in result.stderr


@pytest.mark.parametrize("flags, message", [
    (["--node-id", "0"], "--node-id 0"),
    (["--node-id", "256"], "--node-id 256"),
    (["--target-ip", "8.8.8.8"], "private LAN address"),
    (["--target-ip", "bridge.local"], "not an IPv4 address"),
    (["--target-port", "70000"], "--target-port 70000"),
    (["--ssid", "x" * 33], "1..32 bytes"),
    (["--ssid", "home"], "8..63 printable"),             # RUVIEW_WIFI_PASSWORD below is too short
    (["--zone", "a-very-long-room-name"], "1..15 bytes"),
    (["--edge-tier", "3"], "--edge-tier 3"),
    (["--password", "hunter22222"], "--password is not accepted"),
    (["--method", "serial", "--pres-thresh", "0.5"], "serial protocol carries only"),
])
def test_invalid_values_are_refused_before_the_port_is_opened(fake_node, flags, message, capsys, monkeypatch):
    monkeypatch.setenv("RUVIEW_WIFI_PASSWORD", "short")
    code = cli.main(["provision", "--port", fake_node.path, "--no-record", *flags])
    assert code == 2 and message in capsys.readouterr().err
    assert not wait_until(lambda: fake_node.received, 0.3), "bytes reached the node"


def test_provision_over_serial_with_register_reaches_a_running_bridge(
        fake_node, tmp_path, mosquitto, node_bridge, make_probe):
    bridge, ext, udp_port = node_bridge(mosquitto)
    config = tmp_path / "config.yaml"
    config.write_text("# my bridge\nmqtt:\n  url: auto  # keep this comment\n")
    records = tmp_path / "nodes.json"
    secret = "correct horse battery"
    result = ruview_node("provision", "--port", fake_node.path, "--ssid", "Home Net", "--node-id", 7,
                         "--target-ip", "192.168.1.20", "--register", "--name", "den", "--room", "Den",
                         "--config", config, "--bridge-mqtt", mosquitto.url, "--records", records,
                         env={"RUVIEW_WIFI_PASSWORD": secret})
    assert result.returncode == 0, result.stderr
    assert (fake_node.node_id, fake_node.ssid, fake_node.password) == (7, "Home Net", secret)
    assert "node 7 configured" in result.stderr and "bridge: node 7 is 'den'" in result.stderr
    assert secret not in result.stdout + result.stderr
    text = config.read_text()
    assert "# keep this comment" in text and "name: den" in text and "room: Den" in text
    record = records.read_text()
    assert secret not in record and json.loads(record)  # the record holds no password
    assert oct(records.stat().st_mode & 0o777) == "0o600"

    probe = make_probe(mosquitto, "ruview/node/#")
    send_udp(generate(make_nodes(1, "empty", 3, first_id=7), 3), "127.0.0.1", udp_port, speed=0)
    state = probe.wait_topic("ruview/node/den").json()
    assert state["node_id"] == 7 and state["room"] == "Den"


def test_provision_over_nvs_through_the_cli_keeps_the_ota_key(mock_c6, tmp_path):
    _seed_board(mock_c6.url, build_nvs(NODE, 0x6000))
    out = tmp_path / "nvs.bin"
    common = ["provision", "--port", mock_c6.url, "--method", "nvs", "--before", "no-reset", "--after",
              "no-reset", "--connect-attempts", 2, "--no-record", "--zone", "kitchen", "--pres-thresh", 0.05]
    dry = ruview_node(*common, "--dry-run", "--nvs-output", out)
    assert dry.returncode == 0, dry.stderr
    assert "csi_cfg/zone_name: (unset) -> 'kitchen'" in dry.stderr and "kept: phy, security" in dry.stderr
    assert read_back(mock_c6.url, 0x9000, 0x6000) == build_nvs(NODE, 0x6000)
    real = ruview_node(*common)
    assert real.returncode == 0, real.stderr
    on_board = {(e.namespace, e.key): e.value for e in parse_nvs(read_back(mock_c6.url, 0x9000, 0x6000))}
    assert on_board[("csi_cfg", "zone_name")] == "kitchen" and on_board[("csi_cfg", "pres_thresh")] == 50
    assert on_board[("security", "ota_psk")] == PSK


def test_ports_lists_espressif_boards_first_and_picks_the_only_one(monkeypatch, capsys):
    def port(device, vid=None, pid=None, desc="n/a"):
        info = ListPortInfo(device, skip_link_detection=True)
        info.vid, info.pid, info.description = vid, pid, desc
        return info

    fakes = [port("/dev/ttyS0"), port("/dev/ttyUSB0", 0x1A86, 0x7523, "USB Serial"),
             port("/dev/ttyACM0", 0x303A, 0x1001, "USB JTAG/serial debug unit")]
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: fakes)
    assert cli.main(["ports"]) == 0
    out = capsys.readouterr()
    rows = [line for line in out.out.splitlines()[1:] if line.strip()]
    assert rows[0].startswith("*/dev/ttyACM0") and "303A:1001" in rows[0] and "ESP32-C6" in rows[0]
    assert rows[1].startswith("*/dev/ttyUSB0") and rows[2].startswith(" /dev/ttyS0")
    assert cli.main(["ports", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["device"] for p in listed] == ["/dev/ttyACM0", "/dev/ttyUSB0", "/dev/ttyS0"]

    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: fakes[:2])
    from firmware_tools.ports import choose_port, list_serial_ports
    assert choose_port(None, list_serial_ports())[0] == "/dev/ttyUSB0"
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: fakes)
    with pytest.raises(Exception, match="2 Espressif boards found.*--port"):
        choose_port(None, list_serial_ports())


def test_auto_falls_back_to_nvs_when_the_firmware_does_not_answer(capsys):
    silent = FakeNode(silent=True)
    try:
        code = cli.main(["provision", "--port", silent.path, "--node-id", "4", "--timeout", "1",
                         "--connect-attempts", "1", "--before", "no-reset", "--no-record"])
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert code == 1
    assert "does not answer serial onboarding; falling back to the NVS path" in err
    assert "hold BOOT, tap RESET" in err          # the NVS path needs the ROM bootloader


def test_monitor_on_a_port_that_does_not_exist_is_an_error_unless_told_to_wait():
    out = ruview_node("monitor", "--port", "/dev/ttyNOPE", timeout=10)
    assert out.returncode == 1 and "no serial port at /dev/ttyNOPE" in out.stderr and "--wait" in out.stderr
    waited = ruview_node("monitor", "--port", "/dev/ttyNOPE", "--wait", "--duration", "1.5", timeout=10)
    assert waited.returncode == 0 and "waiting for the port" in waited.stderr


def test_simulate_says_its_phases_and_progress():
    from tests.brokers import free_port_udp
    out = ruview_node("simulate", "--nodes", "2", "--scenario", "visit", "--duration", "30", "--speed", "0",
                      "--target", f"127.0.0.1:{free_port_udp()}", timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert "simulating 2 node(s), scenario visit, 30 s at 5 Hz" in lines[0]
    assert any(line.strip().startswith("9.0 s  all 2 nodes: a person walks in") for line in lines), lines
    assert any(line.strip().startswith("21.0 s  all 2 nodes: they leave") for line in lines), lines
    assert any(line.strip().startswith("10 s  ") and "frames sent" in line for line in lines), lines
    assert lines[-1].startswith("sent ") and lines[-1].endswith(" frames")

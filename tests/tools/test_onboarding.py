"""Serial onboarding against a fake node on a pty pair: success, each refusal, silence, noise."""

from __future__ import annotations

import time

import pytest
import serial

from firmware_tools.onboarding import REASONS, OnboardingError, config_line, provision
from firmware_tools.settings import NodeSettings
from tests.tools.fake_node import FakeNode


@pytest.fixture
def node_factory():
    nodes = []

    def make(**kw) -> FakeNode:
        nodes.append(FakeNode(**kw))
        return nodes[-1]
    yield make
    for node in nodes:
        node.close()


def _run(node: FakeNode, settings: NodeSettings, **kw):
    logs: list[str] = []
    with serial.Serial(node.path, 115200, timeout=0.05) as port:
        result = provision(port, settings, on_log=logs.append, timeout=kw.pop("timeout", 3),
                           reboot_timeout=kw.pop("reboot_timeout", 3), **kw)
    return result, logs


def test_config_line_matches_the_documented_example():
    assert config_line("00112233445566778899aabbccddeeff", 5, "192.168.1.166", 5005,
                       "RuView Lab", "StrongPassword") == (
        "RUVIEW_CONFIG_V1 00112233445566778899aabbccddeeff 5 192.168.1.166 5005 "
        "UnVWaWV3IExhYg== U3Ryb25nUGFzc3dvcmQ=")


def test_provisioning_sets_the_node_and_waits_for_its_boot_log(node_factory):
    node = node_factory()
    settings = NodeSettings(node_id=7, target_ip="192.168.1.20", target_port=5006,
                            ssid="Home Net", password="correct horse")
    result, logs = _run(node, settings)
    assert (node.node_id, node.target_ip, node.target_port) == (7, "192.168.1.20", 5006)
    assert (node.ssid, node.password) == ("Home Net", "correct horse")
    assert result.node_id == 7 and result.wifi_changed and node.reboots == 1
    assert "node_id=7" in result.boot_line
    assert result.hello.device_digest == "f1b9b7a437d0c1ef"      # sha256("ruview-device-v1" + MAC)[:8]
    hellos = [line for line in node.received if line.startswith("RUVIEW_HELLO_V1")]
    nonce = hellos[-1].split()[1]
    assert len(nonce) == 32 and int(nonce, 16) >= 0
    assert any("nvs_config" in line for line in logs)


def test_each_run_uses_a_fresh_nonce_and_keep_keeps_wifi(node_factory):
    node = node_factory()
    _run(node, NodeSettings(node_id=3))
    _run(node, NodeSettings(target_ip="10.0.0.5"))
    configs = [line.split() for line in node.received if line.startswith("RUVIEW_CONFIG_V1")]
    assert configs[0][1] != configs[1][1]
    assert configs[1][2:] == ["3", "10.0.0.5", "5005", "KEEP", "KEEP"]   # unchanged values are kept
    assert (node.ssid, node.password) == ("OldNet", "old-password")


@pytest.mark.parametrize("kw, reason, words", [
    ({"wrong_nonce": True}, "nonce", "run the command again"),
    ({"claim_seconds": 0.0}, "claim_expired", "more than 60 s"),
    ({"fail_commit": True}, "nvs_commit", "power-cycle"),
])
def test_node_refusals_are_explained(node_factory, kw, reason, words):
    node = node_factory(**kw)
    with pytest.raises(OnboardingError) as err:
        _run(node, NodeSettings(node_id=4))
    assert err.value.reason == reason and words in str(err.value)
    assert str(err.value).startswith(REASONS[reason])
    assert node.reboots == 0


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_reason_the_node_can_give_is_explained(node_factory, reason):
    node = node_factory(force_reason=reason)
    with pytest.raises(OnboardingError) as err:
        _run(node, NodeSettings(node_id=4))
    assert err.value.reason == reason and str(err.value) == REASONS[reason]


@pytest.mark.parametrize("line_settings, reason", [
    ((0, "192.168.1.2", 5005, None, None), "node_id"),
    ((4, "8.8.8.8", 5005, None, None), "target_ip"),
    ((4, "192.168.1.2", 0, None, None), "target_port"),
    ((4, "192.168.1.2", 5005, "x" * 33, "password1"), "ssid"),
    ((4, "192.168.1.2", 5005, "net", "short"), "password"),
])
def test_the_fake_node_enforces_the_firmware_rules(node_factory, line_settings, reason):
    """The tool validates first, so these only reach a node through a raw line; the fake must refuse them."""
    node = node_factory()
    with serial.Serial(node.path, 115200, timeout=0.05) as port:
        port.write(b"RUVIEW_HELLO_V1 " + b"ab" * 16 + b"\n")
        port.write((config_line("ab" * 16, *line_settings) + "\n").encode())
        deadline, text = time.monotonic() + 3, b""
        while not text.endswith(b"\n") or b"RUVIEW_CONFIG_ERR_V1" not in text:
            assert time.monotonic() < deadline, text
            text += port.read(256)
    assert f"reason={reason}".encode() in text


def test_a_node_that_never_answers_times_out_with_a_clear_message(node_factory):
    node = node_factory(silent=True)
    started = time.monotonic()
    with pytest.raises(OnboardingError, match="no answer to RUVIEW_HELLO_V1 within 2 s.*--method nvs"):
        _run(node, NodeSettings(node_id=4), timeout=2)
    assert time.monotonic() - started < 4
    assert sum(line.startswith("RUVIEW_HELLO_V1") for line in node.received) >= 2   # re-sent while booting


def test_garbage_on_the_line_is_skipped(node_factory):
    node = node_factory(garbage=True)
    result, logs = _run(node, NodeSettings(node_id=9, target_ip="172.16.4.4"))
    assert result.node_id == 9 and node.node_id == 9 and node.target_ip == "172.16.4.4"


def test_a_boot_log_with_another_node_id_is_reported(node_factory):
    node = node_factory(boot_node_id=1)
    with pytest.raises(OnboardingError, match="rebooted with node id 1, not 6"):
        _run(node, NodeSettings(node_id=6))

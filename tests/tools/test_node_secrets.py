"""Provisioning gives the node its OTA PSK (security/ota_psk) and the publisher key, through the
NVS read-modify-write, and the bridge keeps the PSK in a 0600 file; it is never printed."""

from __future__ import annotations

import stat

import pytest

from bridge.plugins.trust import generate_key, read_private_key
from firmware_tools.cli import main
from firmware_tools.node_secrets import PskStore, SecretError, read_psk_file
from firmware_tools.nvs import NvsEntry, build_nvs, parse_nvs
from tests.tools.flash_reader import read_back
from tests.tools.test_nvs import _seed_board

NODE = [NvsEntry("csi_cfg", "ssid", "string", "MyHomeWiFi"),
        NvsEntry("csi_cfg", "node_id", "u8", 3),
        NvsEntry("phy", "cal_data", "blob", bytes(range(256)) * 6)]


def _provision(url, state, *extra):
    return main(["provision", "--port", url, "--before", "no-reset", "--after", "no-reset",
                 "--connect-attempts", "2", "--no-record", "--state-dir", str(state), *extra])


def test_provision_writes_a_psk_the_bridge_keeps_and_keeps_every_other_key(mock_c6, tmp_path, capsys):
    _seed_board(mock_c6.url, build_nvs(NODE, 0x6000))
    key = tmp_path / "publisher.key"
    generate_key(key)
    state = tmp_path / "state"
    assert _provision(mock_c6.url, state, "--node-id", "12", "--ota-psk", "--wasm-pubkey", str(key),
                      "--wasm-verify", "on") == 0
    stored = PskStore(state).path(12)
    psk = read_psk_file(stored)
    assert len(psk) == 64 and stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    board = {(e.namespace, e.key): (e.type, e.value) for e in parse_nvs(read_back(mock_c6.url, 0x9000, 0x6000))}
    assert board[("security", "ota_psk")] == ("string", psk)          # nvs_get_str in ota_update.c
    assert board[("csi_cfg", "wasm_pubkey")] == ("blob", bytes(read_private_key(key).verify_key))
    assert board[("csi_cfg", "wasm_verify")] == ("u8", 1)
    assert board[("phy", "cal_data")][1] == bytes(range(256)) * 6
    assert board[("csi_cfg", "ssid")][1] == "MyHomeWiFi" and board[("csi_cfg", "node_id")][1] == 12
    out = capsys.readouterr()
    assert psk not in out.err + out.out
    assert "security/ota_psk: (unset) -> (set)" in out.err

    # provisioning again keeps the PSK the bridge has (node and bridge never disagree)
    assert _provision(mock_c6.url, state, "--node-id", "12", "--ota-psk") == 0
    assert read_psk_file(stored) == psk
    board = {(e.namespace, e.key): e.value for e in parse_nvs(read_back(mock_c6.url, 0x9000, 0x6000))}
    assert board[("security", "ota_psk")] == psk
    assert psk not in "".join(capsys.readouterr())


def test_ota_psk_needs_a_node_id(tmp_path, capsys):
    assert main(["provision", "--port", "socket://127.0.0.1:1", "--ota-psk", "--state-dir", str(tmp_path)]) == 2
    assert "--ota-psk needs --node-id" in capsys.readouterr().err


@pytest.mark.parametrize("text, ok", [("ab" * 32 + "\n", True), ("ab" * 32 + "\r\n", True),
                                      ("a" * 65, False), ("", False), ("two words", False)])
def test_psk_files(tmp_path, text, ok):
    path = tmp_path / "psk"
    path.write_text(text)
    if ok:
        assert read_psk_file(path) == text.strip()
    else:
        with pytest.raises(SecretError, match=str(path)):
            read_psk_file(path)

"""NVS: IDF's generator and our parser agree, every CRC is checked, and a read-modify-write
through the mock bootloader keeps the node's other namespaces."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import pytest

from firmware_tools.esptool_session import ConnectOptions, DeviceError
from firmware_tools.flashing import flash_release
from firmware_tools.nvs import NvsEntry, NvsError, build_nvs, parse_nvs
from firmware_tools.nvs_provision import plan, provision_nvs
from firmware_tools.partitions import RUVIEW_C6_TABLE, build_table
from firmware_tools.release import Part, Release
from firmware_tools.settings import NodeSettings
from tests.tools.flash_reader import read_back

CSV = """key,type,encoding,value
csi_cfg,namespace,,
ssid,data,string,MyHomeWiFi
password,data,string,s3cr3t-pass!
target_ip,data,string,192.168.1.20
target_port,data,u16,5005
node_id,data,u8,3
zone_name,data,string,living-room
pres_thresh,data,u16,50
fall_thresh,data,u16,15000
filter_mac,data,hex2bin,aabbccddeeff
security,namespace,,
ota_psk,data,hex2bin,{psk}
"""
PSK = bytes(range(100, 132))
NODE = [NvsEntry("csi_cfg", "ssid", "string", "MyHomeWiFi"),
        NvsEntry("csi_cfg", "node_id", "u8", 3),
        NvsEntry("security", "ota_psk", "blob", PSK),
        NvsEntry("phy", "cal_data", "blob", bytes(range(256)) * 6)]   # spans entries


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """An image written by the generator's own command line from a CSV."""
    folder = tmp_path_factory.mktemp("nvs")
    (folder / "in.csv").write_text(CSV.format(psk=PSK.hex()))
    subprocess.run([sys.executable, "-m", "esp_idf_nvs_partition_gen", "generate", "in.csv", "out.bin",
                    "0x6000", "--outdir", str(folder)], cwd=folder, check=True, capture_output=True)
    return (folder / "out.bin").read_bytes()


def test_parser_reads_what_the_generator_wrote(generated):
    values = {(e.namespace, e.key): (e.type, e.value) for e in parse_nvs(generated)}
    assert values == {
        ("csi_cfg", "ssid"): ("string", "MyHomeWiFi"), ("csi_cfg", "password"): ("string", "s3cr3t-pass!"),
        ("csi_cfg", "target_ip"): ("string", "192.168.1.20"), ("csi_cfg", "target_port"): ("u16", 5005),
        ("csi_cfg", "node_id"): ("u8", 3), ("csi_cfg", "zone_name"): ("string", "living-room"),
        ("csi_cfg", "pres_thresh"): ("u16", 50), ("csi_cfg", "fall_thresh"): ("u16", 15000),
        ("csi_cfg", "filter_mac"): ("blob", bytes.fromhex("aabbccddeeff")),
        ("security", "ota_psk"): ("blob", PSK)}


def test_rebuilding_parsed_entries_gives_the_generators_bytes(generated):
    assert build_nvs(parse_nvs(generated), 0x6000) == generated


@pytest.mark.parametrize("where, message", [
    (lambda img: 8, "header CRC mismatch"),                       # page sequence number
    (lambda img: 64 + 32 * 1 + 9, "entry CRC mismatch"),          # a key name
    (lambda img: img.find(b"MyHomeWiFi"), "data CRC mismatch"),    # a string's bytes
])
def test_every_crc_is_checked(generated, where, message):
    image = bytearray(generated)
    image[where(image)] ^= 0x01
    with pytest.raises(NvsError, match=message):
        parse_nvs(bytes(image))


def test_the_last_written_value_wins_across_pages():
    old = build_nvs([NvsEntry("csi_cfg", "node_id", "u8", 3)], 0x3000)
    new = build_nvs([NvsEntry("csi_cfg", "node_id", "u8", 9)], 0x3000)
    later = bytearray(new[:4096])
    struct.pack_into("<I", later, 4, 1)                                   # sequence number 1
    struct.pack_into("<I", later, 28, zlib.crc32(bytes(later[4:28]), 0xFFFFFFFF))
    image = later + old[:4096] + b"\xff" * 4096                          # newer page first on flash
    assert parse_nvs(bytes(image)) == [NvsEntry("csi_cfg", "node_id", "u8", 9)]


def test_read_modify_write_keeps_security_and_changes_ssid():
    current = build_nvs(NODE, 0x6000)
    result = plan(current, 0x9000, NodeSettings(ssid="NewNet", password="new-password-1", pres_thresh=0.05))
    after = {(e.namespace, e.key): e.value for e in parse_nvs(result.image)}
    assert after[("security", "ota_psk")] == PSK and after[("phy", "cal_data")] == bytes(range(256)) * 6
    assert after[("csi_cfg", "ssid")] == "NewNet" and after[("csi_cfg", "password")] == "new-password-1"
    assert after[("csi_cfg", "node_id")] == 3 and after[("csi_cfg", "pres_thresh")] == 50
    assert result.kept_namespaces() == ["phy", "security"]
    diff = "\n".join(result.diff())
    assert "csi_cfg/ssid: 'MyHomeWiFi' -> 'NewNet'" in diff
    assert "csi_cfg/password: (unset) -> (set)" in diff and "new-password-1" not in diff


def _seed_board(url: str, nvs_image: bytes) -> None:
    release = Release([Part("partition-table", 0x8000, build_table(RUVIEW_C6_TABLE), "table"),
                       Part("nvs", 0x9000, nvs_image, "nvs")], None)
    flash_release(release, ConnectOptions(url, before="no-reset", after="no-reset", connect_attempts=2),
                  say=lambda _: None)


def _options(url):
    return ConnectOptions(url, before="no-reset", after="no-reset", connect_attempts=2)


def test_nvs_provisioning_end_to_end_through_the_mock_bootloader(mock_c6):
    _seed_board(mock_c6.url, build_nvs(NODE, 0x6000))
    said = []
    provision_nvs(_options(mock_c6.url), NodeSettings(ssid="NewNet", password="new-password-1",
                                                      node_id=12, zone="kitchen"), say=said.append)
    on_board = {(e.namespace, e.key): e.value for e in parse_nvs(read_back(mock_c6.url, 0x9000, 0x6000))}
    assert on_board[("security", "ota_psk")] == PSK
    assert on_board[("csi_cfg", "ssid")] == "NewNet" and on_board[("csi_cfg", "node_id")] == 12
    assert on_board[("csi_cfg", "zone_name")] == "kitchen"
    assert any("wrote and verified" in line for line in said)
    assert not any("new-password-1" in line for line in said)

    again = []
    provision_nvs(_options(mock_c6.url), NodeSettings(node_id=12), say=again.append)
    assert any("already has these settings; nothing written" in line for line in again)


def test_a_corrupt_read_back_is_refused_and_nothing_is_written(mock_c6):
    image = bytearray(build_nvs(NODE, 0x6000))
    image[image.find(b"MyHomeWiFi")] ^= 0x20
    _seed_board(mock_c6.url, bytes(image))
    with pytest.raises(DeviceError, match="did not read back intact.*data CRC mismatch.*Nothing was written"):
        provision_nvs(_options(mock_c6.url), NodeSettings(node_id=5), say=lambda _: None)
    assert read_back(mock_c6.url, 0x9000, 0x6000) == bytes(image)


def test_dry_run_writes_the_image_to_a_file_only(mock_c6, tmp_path):
    original = build_nvs(NODE, 0x6000)
    _seed_board(mock_c6.url, original)
    out = tmp_path / "nvs.bin"
    provision_nvs(_options(mock_c6.url), NodeSettings(node_id=42), say=lambda _: None, dry_run_to=out)
    assert {(e.key, e.value) for e in parse_nvs(out.read_bytes())} >= {("node_id", 42), ("ota_psk", PSK)}
    assert out.stat().st_mode & 0o077 == 0
    assert read_back(mock_c6.url, 0x9000, 0x6000) == original

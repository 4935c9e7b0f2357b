"""`ruview-node flash` against esp32-mock-bootloader: detect the C6, write, verify, refuse early."""

from __future__ import annotations

import zipfile

import pytest

from firmware_tools import cli
from firmware_tools.esptool_session import ConnectOptions, DeviceError
from firmware_tools.flashing import flash_release
from firmware_tools.release import ReleaseError, load_release
from tests.tools.flash_reader import read_back
from tests.tools.flaky_link import CHANGE_BAUD, FlakyLink
from tests.tools.images import app_image, release_files
from tests.tools.mock_bootloader import MockBootloader


def _options(url: str, **kw) -> ConnectOptions:
    return ConnectOptions(url, before="no-reset", after="no-reset", connect_attempts=2, **kw)


def test_flash_writes_every_part_at_the_c6_offsets_and_verifies(mock_c6, release_dir):
    release = load_release(release_dir)
    assert [(p.name, p.offset) for p in release.parts] == [
        ("bootloader", 0x0), ("partition-table", 0x8000), ("ota-data", 0xF000), ("app", 0x20000)]
    assert release.app.project == "esp32-csi-node" and release.app.version == "1.4.2"
    said, progress = [], []
    report = flash_release(release, _options(mock_c6.url), say=said.append,
                           progress=lambda *event: progress.append(event))
    assert report.chip.startswith("ESP32-C6") and not report.fell_back
    assert any(line.startswith("connected: ESP32-C6") for line in said)
    assert any(prefix.startswith("Writing at 0x0002") for prefix, _, _ in progress)
    assert progress and all(0 < cur <= total for _, cur, total in progress)
    for part in release.parts:
        assert read_back(mock_c6.url, part.offset, len(part.data)) == part.data, part.name


def test_a_merged_image_and_a_zip_load_to_the_same_bytes(tmp_path, release_dir):
    files = release_files()
    merged = bytearray(b"\xff" * (0x20000 + len(files["esp32-csi-node.bin"])))
    for name, offset in (("bootloader/bootloader.bin", 0), ("partition_table/partition-table.bin", 0x8000),
                         ("ota_data_initial.bin", 0xF000), ("esp32-csi-node.bin", 0x20000)):
        merged[offset:offset + len(files[name])] = files[name]
    (tmp_path / "merged.bin").write_bytes(merged)
    release = load_release(tmp_path / "merged.bin")
    assert [(p.name, p.offset) for p in release.parts] == [("merged", 0)]
    assert release.app.version == "1.4.2"

    with zipfile.ZipFile(tmp_path / "release.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(f"ruview-c6-1.4.2/{name}", data)
    zipped = load_release(tmp_path / "release.zip")
    assert [(p.offset, p.data) for p in zipped.parts] == [
        (p.offset, p.data) for p in load_release(release_dir).parts]


def test_a_wrong_chip_image_is_refused_before_anything_is_erased(tmp_path, mock_c6, release_dir, capsys):
    flash_release(load_release(release_dir), _options(mock_c6.url), say=lambda _: None)
    before = read_back(mock_c6.url, 0x0, 0x28000)
    (tmp_path / "s3-app.bin").write_bytes(app_image(chip="esp32s3"))
    s3 = tmp_path / "s3"
    for name, data in release_files("esp32s3").items():
        (s3 / name).parent.mkdir(parents=True, exist_ok=True)
        (s3 / name).write_bytes(data)
    # the user's command, pointed at the board: it must refuse before it connects and erases
    for firmware, reason in ((tmp_path / "s3-app.bin", "built for ESP32-S3, not ESP32-C6"), (s3, "ESP32-S3")):
        code = cli.main(["flash", str(firmware), "--port", mock_c6.url, "--before", "no-reset",
                         "--after", "no-reset"])
        assert code == 2 and reason in capsys.readouterr().err
    assert read_back(mock_c6.url, 0x0, 0x28000) == before
    # and the same command with the right release does write (so the check above could fail)
    other = tmp_path / "other"
    for name, data in release_files(version="9.9.9").items():
        (other / name).parent.mkdir(parents=True, exist_ok=True)
        (other / name).write_bytes(data)
    assert cli.main(["flash", str(other), "--port", mock_c6.url, "--before", "no-reset",
                     "--after", "no-reset"]) == 0
    assert read_back(mock_c6.url, 0x0, 0x28000) != before


def test_a_board_that_is_not_a_c6_is_refused_before_writing(release_dir):
    s3_board = MockBootloader("esp32s3")
    try:
        with pytest.raises(DeviceError, match="is an ESP32-S3, not an ESP32-C6; nothing was written"):
            flash_release(load_release(release_dir), _options(s3_board.url), say=lambda _: None)
    finally:
        s3_board.stop()


def test_a_failed_fast_write_falls_back_to_115200(mock_c6, release_dir):
    link = FlakyLink(mock_c6.port, failures=1)
    said = []
    try:
        report = flash_release(load_release(release_dir), _options(link.url, baud=460800), say=said.append)
    finally:
        link.close()
    assert report.fell_back and report.baud == 115200
    assert any("failed" in line and "retrying at 115200" in line for line in said)
    assert CHANGE_BAUD in link.connections[0] and CHANGE_BAUD not in link.connections[1]
    release = load_release(release_dir)
    app = release.parts[-1]
    assert read_back(mock_c6.url, app.offset, len(app.data)) == app.data


def test_a_silent_port_gives_the_boot_mode_hint(tmp_path):
    import os
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with pytest.raises(DeviceError) as err:
            flash_release(load_release_or_skip(tmp_path), ConnectOptions(os.ttyname(slave), before="no-reset",
                                                                       connect_attempts=1),
                          say=lambda _: None)
    finally:
        os.close(master)
        os.close(slave)
    assert "hold BOOT, tap RESET" in str(err.value) and "--before no-reset" in str(err.value)


def load_release_or_skip(tmp_path):
    (tmp_path / "app.bin").write_bytes(app_image())
    return load_release(tmp_path / "app.bin")

"""Synthetic but valid ESP images for flashing tests (built with esptool's image writer)."""

from __future__ import annotations

import struct

from esptool.bin_image import ELFSection, ESP32C6FirmwareImage, ESP32S3FirmwareImage

from firmware_tools.partitions import RUVIEW_C6_TABLE, build_table

_ADDRESSES = {ESP32C6FirmwareImage: (0x42000020, 0x40800000), ESP32S3FirmwareImage: (0x3C000020, 0x40370000)}


def _image(cls, payload: bytes, filler: int, size: int) -> bytes:
    drom, iram = _ADDRESSES[cls]
    img = cls()
    img.segments = [ELFSection(b".flash.appdesc", drom, payload + bytes([filler]) * size, 0),
                    ELFSection(b".iram0.text", iram, b"\x13\x00\x00\x00" * 256, 0)]
    img.entrypoint = iram
    img.flash_mode = 2          # dio
    img.max_rev_full = 99
    return img.save(None)


def app_image(version: str = "1.4.2", project: str = "esp32-csi-node", chip: str = "esp32c6",
              size: int = 4096) -> bytes:
    desc = (struct.pack("<II", 0xABCD5432, 0) + bytes(8) + version.encode().ljust(32, b"\0")
            + project.encode().ljust(32, b"\0") + b"12:00:00".ljust(16, b"\0")
            + b"Nov 22 2026".ljust(16, b"\0") + b"v5.4".ljust(32, b"\0")).ljust(256, b"\0")
    cls = ESP32C6FirmwareImage if chip == "esp32c6" else ESP32S3FirmwareImage
    return _image(cls, desc, 0x5A, size)


def bootloader_image(chip: str = "esp32c6") -> bytes:
    cls = ESP32C6FirmwareImage if chip == "esp32c6" else ESP32S3FirmwareImage
    return _image(cls, b"\x50" + bytes(79), 0x3C, 1024)


def release_files(chip: str = "esp32c6", version: str = "1.4.2") -> dict[str, bytes]:
    return {"bootloader/bootloader.bin": bootloader_image(chip),
            "partition_table/partition-table.bin": build_table(RUVIEW_C6_TABLE),
            "ota_data_initial.bin": b"\xff" * 0x2000,
            "esp32-csi-node.bin": app_image(version, chip=chip)}

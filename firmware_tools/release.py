"""Firmware releases: which image goes where, and whether it is really for an ESP32-C6.

A release is an ESP-IDF build folder (or a zip of one), with `flasher_args.json` or
the usual file names, or a single image: a merged image flashed at 0x0 or a bare
app flashed at the app offset. Every check here runs before a byte is erased.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from firmware_tools.partitions import PartitionTableError, TABLE_OFFSET, TABLE_SIZE, parse_table

BOOTLOADER_OFFSET = 0x0
OTA_DATA_OFFSET = 0xF000
APP_OFFSET = 0x20000
C6_CHIP_ID = 13
CHIP_IDS = {0: "ESP32", 2: "ESP32-S2", 5: "ESP32-C3", 9: "ESP32-S3", 12: "ESP32-C2",
            13: "ESP32-C6", 16: "ESP32-H2", 18: "ESP32-P4", 20: "ESP32-C61", 23: "ESP32-C5"}

_IMAGE_MAGIC = 0xE9
_APP_DESC_MAGIC = 0xABCD5432
_FIRST_SEGMENT_DATA = 8 + 16 + 8   # image header, extended header, segment header

# File names of an ESP-IDF build, in the order tried for each slot.
_NAMES = {
    "bootloader": ["bootloader.bin", "bootloader/bootloader.bin"],
    "partition-table": ["partition-table.bin", "partition_table/partition-table.bin",
                        "partitions.bin"],
    "ota-data": ["ota_data_initial.bin"],
    "app": ["esp32-csi-node.bin", "app.bin", "firmware.bin"],
}
_OFFSETS = {"bootloader": BOOTLOADER_OFFSET, "partition-table": TABLE_OFFSET,
            "ota-data": OTA_DATA_OFFSET, "app": APP_OFFSET}


class ReleaseError(ValueError):
    """The release cannot be flashed to a RuView C6; the message says why and what to do."""


@dataclass(frozen=True)
class AppInfo:
    project: str
    version: str
    idf_version: str


@dataclass(frozen=True)
class Part:
    name: str
    offset: int
    data: bytes = field(repr=False)
    source: str

    def describe(self) -> str:
        return f"0x{self.offset:06x}  {self.name:<16} {len(self.data):>9,} bytes  {self.source}"


@dataclass(frozen=True)
class Release:
    parts: list[Part]
    app: AppInfo | None

    def describe(self) -> list[str]:
        return [part.describe() for part in self.parts]


def image_chip_id(data: bytes) -> int | None:
    """The chip id in an ESP image's extended header, or None when it is no ESP image."""
    if len(data) < 24 or data[0] != _IMAGE_MAGIC:
        return None
    return struct.unpack_from("<H", data, 12)[0]


def app_info(data: bytes) -> AppInfo | None:
    """The esp_app_desc_t that starts an app image's first segment, if there is one."""
    pos = _FIRST_SEGMENT_DATA
    if len(data) < pos + 144 or struct.unpack_from("<I", data, pos)[0] != _APP_DESC_MAGIC:
        return None

    def text(start: int, size: int) -> str:
        return data[pos + start:pos + start + size].split(b"\0")[0].decode("utf-8", "replace")

    return AppInfo(project=text(48, 32), version=text(16, 32), idf_version=text(112, 32))


def load_release(path: str | Path) -> Release:
    path = Path(path)
    if not path.exists():
        raise ReleaseError(f"{path}: no such file or folder")
    if path.is_dir():
        files = {str(p.relative_to(path)): p.read_bytes for p in path.rglob("*") if p.is_file()}
        return _from_files(files, str(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            prefix = _common_folder(names)
            contents = {n[len(prefix):]: archive.read(n) for n in names}
        return _from_files({n: (lambda d=d: d) for n, d in contents.items()}, str(path))
    return _single_image(path.read_bytes(), path.name)


def _common_folder(names: list[str]) -> str:
    first = names[0].split("/")[0] + "/" if names and "/" in names[0] else ""
    return first if first and all(n.startswith(first) for n in names) else ""


def _from_files(files: dict, where: str) -> Release:
    if "flasher_args.json" in files:
        return _from_flasher_args(files, where)
    parts = []
    for slot, names in _NAMES.items():
        found = next((n for n in names if n in files), None)
        if found is None and slot == "app":
            rest = [n for n in files if n.endswith(".bin") and app_info(files[n]()) is not None]
            found = rest[0] if len(rest) == 1 else None
        if found is None:
            if slot == "ota-data":
                continue          # optional: without it the bootloader starts ota_0
            raise ReleaseError(f"{where}: no {slot} image (looked for {', '.join(names)}); "
                               "point --firmware at an ESP-IDF build folder, its zip, or a merged image")
        parts.append(Part(slot, _OFFSETS[slot], files[found](), found))
    return _checked(parts)


def _from_flasher_args(files: dict, where: str) -> Release:
    try:
        args = json.loads(files["flasher_args.json"]())
        flash_files = {int(k, 16): v for k, v in args["flash_files"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ReleaseError(f"{where}/flasher_args.json: not an ESP-IDF flasher_args file ({exc})") from None
    parts = []
    for offset, name in sorted(flash_files.items()):
        if name not in files:
            raise ReleaseError(f"{where}/flasher_args.json names {name}, which is not in the release")
        slot = next((s for s, o in _OFFSETS.items() if o == offset), Path(name).stem)
        parts.append(Part(slot, offset, files[name](), name))
    return _checked(parts)


def _single_image(data: bytes, name: str) -> Release:
    if image_chip_id(data) is None:
        raise ReleaseError(f"{name}: not an ESP image (first byte 0x{data[:1].hex() or '??'}, expected 0xe9)")
    if len(data) > TABLE_OFFSET + TABLE_SIZE and data[TABLE_OFFSET:TABLE_OFFSET + 2] == b"\xaa\x50":
        return _checked([Part("merged", 0x0, data, name)])
    return _checked([Part("app", APP_OFFSET, data, name)])


def _checked(parts: list[Part]) -> Release:
    """Refuse what would not boot on a RuView C6: wrong chip, bad table, app elsewhere."""
    images = {p.name: p.data for p in parts}
    if "merged" in images:
        merged = images.pop("merged")
        images["bootloader"] = merged
        images["partition-table"] = merged[TABLE_OFFSET:TABLE_OFFSET + TABLE_SIZE]
        if len(merged) > APP_OFFSET:
            images["app"] = merged[APP_OFFSET:]
    for slot in ("bootloader", "app"):
        if slot not in images:
            continue
        chip = image_chip_id(images[slot])
        source = next((p.source for p in parts if p.name in (slot, "merged")), slot)
        if chip is None:
            raise ReleaseError(f"{source}: the {slot} is not an ESP image (no 0xE9 magic)")
        if chip != C6_CHIP_ID:
            raise ReleaseError(f"{source}: the {slot} is built for {CHIP_IDS.get(chip, f'chip id {chip}')}, "
                               "not ESP32-C6; download the esp32c6 release")
    if "partition-table" in images:
        try:
            table = parse_table(images["partition-table"])
        except PartitionTableError as exc:
            raise ReleaseError(f"partition table: {exc}") from None
        if not any(p.is_app and p.offset == APP_OFFSET for p in table):
            apps = ", ".join(f"{p.label}@0x{p.offset:x}" for p in table if p.is_app) or "none"
            raise ReleaseError(f"the partition table puts no app at 0x{APP_OFFSET:x} (apps: {apps}); "
                               "this is not a RuView C6 layout")
    return Release(parts, app_info(images["app"]) if "app" in images else None)


def release_from_bytes(parts: dict[str, bytes]) -> Release:
    """A release built in memory (tests, and tools that assemble images themselves)."""
    return _from_files({name: (lambda d=d: d) for name, d in parts.items()}, "<memory>")


__all__ = ["AppInfo", "Part", "Release", "ReleaseError", "load_release", "image_chip_id",
           "app_info", "release_from_bytes", "APP_OFFSET", "C6_CHIP_ID"]

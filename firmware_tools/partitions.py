"""ESP-IDF partition tables: read one, so tools find NVS and the app instead of assuming.

RuView's C6 layout differs from IDF's default (the app sits at 0x20000, not 0x10000),
so the flasher checks a release's table and the NVS provisioner looks up `nvs` on
the device before it reads or writes anything.
"""

from __future__ import annotations

import hashlib
import struct
from typing import NamedTuple

TABLE_OFFSET = 0x8000
TABLE_SIZE = 0xC00
_ENTRY = struct.Struct("<2sBBII16sI")
_MAGIC = b"\xaa\x50"
_MD5_MAGIC = b"\xeb\xeb"

APP, DATA = 0, 1
SUBTYPE_NVS = 0x02


class Partition(NamedTuple):
    label: str
    type: int
    subtype: int
    offset: int
    size: int

    @property
    def is_app(self) -> bool:
        return self.type == APP


class PartitionTableError(ValueError):
    pass


def parse_table(blob: bytes) -> list[Partition]:
    """Entries of a partition table image; the MD5 row, when present, must match."""
    parts: list[Partition] = []
    for pos in range(0, len(blob) - _ENTRY.size + 1, _ENTRY.size):
        row = blob[pos:pos + _ENTRY.size]
        if row[:2] == _MD5_MAGIC:
            if row[16:32] != hashlib.md5(blob[:pos]).digest():
                raise PartitionTableError("partition table MD5 does not match its entries")
            break
        if row[:2] != _MAGIC:
            if row == b"\xff" * _ENTRY.size:
                break
            raise PartitionTableError(f"partition table entry {pos // _ENTRY.size} has no AA 50 magic")
        _, ptype, subtype, offset, size, label, _flags = _ENTRY.unpack(row)
        parts.append(Partition(label.rstrip(b"\0").decode("ascii", "replace"), ptype, subtype, offset, size))
    if not parts:
        raise PartitionTableError("no partition table entries (not a partition table?)")
    return parts


def build_table(parts: list[Partition]) -> bytes:
    """A table image with its MD5 row, as IDF's gen_esp32part writes it."""
    body = b"".join(_ENTRY.pack(_MAGIC, p.type, p.subtype, p.offset, p.size,
                                p.label.encode(), 0) for p in parts)
    md5_row = _MD5_MAGIC + b"\xff" * 14 + hashlib.md5(body).digest()
    return (body + md5_row).ljust(TABLE_SIZE, b"\xff")


def find_nvs(parts: list[Partition]) -> Partition:
    for part in parts:
        if part.type == DATA and part.subtype == SUBTYPE_NVS and part.label == "nvs":
            return part
    for part in parts:
        if part.type == DATA and part.subtype == SUBTYPE_NVS:
            return part
    raise PartitionTableError("the partition table has no nvs partition")


RUVIEW_C6_TABLE = [
    Partition("nvs", DATA, SUBTYPE_NVS, 0x9000, 0x6000),
    Partition("otadata", DATA, 0x00, 0xF000, 0x2000),
    Partition("phy_init", DATA, 0x01, 0x11000, 0x1000),
    Partition("ota_0", APP, 0x10, 0x20000, 0x1D0000),
    Partition("ota_1", APP, 0x11, 0x1F0000, 0x1D0000),
]
"""RuView's partitions_4mb.csv, used by tests and as documentation of the layout."""

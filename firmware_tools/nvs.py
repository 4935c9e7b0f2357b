"""NVS partitions: parse what a node holds (every CRC checked) and rebuild it with IDF's generator.

No NVS parser is published on PyPI, and writing a freshly generated partition would
wipe every other namespace (the node's OTA key in `security`, Wi-Fi calibration in
`phy`, ...). Provisioning therefore parses the node's partition, changes `csi_cfg`
and regenerates the whole partition from the merged entries.

Format (NVS v2): 4096-byte pages = 32-byte header, 32-byte entry-state bitmap and
126 entries of 32 bytes. Strings and blob chunks fill the entries after theirs.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

PAGE_SIZE = 4096
ENTRY_SIZE = 32
ENTRIES_PER_PAGE = 126
_FIRST_ENTRY = 64

_PAGE_EMPTY = 0xFFFFFFFF
_PAGE_STATES = {0xFFFFFFFE: "active", 0xFFFFFFFC: "full", 0xFFFFFFF8: "freeing"}
_WRITTEN, _EMPTY = 0b10, 0b11

INT_TYPES = {0x01: "u8", 0x11: "i8", 0x02: "u16", 0x12: "i16",
             0x04: "u32", 0x14: "i32", 0x08: "u64", 0x18: "i64"}
_STRING, _BLOB_V1, _BLOB_DATA, _BLOB_INDEX = 0x21, 0x41, 0x42, 0x48


class NvsError(ValueError):
    """The image is not an intact NVS partition; the message says where."""


@dataclass(frozen=True)
class NvsEntry:
    namespace: str
    key: str
    type: str            # u8..i64, "string" or "blob"
    value: int | str | bytes


_Value = int | str | bytes | tuple[int, int]  # as parsed: a blob index is (chunk count, first chunk)


def _crc(data: bytes) -> int:
    """IDF's esp_rom_crc32_le(0xffffffff, ...)."""
    return zlib.crc32(data, 0xFFFFFFFF)


def parse_nvs(image: bytes) -> list[NvsEntry]:
    """Every live key, last written value wins, in the order keys first appear."""
    if len(image) % PAGE_SIZE:
        raise NvsError(f"NVS image is {len(image)} bytes, not a multiple of {PAGE_SIZE}")
    pages = []
    for offset in range(0, len(image), PAGE_SIZE):
        page = image[offset:offset + PAGE_SIZE]
        state, seq = struct.unpack_from("<II", page)
        if state == _PAGE_EMPTY:
            continue
        where = f"NVS page at +0x{offset:x}"
        if state not in _PAGE_STATES:
            raise NvsError(f"{where}: state 0x{state:08x} is not a valid page state (corrupt page)")
        if struct.unpack_from("<I", page, 28)[0] != _crc(page[4:28]):
            raise NvsError(f"{where}: header CRC mismatch")
        pages.append((seq, offset, page))

    namespaces: dict[int, str] = {}
    values: dict[tuple[int, str], tuple[str, _Value]] = {}
    chunks: dict[tuple[int, str, int], bytes] = {}
    for _, offset, page in sorted(pages):
        for ns, key, kind, value in _page_items(page, offset, chunks):
            if ns == 0:
                if not isinstance(value, int):  # IDF writes a namespace's index as a u8
                    raise NvsError(f"namespace {key!r}: its index is a {kind}, not an integer (corrupt entry)")
                namespaces[value] = key
            else:
                values.pop((ns, key), None)       # re-insert: the last write decides the order too
                values[(ns, key)] = (kind, value)

    entries = []
    for (ns, key), (kind, value) in values.items():
        if isinstance(value, tuple):  # kind "blob_index": (chunk count, first chunk)
            count, start = value
            try:
                value = b"".join(chunks[(ns, key, start + i)] for i in range(count))
            except KeyError:
                raise NvsError(f"blob {key!r}: a chunk is missing") from None
            kind = "blob"
        if ns not in namespaces:
            raise NvsError(f"key {key!r} belongs to namespace index {ns}, which is not defined")
        entries.append(NvsEntry(namespaces[ns], key, kind, value))
    return entries


def _page_items(page: bytes, offset: int, chunks: dict) -> Iterator[tuple[int, str, str, _Value]]:
    def state(i: int) -> int:
        return (page[32 + i // 4] >> ((i % 4) * 2)) & 3

    i = 0
    while i < ENTRIES_PER_PAGE:
        if state(i) != _WRITTEN:
            i += 1
            continue
        start = _FIRST_ENTRY + i * ENTRY_SIZE
        entry = page[start:start + ENTRY_SIZE]
        ns, kind, span, chunk = entry[:4]
        where = f"NVS entry {i} of page at +0x{offset:x}"
        if struct.unpack_from("<I", entry, 4)[0] != _crc(entry[:4] + entry[8:]):
            raise NvsError(f"{where}: entry CRC mismatch")
        if span < 1 or i + span > ENTRIES_PER_PAGE:
            raise NvsError(f"{where}: span {span} runs past the page")
        key = entry[8:24].split(b"\0")[0].decode("ascii", "replace")
        data = entry[24:32]
        if kind in INT_TYPES:
            name = INT_TYPES[kind]
            width = int(name[1:]) // 8
            yield ns, key, name, int.from_bytes(data[:width], "little", signed=name[0] == "i")
        elif kind in (_STRING, _BLOB_DATA, _BLOB_V1):
            size, _, data_crc = struct.unpack_from("<HHI", data)
            payload = page[start + ENTRY_SIZE:start + ENTRY_SIZE + size]
            if len(payload) != size or size > (span - 1) * ENTRY_SIZE:
                raise NvsError(f"{where} ({key!r}): data size {size} exceeds its {span - 1} entries")
            if _crc(payload) != data_crc:
                raise NvsError(f"{where} ({key!r}): data CRC mismatch")
            if kind == _STRING:
                yield ns, key, "string", payload.rstrip(b"\0").decode("utf-8", "replace")
            elif kind == _BLOB_V1:
                yield ns, key, "blob", payload
            else:
                chunks[(ns, key, chunk)] = payload
        elif kind == _BLOB_INDEX:
            _size, count, chunk_start = struct.unpack_from("<IBB", data)
            yield ns, key, "blob_index", (count, chunk_start)
        else:
            raise NvsError(f"{where} ({key!r}): unknown entry type 0x{kind:02x}")
        i += span


def build_nvs(entries: Iterable[NvsEntry], size: int) -> bytes:
    """An NVS v2 image of `size` bytes holding `entries`, written by IDF's own generator.

    Built in memory, so no CSV with the Wi-Fi password ever touches the disk. The
    generator's class is used directly: its `write_entry` wrapper injects extra
    Wi-Fi keys for `sta.ssid`, which would corrupt a carried-over `nvs.net80211`.
    """
    from esp_idf_nvs_partition_gen import nvs_partition_gen as generator

    if size % PAGE_SIZE or size < 3 * PAGE_SIZE:
        raise NvsError(f"NVS size 0x{size:x} must be a multiple of 0x1000 and at least 0x3000")
    grouped: dict[str, list[NvsEntry]] = {}
    for entry in entries:
        grouped.setdefault(entry.namespace, []).append(entry)
    out = io.BytesIO()
    try:
        nvs = generator.nvs_open(out, size - PAGE_SIZE, generator.Page.VERSION2)
        for namespace, items in grouped.items():
            nvs.write_namespace(namespace)
            for item in items:
                encoding, text = _encode(item)
                nvs.write_entry(item.key, text, encoding)
        generator.nvs_close(nvs)
    except (generator.PageFullError, generator.InputError, ValueError) as exc:
        raise NvsError(f"cannot build the NVS image: {exc}") from None
    return out.getvalue().ljust(size, b"\xff")


def _encode(entry: NvsEntry) -> tuple[str, str]:
    if entry.type == "string":
        return "string", str(entry.value)
    if entry.type == "blob":
        if not isinstance(entry.value, bytes):
            raise NvsError(f"{entry.namespace}/{entry.key}: a blob's value must be bytes, "
                           f"not {type(entry.value).__name__}")
        return "hex2bin", entry.value.hex()
    if entry.type in INT_TYPES.values():
        return entry.type, str(int(entry.value))
    raise NvsError(f"{entry.namespace}/{entry.key}: unknown type {entry.type!r}")


def merge(entries: list[NvsEntry], namespace: str, updates: Mapping[str, tuple[str, int | str | bytes]]) -> list[NvsEntry]:
    """`entries` with the keys in `updates` set in `namespace`; every other entry is kept."""
    merged, pending = [], dict(updates)
    for entry in entries:
        if entry.namespace == namespace and entry.key in pending:
            kind, value = pending.pop(entry.key)
            merged.append(NvsEntry(namespace, entry.key, kind, value))
        else:
            merged.append(entry)
    merged += [NvsEntry(namespace, key, kind, value) for key, (kind, value) in pending.items()]
    return merged

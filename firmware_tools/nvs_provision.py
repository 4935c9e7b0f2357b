"""Provisioning through the NVS partition, for firmware without serial onboarding.

Read-modify-write, never a blind overwrite: the partition table on the board says
where NVS is, the partition is read and parsed (every CRC checked), only `csi_cfg`
keys change, and the whole partition is regenerated and written back, so other
namespaces (the OTA key in `security`, Wi-Fi calibration) survive. It is also the one way to
write the OTA PSK (`security/ota_psk`) and the WASM module key (`csi_cfg/wasm_pubkey`). If anything about
the read-back is wrong, nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from esptool.cmds import read_flash, verify_flash, write_flash

from firmware_tools.esptool_session import ConnectOptions, DeviceError, describe, esptool_output, session
from firmware_tools.nvs import NvsEntry, NvsError, build_nvs, merge, parse_nvs
from firmware_tools.partitions import (TABLE_OFFSET, TABLE_SIZE, PartitionTableError, find_nvs,
                                       parse_table)
from firmware_tools.settings import NAMESPACE, NodeSettings

SECRET_KEYS = {"password", "seed_token", "ota_psk"}


@dataclass(frozen=True)
class NvsPlan:
    offset: int
    size: int
    before: list[NvsEntry]
    after: list[NvsEntry]
    image: bytes
    current: bytes

    @property
    def unchanged(self) -> bool:
        return self.image == self.current

    def diff(self) -> list[str]:
        """Changed csi_cfg keys as `key: old -> new`, secrets shown only as (set)."""
        old = {(e.namespace, e.key): e.value for e in self.before}
        lines = []
        for entry in self.after:
            previous = old.get((entry.namespace, entry.key), None)
            if previous == entry.value:
                continue
            def show(value):
                if value is None:
                    return "(unset)"
                return "(set)" if entry.key in SECRET_KEYS else repr(value)
            lines.append(f"{entry.namespace}/{entry.key}: {show(previous)} -> {show(entry.value)}")
        return lines

    def kept_namespaces(self) -> list[str]:
        return sorted({e.namespace for e in self.before} - {NAMESPACE})


def plan(current: bytes, offset: int, settings: NodeSettings,
         extra: Mapping[str, Mapping[str, tuple[str, int | str | bytes]]] | None = None) -> NvsPlan:
    """Parse what the board holds and merge the new settings (and `extra`: namespace -> key ->
    (type, value), such as `security/ota_psk`); raises NvsError if unreadable."""
    if current.count(0xFF) == len(current):
        entries: list[NvsEntry] = []          # erased partition: nothing to keep
    else:
        entries = parse_nvs(current)
    merged = merge(entries, NAMESPACE, settings.nvs_updates())
    for namespace, updates in (extra or {}).items():
        merged = merge(merged, namespace, updates)
    image = build_nvs(merged, len(current))
    if sorted(map(repr, parse_nvs(image))) != sorted(map(repr, merged)):
        raise NvsError("the regenerated NVS image does not read back as the merged settings")
    return NvsPlan(offset, len(current), entries, merged, image, current)


def provision_nvs(options: ConnectOptions, settings: NodeSettings, *, say: Callable[[str], None],
                  dry_run_to: Path | None = None, verbose: bool = False,
                  extra: Mapping[str, Mapping[str, tuple[str, int | str | bytes]]] | None = None) -> NvsPlan:
    """Read, merge (`extra`: other namespaces' keys), write and verify."""
    with esptool_output(None, say, verbose), \
            session(options, after="no-reset" if dry_run_to is not None else None) as board:
        esp = board.esp
        say(f"connected: {describe(esp)}")
        try:
            table = parse_table(read_flash(esp, TABLE_OFFSET, TABLE_SIZE, no_progress=True))
            nvs = find_nvs(table)
        except PartitionTableError as exc:
            raise DeviceError(f"{options.port}: cannot read the board's partition table ({exc}); "
                              "nothing was written. Flash a RuView release first (ruview-node flash).") from None
        current = read_flash(esp, nvs.offset, nvs.size, no_progress=True)
        if len(current) != nvs.size:
            raise DeviceError(f"{options.port}: read {len(current)} of {nvs.size} NVS bytes; nothing was written")
        try:
            result = plan(current, nvs.offset, settings, extra)
        except NvsError as exc:
            raise DeviceError(
                f"{options.port}: the NVS partition at 0x{nvs.offset:x} did not read back intact ({exc}). "
                "Nothing was written: overwriting it would erase the node's other settings "
                "(OTA key, Wi-Fi calibration). Run again; if it persists, use the serial method.") from None
        if dry_run_to is not None:
            dry_run_to.write_bytes(result.image)
            dry_run_to.chmod(0o600)
            say(f"dry run: wrote the NVS image for 0x{nvs.offset:x} to {dry_run_to}; the board is unchanged")
        elif result.unchanged:
            say("the node already has these settings; nothing written")
        else:
            write_flash(esp, [(nvs.offset, result.image)])
            verify_flash(esp, [(nvs.offset, result.image)])
            say(f"wrote and verified {nvs.size:#x} bytes of NVS at 0x{nvs.offset:x}")
    return result

"""`ruview-node flash`: write a release to a C6, verify it, and fall back to 115200 baud."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from esptool.cmds import verify_flash, write_flash

from firmware_tools.esptool_session import (ROM_BAUD, ConnectOptions, FatalError, SerialException,
                                            describe, esptool_output, session)
from firmware_tools.release import Release


@dataclass(frozen=True)
class FlashReport:
    chip: str
    baud: int
    written: int
    fell_back: bool


def flash_release(release: Release, options: ConnectOptions, *, say: Callable[[str], None],
                  progress: Callable[[str, int, int], None] | None = None,
                  verbose: bool = False) -> FlashReport:
    """Connect, check the chip, write every part, verify, reset.

    The release was checked for the C6 when it was loaded; the chip is checked on
    connect; both happen before the first erase. A write that fails at a fast baud
    rate (cheap USB-UART bridges, long cables) is retried once at 115200.
    """
    parts = [(p.offset, p.data) for p in release.parts]
    with esptool_output(progress, say, verbose), session(options) as board:
        chip = describe(board.esp)
        say(f"connected: {chip}")
        baud, fell_back = options.baud, False
        try:
            write_flash(board.esp, parts)
        except (FatalError, SerialException, OSError) as exc:
            if options.baud == ROM_BAUD:
                raise
            say(f"writing at {options.baud} baud failed ({str(exc).strip()}); retrying at {ROM_BAUD}")
            board.reconnect_at_rom_baud()
            baud, fell_back = ROM_BAUD, True
            write_flash(board.esp, parts)
        say("verifying")
        verify_flash(board.esp, parts)
    return FlashReport(chip, baud, sum(len(d) for _, d in parts), fell_back)

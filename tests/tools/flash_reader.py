"""Read back what a mock board holds, the way a test inspects a real board: through esptool."""

from __future__ import annotations

from esptool.cmds import read_flash

from firmware_tools.esptool_session import ConnectOptions, esptool_output, session


def read_back(url: str, offset: int, size: int) -> bytes:
    options = ConnectOptions(url, baud=115200, before="no-reset", after="no-reset", connect_attempts=2)
    with esptool_output(None, lambda line: None), session(options) as board:
        return read_flash(board.esp, offset, size, no_progress=True)

"""Read back what a mock board holds, the way a test inspects a real board: through esptool."""

from __future__ import annotations

from esptool.cmds import read_flash

from firmware_tools.esptool_session import ConnectOptions, close, connect, esptool_output


def read_back(url: str, offset: int, size: int) -> bytes:
    with esptool_output(None, lambda line: None):
        esp = connect(ConnectOptions(url, baud=115200, before="no-reset", connect_attempts=2))
        try:
            return read_flash(esp, offset, size, no_progress=True)
        finally:
            close(esp, "no-reset")

"""One connection to a chip's ROM bootloader through esptool's Python API (esptool >= 5).

esptool does the protocol; this module adds what a user needs around it: progress
without esptool's own console output, a C6 check before anything is written, and
errors that say what to try (boot mode, cable, permissions, a busy port).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

from esp_pylib.logger import EspLog
from esptool.cmds import attach_flash, detect_chip, reset_chip, run_stub
from esptool.logger import TemplateLogger, log
from esptool.util import FatalError
from serial import SerialException

ROM_BAUD = 115200
EXPECTED_CHIP = "ESP32-C6"

BOOT_MODE_HINT = (
    "The chip did not answer. Check that the cable carries data (not charge-only) and that "
    "--port is the board's USB port (on two-port boards, the one marked USB). If it still does "
    "not answer, put it in download mode by hand: hold BOOT, tap RESET, release BOOT, then run "
    "again with --before no-reset.")

Progress = Callable[[str, int, int], None]


class DeviceError(RuntimeError):
    """A failure talking to the board, with the next step for the user in the message."""


@dataclass(frozen=True)
class ConnectOptions:
    port: str
    baud: int = 460800
    before: str = "default-reset"
    after: str = "hard-reset"
    connect_attempts: int = 7


class _QuietLogger(TemplateLogger):
    """Routes esptool's output: progress to a callback, text to `say` only when verbose."""

    def __init__(self, progress: Progress | None, say: Callable[[str], None], verbose: bool):
        self.progress, self.say, self.verbose = progress, say, verbose
        self.lines: list[str] = []

    def print(self, *args, **kwargs):
        text = " ".join(str(a) for a in args).strip()
        if text:
            self.lines.append(text)
            if self.verbose:
                self.say(text)

    def note(self, message: str):
        self.print(f"note: {message}")

    def warning(self, message: str):
        self.print(f"warning: {message}")

    def error(self, message: str):
        self.print(f"error: {message}")

    def stage(self, finish: bool = False):
        pass

    def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
        if self.progress:
            self.progress(prefix.strip(), int(cur_iter), int(total_iters))

    def set_verbosity(self, verbosity: str):
        pass


@contextlib.contextmanager
def esptool_output(progress: Progress | None, say: Callable[[str], None],
                   verbose: bool = False) -> Iterator[_QuietLogger]:
    saved = EspLog.instance
    quiet = _QuietLogger(progress, say, verbose)
    log.set_logger(quiet)
    try:
        yield quiet
    finally:
        EspLog.instance = saved


def explain(exc: BaseException, port: str) -> DeviceError:
    """Turn esptool and pyserial failures into a message naming the port and a fix."""
    text = str(exc)
    lowered = text.lower()
    if "permission denied" in lowered:
        return DeviceError(f"{port}: permission denied. Add yourself to the serial group "
                           "(sudo usermod -a -G dialout $USER), log out and in again.")
    if "busy" in lowered or "could not exclusively lock" in lowered:
        return DeviceError(f"{port}: the port is busy. Close the monitor (ruview-node monitor, "
                           "idf.py monitor, screen) or anything else holding it.")
    if "no such file" in lowered or "could not open port" in lowered or "connection refused" in lowered:
        return DeviceError(f"{port}: cannot open the port ({text}). Is the board plugged in? "
                           "`ruview-node ports` lists what is there.")
    if "failed to connect" in lowered or "no serial data" in lowered or "wrong boot mode" in lowered:
        return DeviceError(f"{port}: {text.strip()}\n{BOOT_MODE_HINT}")
    return DeviceError(f"{port}: {text.strip()}")


def connect(options: ConnectOptions, *, fast: bool = True):
    """Connect, check it is a C6, start the stub and attach the flash; `session` wraps this."""
    try:
        esp = detect_chip(options.port, ROM_BAUD, options.before,
                          connect_attempts=options.connect_attempts)
    except (FatalError, SerialException, OSError) as exc:
        raise explain(exc, options.port) from None
    try:
        if esp.CHIP_NAME != EXPECTED_CHIP:
            raise DeviceError(f"{options.port}: the board is an {esp.CHIP_NAME}, not an {EXPECTED_CHIP}; "
                              "nothing was written. RuView firmware for this tool targets the C6.")
        esp = run_stub(esp)
        attach_flash(esp)
        if fast and options.baud != ROM_BAUD:
            esp.change_baud(options.baud)
    except DeviceError:
        close(esp, "no-reset")
        raise
    except (FatalError, SerialException, OSError) as exc:
        close(esp, "no-reset")
        raise explain(exc, options.port) from None
    return esp


def close(esp, after: str) -> None:
    """Reset as asked and release the port; a pty or socket that cannot toggle DTR/RTS is fine."""
    try:
        reset_chip(esp, after)
    except (FatalError, SerialException, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            esp._port.close()


class Board:
    """The connected chip; `esp` changes when the session reconnects."""

    def __init__(self, esp, options: ConnectOptions) -> None:
        self.esp, self.options = esp, options

    def reconnect_at_rom_baud(self) -> None:
        close(self.esp, "no-reset")
        self.esp = connect(self.options, fast=False)


@contextlib.contextmanager
def session(options: ConnectOptions, after: str | None = None) -> Iterator[Board]:
    """Connect (C6 checked, stub running); on any failure leave the chip in the bootloader
    and raise DeviceError with a fix; on success reset as `after` (default options.after)."""
    board = Board(connect(options), options)
    try:
        yield board
    except (FatalError, SerialException, OSError) as exc:
        close(board.esp, "no-reset")
        raise explain(exc, options.port) from None
    except BaseException:
        close(board.esp, "no-reset")
        raise
    close(board.esp, after or options.after)


def describe(esp) -> str:
    mac = ":".join(f"{b:02x}" for b in esp.read_mac()[:6])
    return f"{esp.get_chip_description()}, MAC {mac}"


__all__ = ["BOOT_MODE_HINT", "Board", "ConnectOptions", "DeviceError", "connect", "close", "describe",
           "esptool_output", "explain", "session", "FatalError", "SerialException"]

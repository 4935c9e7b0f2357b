"""Serial ports, Espressif boards first, so `--port` is rarely needed."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Callable, Iterable

from serial.tools import list_ports

ESPRESSIF_VID = 0x303A
# (vid, pid) -> (what the USB id is, best guess at the chip behind it)
USB_IDS: dict[tuple[int, int], tuple[str, str]] = {
    (0x303A, 0x1001): ("Espressif USB-Serial-JTAG", "ESP32-C6 (or C3/S3/H2: same USB id)"),
    (0x303A, 0x0002): ("Espressif USB-OTG (TinyUSB)", "ESP32-S2/S3"),
    (0x10C4, 0xEA60): ("Silicon Labs CP210x USB-UART", "an ESP32 behind a USB-UART bridge"),
    (0x1A86, 0x7523): ("WCH CH340 USB-UART", "an ESP32 behind a USB-UART bridge"),
    (0x1A86, 0x55D3): ("WCH CH343 USB-UART", "an ESP32 behind a USB-UART bridge"),
    (0x1A86, 0x55D4): ("WCH CH9102 USB-UART", "an ESP32 behind a USB-UART bridge"),
    (0x0403, 0x6001): ("FTDI FT232 USB-UART", "an ESP32 behind a USB-UART bridge"),
    (0x0403, 0x6010): ("FTDI FT2232 (ESP-Prog)", "an ESP32 on an ESP-Prog"),
}


@dataclass(frozen=True)
class Port:
    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str
    by_id: str | None = None

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04X}:{self.pid:04X}" if self.vid is not None and self.pid is not None else "-"

    @property
    def rank(self) -> int:
        """0 native Espressif USB, 1 a known USB-UART bridge, 2 other USB, 3 not USB."""
        if self.vid == ESPRESSIF_VID:
            return 0
        if (self.vid, self.pid) in USB_IDS:
            return 1
        return 2 if self.vid is not None else 3

    @property
    def is_espressif_board(self) -> bool:
        return self.rank <= 1

    @property
    def chip_guess(self) -> str:
        known = USB_IDS.get((self.vid, self.pid)) if self.vid is not None and self.pid is not None else None
        return known[1] if known else ("unknown USB serial device" if self.vid is not None else "-")

    @property
    def kind(self) -> str:
        known = USB_IDS.get((self.vid, self.pid)) if self.vid is not None and self.pid is not None else None
        return known[0] if known else self.description


class PortError(RuntimeError):
    """No port could be chosen; the message says what was found and what to pass."""


def _by_id_links() -> dict[str, str]:
    links = {}
    for link in glob.glob("/dev/serial/by-id/*"):
        links[os.path.realpath(link)] = link
    return links


def list_serial_ports(comports: Callable[[], Iterable] | None = None) -> list[Port]:
    links = _by_id_links()
    ports = [Port(info.device, info.vid, info.pid, info.serial_number,
                  info.description or "n/a", links.get(os.path.realpath(info.device)))
             for info in (comports or list_ports.comports)()]
    return sorted(ports, key=lambda p: (p.rank, p.device))


def choose_port(explicit: str | None, ports: list[Port]) -> tuple[str, str | None]:
    """The port to use and, when picked automatically, a line saying which and why."""
    if explicit:
        return explicit, None
    boards = [p for p in ports if p.is_espressif_board]
    if len(boards) == 1:
        board = boards[0]
        return board.device, f"using {board.device} ({board.kind}, {board.usb_id}), the only Espressif board found"
    if not boards:
        seen = ", ".join(p.device for p in ports) or "no serial ports at all"
        raise PortError("no Espressif board found (seen: " + seen + "). Plug the node in with a data "
                        "USB cable, or pass --port (a device path or a pyserial URL).")
    listing = "; ".join(f"{p.device} ({p.kind})" for p in boards)
    raise PortError(f"{len(boards)} Espressif boards found: {listing}. Pass --port to pick one.")

"""Capture files: received datagrams with their arrival times, for replay and tests.

JSON Lines, so a capture can be read, grepped and diffed without tools:
line 1 `{"ruview_capture": 1, "created": "...", "source": "..."}`, then one
`{"t": <seconds since the first datagram>, "src": "ip:port", "data": "<hex>"}`
per datagram. Raw CSI in a capture stays on the host like any other file
the user makes; nothing here publishes it.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TextIO

import orjson

from bridge.core.context import utc_now_iso

FORMAT_VERSION = 1


class CaptureError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Datagram:
    t: float
    src: str
    data: bytes


class CaptureWriter:
    def __init__(self, path: str | Path, source: str = "") -> None:
        self.path = Path(path)
        self._file: TextIO = self.path.open("w", encoding="utf-8")
        self._file.write(orjson.dumps({"ruview_capture": FORMAT_VERSION, "created": utc_now_iso(),
                                       "source": source}).decode() + "\n")
        self.count = 0

    def write(self, d: Datagram) -> None:
        self._file.write(orjson.dumps({"t": round(d.t, 6), "src": d.src,
                                       "data": d.data.hex()}).decode() + "\n")
        self.count += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_capture(path: str | Path, datagrams: Iterable[Datagram], source: str = "") -> int:
    with CaptureWriter(path, source) as writer:
        for d in datagrams:
            writer.write(d)
        return writer.count


def read_capture(path: str | Path) -> Iterator[Datagram]:
    """Yield datagrams in file order; errors name the file and line."""
    path = Path(path)
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                if number == 1:
                    if record.get("ruview_capture") != FORMAT_VERSION:
                        raise CaptureError(f"{path}: line 1: not a ruview capture (version "
                                           f"{FORMAT_VERSION} header missing)")
                    continue
                yield Datagram(float(record["t"]), str(record["src"]), bytes.fromhex(record["data"]))
            except CaptureError:
                raise
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise CaptureError(f"{path}: line {number}: bad capture record: {exc}") from None


def send_datagrams(stream: Iterable[tuple[float, bytes]], host: str, port: int,
                   speed: float = 1.0) -> int:
    """Send (t, data) pairs over UDP at t / speed; speed 0 sends as fast as possible."""
    sent, start = 0, time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for t, data in stream:
            if speed > 0:
                delay = start + t / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sock.sendto(data, (host, port))
            sent += 1
    return sent


def record_udp(path: str | Path, bind: str, port: int, stop: threading.Event,
               duration: float | None = None) -> int:
    """Write every datagram arriving on bind:port to a capture until stop is set."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, port))
        sock.settimeout(0.2)
        start = None
        with CaptureWriter(path, source=f"udp {bind}:{port}") as writer:
            began = time.monotonic()
            while not stop.is_set() and (duration is None or time.monotonic() - began < duration):
                try:
                    data, (host, sport) = sock.recvfrom(4096)
                except socket.timeout:
                    continue
                now = time.monotonic()
                start = now if start is None else start
                writer.write(Datagram(now - start, f"{host}:{sport}", data))
            return writer.count

"""Serial ingest: frames (and log lines) from a node wired to this host.

A reader thread per configured port reads whatever arrives, finds frames
with the Deframer, and hands them to the same pipeline as UDP. When the
device disappears (USB unplugged, node reset) the thread closes it and
retries every `RETRY` seconds until it is back, saying so once each way.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import serial

from bridge.core.supervisor import Spawn, Supervised, Supervisor
from bridge.nodes.deframer import Deframer, LogLine, SerialFrame
from bridge.nodes.udp import Batch

log = logging.getLogger(__name__)

RETRY = 1.0


class SerialIngest:
    def __init__(self, label: str, url: str, baudrate: int, handle: Callable[[Batch], None],
                 on_line: Callable[[str, str], None] | None = None, spawn: Spawn | None = None) -> None:
        self.label, self.url, self.baudrate = label, url, baudrate
        self._handle, self._on_line = handle, on_line
        self._stop = threading.Event()
        self._spawn = spawn or Supervisor().spawn
        self._thread: Supervised | None = None
        self.deframer = Deframer()
        self.opens = 0
        self.attempts = 0
        self.frames = 0  # over every session of the link
        self.errors = 0
        self.connected = False

    def start(self) -> None:
        self._thread = self._spawn(f"serial-{self.label}", self._run, self._stop)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            self.attempts += 1
            try:
                port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.2)
            except (serial.SerialException, OSError, ValueError) as exc:
                if not warned:
                    log.warning("serial %s (%s) unavailable: %s; retrying every %.0f s",
                                self.label, self.url, exc, RETRY)
                    warned = True
                self._stop.wait(RETRY)
                continue
            warned = False
            self.opens += 1
            self.connected = True
            log.info("reading RuView frames from serial %s (%s)", self.label, self.url)
            self.deframer = Deframer()  # a new session starts clean
            try:
                while not self._stop.is_set():
                    chunk = port.read(4096)  # returns early when the line goes quiet (timeout)
                    items = self.deframer.feed(chunk) if chunk else self.deframer.idle()
                    if items:
                        self._dispatch(items)
            except (serial.SerialException, OSError) as exc:
                log.warning("serial %s (%s) lost: %s", self.label, self.url, exc)
            finally:
                self.connected = False
                try:
                    port.close()
                except Exception:
                    pass

    def _dispatch(self, items: list[SerialFrame | LogLine]) -> None:
        batch: Batch = [(item.data, (f"serial:{self.label}", 0)) for item in items
                        if isinstance(item, SerialFrame)]
        self.frames += len(batch)
        try:
            if batch:
                self._handle(batch)
            if self._on_line:
                for item in items:
                    if isinstance(item, LogLine):
                        self._on_line(self.label, item.text)
        except Exception:  # the link outlives any bad frame; the port stays open
            self.errors += 1
            log.exception("node pipeline failed on serial %s", self.label)

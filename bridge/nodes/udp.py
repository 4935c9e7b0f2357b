"""UDP ingest: one socket for every node, drained in batches, handed off through a bounded queue.

The receive thread only reads: after a blocking wait it drains everything
the kernel holds (up to a batch) without blocking, then queues the batch for
the pipeline thread. When the pipeline falls behind, whole batches are
dropped and their datagrams counted, so memory stays bounded and the MQTT
client is never stalled by a burst of frames.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from typing import Callable

log = logging.getLogger(__name__)

BATCH = 256
MAX_DATAGRAM = 4096

Batch = list[tuple[bytes, tuple[str, int]]]


class UdpIngest:
    def __init__(self, bind: str, port: int, handle: Callable[[Batch], None],
                 max_queued: int = 20000) -> None:
        self.bind, self.port = bind, port
        self._handle = handle
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=max(1, max_queued // BATCH))
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.received = 0
        self.dropped = 0

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        try:
            sock.bind((self.bind, self.port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"cannot listen for nodes on UDP {self.bind}:{self.port}: "
                               f"{exc.strerror} (set nodes.udp.port)") from None
        sock.settimeout(0.2)
        self._sock = sock
        self.port = sock.getsockname()[1]
        for target, name in ((self._receive, "udp-receive"), (self._process, "node-pipeline")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("listening for RuView nodes on UDP %s:%d", self.bind, self.port)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        if self._sock:
            self._sock.close()

    @property
    def backlog(self) -> int:
        return self._queue.qsize() * BATCH

    def _receive(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            try:
                first = sock.recvfrom(MAX_DATAGRAM)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            batch: Batch = [first]
            sock.setblocking(False)
            try:
                while len(batch) < BATCH:
                    batch.append(sock.recvfrom(MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                pass
            finally:
                sock.settimeout(0.2)
            self.received += len(batch)
            try:
                self._queue.put_nowait(batch)
            except queue.Full:
                self.dropped += len(batch)

    def _process(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._handle(batch)
            except Exception:  # the pipeline must outlive any bad frame
                log.exception("node pipeline failed on a batch of %d datagrams", len(batch))

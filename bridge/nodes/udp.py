"""UDP ingest: one socket for every node, received in batches on one thread.

The bounded queue is the socket's own receive buffer, sized for
`nodes.udp.queue` datagrams. The ingest thread waits in a blocking receive
(no poll in front of it, no timeout on Linux: stop() wakes it at once by
shutting the socket, so with no node sending it does not wake at all). While traffic
is dense, or a backlog has built up, it takes everything the socket holds (up
to a batch; one recvmmsg call on Linux for a backlog); a datagram it had to
wait for in sparse traffic is taken alone. It runs each batch through the
pipeline, which only hands MQTT messages to the client's outbox, so the MQTT
connection is never stalled by frames. While datagrams come faster than one a millisecond (a smoothed mean),
it waits 1 ms after a small batch before it looks again: at 255 nodes x 10 Hz
one wakeup then serves several datagrams instead of one; sparser traffic is
taken at once, since waiting would only add a wakeup per datagram. When the
pipeline falls behind, the kernel drops what does not fit
and counts it; those drops are read back as `dropped`, so memory stays
bounded and loss is visible.

There is deliberately no receive thread in front of the pipeline: both would
need the GIL, so it could not drain the socket while the pipeline runs, and
the hand-off between them cost more than half the throughput (measured with
bench/nodes_throughput.py; see bench/README.md).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
import threading
import time
from typing import Callable

from bridge.core.supervisor import Spawn, Supervised, Supervisor
from bridge.nodes.recvmmsg import MSG_DONTWAIT, BatchReceiver

log = logging.getLogger(__name__)

SO_RCVBUFFORCE_LINUX = 33  # <asm-generic/socket.h>; Python 3.11's socket module does not name it
BATCH = 256
SMALL = 8  # datagrams taken one by one before a wakeup counts as a backlog
COALESCE = 0.001  # seconds a wakeup after a small batch waits for more (bench/nodes_cpu.py, nodes_latency.py)
QUEUED = 0.0002  # seconds: a receive that returned sooner found its datagram queued (a backlog)
MAX_DATAGRAM = 4096
# Seconds a receive waits before the loop looks at its stop flag again. On Linux, none: stop()'s
# shutdown wakes a waiting receive, so an idle ingest thread sleeps until a datagram comes
# (it woke five times a second for nothing before: python -m bench.nodes_idle).
RECEIVE_TIMEOUT = 0.0 if sys.platform.startswith("linux") else 0.2
KERNEL_BYTES_PER_DATAGRAM = 832  # what Linux charges a small datagram against the buffer

Batch = list[tuple[bytes, tuple[str, int]]]
_UNSUPPORTED = {errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP}  # e.g. a sandbox's seccomp filter


class UdpIngest:
    def __init__(self, bind: str, port: int, handle: Callable[[Batch], None],
                 max_queued: int = 20000, spawn: Spawn | None = None) -> None:
        self.bind, self.port = bind, port
        self._handle = handle
        self.max_queued = max_queued
        self._sock: socket.socket | None = None
        self._receiver: BatchReceiver | None = None
        self._stop = threading.Event()
        self._spawn = spawn or Supervisor().spawn
        self._thread: Supervised | None = None
        self.received = 0
        self.processed = 0  # datagrams the pipeline has finished with
        self.buffer_bytes = 0

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        self.buffer_bytes = _size_receive_buffer(sock, self.max_queued * KERNEL_BYTES_PER_DATAGRAM)
        try:
            sock.bind((self.bind, self.port))
        except OSError as exc:
            sock.close()
            why = "address in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()
            key = "nodes.udp.bind" if exc.errno == errno.EADDRNOTAVAIL else "nodes.udp.port"
            raise RuntimeError(f"cannot listen for nodes on UDP {self.bind}:{self.port}: {why}; set {key}") from None
        # Blocking receives that give up after RECEIVE_TIMEOUT where it is set (the kernel's timer,
        # not Python's settimeout, which polls before every receive); stop() wakes a waiting one.
        if RECEIVE_TIMEOUT:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(RECEIVE_TIMEOUT))
        self._sock = sock
        self.port = sock.getsockname()[1]
        if BatchReceiver.available():
            self._receiver = BatchReceiver(sock, BATCH, MAX_DATAGRAM)
        self._thread = self._spawn("udp-ingest", self._run, self._stop)
        log.info("listening for RuView nodes on UDP %s:%d", self.bind, self.port)

    def stop(self) -> None:
        self._stop.set()
        if self._sock:
            try:
                self._sock.shutdown(socket.SHUT_RD)  # Linux wakes the waiting receive, then says ENOTCONN
            except OSError:
                pass
        if self._thread:
            self._thread.join(2)
        if self._sock:
            self._sock.close()

    @property
    def dropped(self) -> int:
        """Datagrams the kernel dropped because the pipeline was behind and the buffer full.

        A datagram over MAX_DATAGRAM is not dropped here: it reaches the decoder cut short,
        on either receive path, and is counted there per source as a `length` error.
        """
        return self.stats()["dropped"]

    @property
    def backlog_bytes(self) -> int:
        return self.stats()["backlog_bytes"]

    def stats(self) -> dict[str, int]:
        """For bridge/health; reads the kernel's counters once."""
        backlog, drops = _socket_counters(self._sock) if self._sock else (0, 0)
        return {"received": self.received, "dropped": drops,
                "backlog_bytes": backlog, "buffer_bytes": self.buffer_bytes}

    def _receive(self, dense: bool) -> tuple[Batch, float]:
        """What the socket holds, up to a batch, after waiting up to RECEIVE_TIMEOUT for the first;
        and the monotonic time it was taken.

        The wait is the blocking receive itself, not a poll in front of it: at real node rates a
        wakeup finds one or two datagrams, and a poll (or recvmmsg's setup) costs nearly as much
        as the receive (bench/nodes_cpu.py). The socket is drained for `dense` traffic
        (datagrams less than COALESCE apart) and whenever the first datagram was already
        queued (the receive returned within QUEUED): a backlog, which must not stay behind.
        A datagram that had to be waited for is nearly always alone, and the failed
        non-blocking receive and its exception would cost about half as much again as the
        wakeup. A backlog past SMALL is taken with recvmmsg, a batch per system call."""
        sock = self._sock
        assert sock is not None  # start() sets it before it starts the thread that receives
        started = 0.0 if dense else time.monotonic()
        try:
            batch: Batch = [sock.recvfrom(MAX_DATAGRAM)]
        except (BlockingIOError, InterruptedError):
            return [], 0.0
        if not dense:
            woke = time.monotonic()
            if woke - started > QUEUED:
                return batch, woke
        if self._drain(batch, SMALL):
            self._take_backlog(batch)
        return batch, time.monotonic()

    def _take_backlog(self, batch: Batch) -> None:
        """More than SMALL were queued: add the rest, up to a batch (recvmmsg where it is allowed)."""
        if self._receiver is not None:
            try:
                batch.extend(self._receiver.receive())
                return
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                log.info("recvmmsg is not allowed here (%s); receiving one datagram per call", exc)
                self._receiver = None
        self._drain(batch, BATCH)

    def _drain(self, batch: Batch, up_to: int) -> bool:
        """Add what the socket holds without waiting, until `batch` has `up_to`; False when it ran dry."""
        assert self._sock is not None  # start() sets it before it starts the thread that receives
        recvfrom = self._sock.recvfrom
        try:
            while len(batch) < up_to:
                batch.append(recvfrom(MAX_DATAGRAM, MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        return True

    def _run(self) -> None:
        stopping, receive = self._stop.is_set, self._receive
        dense, small, last, per_datagram = False, True, 0.0, 1.0  # mean seconds between datagrams, smoothed
        while not stopping():
            try:
                if dense and small:  # light but steady traffic: let a few more arrive, one wakeup for several
                    time.sleep(COALESCE)
                batch, now = receive(dense)
                if stopping():  # stop() shut the socket to end the wait
                    return
                # Waiting pays only when another datagram is due within it: for sparser
                # traffic it adds a wakeup per datagram, and a backlog is taken at once anyway.
                if batch:
                    per_datagram += (min((now - last) / len(batch), 1.0) - per_datagram) * 0.1
                    last = now
                    dense, small = per_datagram < COALESCE, len(batch) < SMALL
            except OSError as exc:
                if stopping():
                    return
                log.warning("UDP receive failed: %s", exc)
                continue
            if not batch:
                continue
            self.received += len(batch)
            try:
                self._handle(batch)
            except Exception:  # the pipeline must outlive any bad frame
                log.exception("node pipeline failed on a batch of %d datagrams", len(batch))
            self.processed += len(batch)


def _size_receive_buffer(sock: socket.socket, wanted: int) -> int:
    """Ask for `wanted` bytes of receive buffer (root may exceed net.core.rmem_max); returns what we got."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted // 2)  # Linux doubles it
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    force = getattr(socket, "SO_RCVBUFFORCE", SO_RCVBUFFORCE_LINUX if sys.platform == "linux" else None)
    if got < wanted and force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, wanted // 2)
            got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except PermissionError:
            pass
    if got < wanted:
        log.info("the UDP receive buffer holds %d bytes, not the %d that nodes.udp.queue asks for: "
                    "bursts beyond about %d datagrams are dropped (raise the limit with "
                    "`sysctl -w net.core.rmem_max=%d`)", got, wanted,
                    got // KERNEL_BYTES_PER_DATAGRAM, wanted)
    return got


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))


def _socket_counters(sock: socket.socket) -> tuple[int, int]:
    """(bytes queued, datagrams dropped) for this socket from /proc/net/udp; zeros where unknown."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return 0, 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if len(cols) > 12 and cols[9] == inode:
                        return int(cols[4].split(":")[1], 16), int(cols[12])
        except OSError:
            continue
    return 0, 0

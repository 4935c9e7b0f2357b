"""UDP ingest on real sockets: batch receive, source addresses, bounded buffer, counted drops."""

from __future__ import annotations

import errno
import os
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

import pytest

from bridge.nodes import udp
from bridge.nodes.recvmmsg import BatchReceiver
from bridge.nodes.udp import UdpIngest
from tests.polling import wait_until

needs_recvmmsg = pytest.mark.skipif(not BatchReceiver.available(), reason="recvmmsg is Linux-only")


def _bound(family=socket.AF_INET, host="127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


@contextmanager
def running(handle, **options) -> Iterator[UdpIngest]:
    ingest = UdpIngest("127.0.0.1", 0, handle, **options)
    ingest.start()
    try:
        yield ingest
    finally:
        ingest.stop()


def _sender(family=socket.AF_INET, host="127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


@needs_recvmmsg
def test_batch_receiver_keeps_bytes_order_and_each_sender():
    rx = _bound()
    a, b = _sender(), _sender()
    sent = []
    for i in range(300):
        sender = a if i % 3 else b
        payload = bytes([i % 256]) * (1 + i % 70)
        sender.sendto(payload, rx.getsockname())
        sent.append((payload, sender.getsockname()))
    receiver = BatchReceiver(rx, 128, 4096)
    got = []
    while len(got) < len(sent):
        batch = receiver.receive()
        assert batch, "the socket ran dry before every datagram arrived"
        assert len(batch) <= 128
        got.extend(batch)
    assert got == sent
    assert receiver.receive() == []


@needs_recvmmsg
def test_batch_receiver_cuts_an_oversized_datagram_to_its_slot_like_recvfrom():
    rx = _bound()
    tx = _sender()
    receiver = BatchReceiver(rx, 8, 64)
    tx.sendto(b"x" * 100, rx.getsockname())
    tx.sendto(b"y" * 10, rx.getsockname())
    batch = []
    assert wait_until(lambda: batch.extend(receiver.receive()) or len(batch) == 2, 2)
    assert [d for d, _ in batch] == [b"x" * 64, b"y" * 10]  # the decoder rejects the first by length


@needs_recvmmsg
def test_batch_receiver_reads_ipv6_sources():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        rx = _bound(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    tx = _sender(socket.AF_INET6, "::1")
    tx.sendto(b"hello", rx.getsockname()[:2])
    receiver = BatchReceiver(rx, 4, 64)
    batch = []
    assert wait_until(lambda: batch.extend(receiver.receive()) or batch, 2)
    assert batch == [(b"hello", ("::1", tx.getsockname()[1]))]


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
def test_ingest_hands_every_datagram_to_the_pipeline(monkeypatch, batched):
    if not batched:
        monkeypatch.setattr(BatchReceiver, "available", staticmethod(lambda: False))
    elif not BatchReceiver.available():
        pytest.skip("recvmmsg is Linux-only")
    got = []
    with running(got.extend) as ingest:
        tx = _sender()
        for i in range(1000):
            tx.sendto(i.to_bytes(4, "little"), ("127.0.0.1", ingest.port))
        assert wait_until(lambda: len(got) >= 1000, 5), f"{len(got)} of 1000 arrived"
        assert [int.from_bytes(d, "little") for d, _ in got] == list(range(1000))
        assert {addr for _, addr in got} == {tx.getsockname()}
        assert ingest.received == 1000 and ingest.dropped == 0


def test_a_stalled_pipeline_costs_counted_drops_and_bounded_memory():
    release = threading.Event()
    got = []

    def stalled(batch):
        release.wait(10)
        got.extend(batch)
    with running(stalled, max_queued=200) as ingest:
        try:
            capacity = ingest.buffer_bytes // udp.KERNEL_BYTES_PER_DATAGRAM
            assert capacity < 2000, "the buffer must be bounded by nodes.udp.queue"
            tx = _sender()
            for i in range(3000):
                tx.sendto(b"%06d" % i, ("127.0.0.1", ingest.port))
            assert wait_until(lambda: ingest.dropped > 0, 5), "the kernel should have dropped the excess"
            assert ingest.backlog_bytes > 0
            release.set()
            assert wait_until(lambda: ingest.received + ingest.dropped >= 3000, 5)
            assert ingest.received + ingest.dropped == 3000
            assert ingest.received <= capacity + udp.BATCH + 1  # what was in flight plus the buffer
            assert wait_until(lambda: len(got) == ingest.received, 5)
        finally:
            release.set()


def test_a_pipeline_error_does_not_stop_ingest():
    got = []

    def fragile(batch):
        if any(d == b"boom" for d, _ in batch):
            raise RuntimeError("bad frame")
        got.extend(batch)
    with running(fragile) as ingest:
        tx = _sender()
        tx.sendto(b"boom", ("127.0.0.1", ingest.port))
        assert wait_until(lambda: ingest.received == 1, 2)
        tx.sendto(b"fine", ("127.0.0.1", ingest.port))
        assert wait_until(lambda: got, 2) and got[0][0] == b"fine"


def test_a_taken_port_is_a_clear_error():
    holder = _bound()
    ingest = UdpIngest("127.0.0.1", holder.getsockname()[1], lambda batch: None)
    with pytest.raises(RuntimeError, match="nodes.udp.port"):
        ingest.start()


def test_a_sandbox_without_recvmmsg_falls_back_to_recvfrom(monkeypatch):
    def refused(self):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(BatchReceiver, "receive", refused)
    got = []
    with running(got.extend) as ingest:
        tx = _sender()
        for i in range(10):
            tx.sendto(b"%d" % i, ("127.0.0.1", ingest.port))
        assert wait_until(lambda: len(got) == 10, 5), f"{len(got)} of 10 arrived"
        assert [d for d, _ in got] == [b"%d" % i for i in range(10)]


def test_as_root_the_buffer_is_raised_past_rmem_max_to_what_nodes_udp_queue_asks():
    import os
    rmem_max = int(open("/proc/sys/net/core/rmem_max").read())
    queue = 2 * rmem_max // udp.KERNEL_BYTES_PER_DATAGRAM + 100  # well beyond what rmem_max allows
    with running(lambda batch: None, max_queued=queue) as ingest:
        wanted = queue * udp.KERNEL_BYTES_PER_DATAGRAM
        if os.geteuid() == 0:  # SO_RCVBUFFORCE (by its Linux number where Python lacks the name)
            assert ingest.buffer_bytes >= wanted, (ingest.buffer_bytes, wanted, rmem_max)
        else:
            assert ingest.buffer_bytes <= 2 * rmem_max


class _CountingSocket:
    """The ingest's socket, counting the receives that may not wait (MSG_DONTWAIT)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock, self.non_blocking = sock, 0

    def recvfrom(self, size: int, flags: int = 0):
        if flags & udp.MSG_DONTWAIT:
            self.non_blocking += 1
        return self._sock.recvfrom(size, flags)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def _waiting_for_a_datagram(ingest: UdpIngest) -> bool:
    """The ingest thread is blocked in its receive (the kernel's wait channel for it)."""
    with open(f"/proc/self/task/{ingest._thread.thread.native_id}/wchan") as f:
        return "wait_for_more_packets" in f.read()


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux's /proc")
def test_sparse_traffic_is_taken_a_datagram_a_wakeup_and_a_backlog_in_batches():
    batches: list[int] = []
    with running(lambda batch: batches.append(len(batch))) as ingest:
        counting = ingest._sock = _CountingSocket(ingest._sock)
        tx = _sender()
        for i in range(5):  # a node's rate: each datagram arrives while the thread waits for it
            assert wait_until(lambda: _waiting_for_a_datagram(ingest), 2)
            threading.Event().wait(0.01)  # the gap between a node's datagrams (the scenario, not a wait)
            tx.sendto(b"%d" % i, ("127.0.0.1", ingest.port))
            assert wait_until(lambda: ingest.processed == i + 1, 2)
        assert batches == [1] * 5
        assert counting.non_blocking == 0, "a datagram that was waited for needs no look for a second"
        for i in range(3000):  # a burst: queued datagrams are taken in batches
            tx.sendto(b"%d" % i, ("127.0.0.1", ingest.port))
        assert wait_until(lambda: ingest.processed == 3005, 5), f"{ingest.processed} of 3005"
        assert max(batches) > udp.SMALL, "a backlog is taken in batches"


def test_a_backlog_behind_a_stall_is_taken_at_once_even_after_sparse_traffic():
    release, batches = threading.Event(), []

    def pipeline(batch):
        batches.append(len(batch))
        if len(batches) == 1:
            release.wait(10)  # a stall (a GC pause, a slow publish) while datagrams queue
    with running(pipeline) as ingest:
        tx = _sender()
        tx.sendto(b"first", ("127.0.0.1", ingest.port))
        assert wait_until(lambda: ingest.received == 1, 2)
        for i in range(100):
            tx.sendto(b"%d" % i, ("127.0.0.1", ingest.port))
        assert wait_until(lambda: ingest.stats()["backlog_bytes"] > 0, 2)
        release.set()
        assert wait_until(lambda: ingest.processed == 101, 5), f"{ingest.processed} of 101"
        assert batches[:2] == [1, 100], "the queued datagrams are one batch, not one a receive"

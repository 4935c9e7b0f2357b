"""Node frames per second through the whole bridge pipeline vs a bare receive loop.

Both sides get the same datagrams (simulated feature state, 5 Hz per node,
plus the 1 Hz vitals and mesh HEALTH the simulator adds) from a sender in
another process over loopback UDP. The sender keeps at most `--window`
datagrams in flight (it waits for the receiver's processed count), so the
measurement is the receiver's capacity and nothing is dropped below the
socket; kernel drops (/proc/net/snmp RcvbufErrors, every socket) and the
bridge socket's own drops (`nodes.udp.dropped`) are reported and must be zero.

- baseline: one thread, `recvfrom` + `struct.unpack` + `zlib.crc32` per
  datagram and nothing else (the early reference watcher);
- bridge: UdpIngest -> decode -> CRC -> registry -> privacy gate ->
  presence engine -> rate-limited node state on a real Mosquitto.

    python -m bench.nodes_throughput [--nodes 200] [--frames 200000] [--rounds 3]

A closed-loop capacity probe: the sender's window keeps the socket full, so every wakeup finds
a full batch and "no drops" holds by construction, and the bridge runs in this process. It
says how fast the pipeline can go at best, not what a user's bridge takes: that is
bench/nodes_open_loop.py (open loop, the bridge as its own process), whose figures the docs quote.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import struct
import time
import zlib

from bench.harness import start_nodes_bridge
from firmware_tools.simulate import generate, make_nodes
from tests.brokers import Mosquitto, free_port

_MAGIC = struct.Struct("<I")
_CRC = struct.Struct("<I")
_FEATURE_STATE = struct.Struct("<IBBHQfffffffffHbBI")


def udp_rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def datagrams(nodes: int, count: int) -> list[bytes]:
    seconds = count / nodes / 5 * 0.85 + 1  # 5 Hz feature state plus 1 Hz vitals, HEALTH
    out = [d for _, d in generate(make_nodes(nodes, "visit", seconds), seconds)]
    return out[:count]


def sender(port: int, data: list[bytes], processed, window: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", port)
    for i, d in enumerate(data):
        if i & 63 == 0:
            while i - processed.value > window:
                time.sleep(0.0001)
        sock.sendto(d, target)


def run(receive, port: int, data: list[bytes], processed, window: int) -> tuple[float, int]:
    """(frames/s, frames lost) of `receive`, which returns when every datagram is processed."""
    processed.value = 0
    proc = multiprocessing.get_context("fork").Process(target=sender, args=(port, data, processed, window))
    start = time.perf_counter()
    proc.start()
    receive(len(data), proc)
    elapsed = time.perf_counter() - start
    proc.join()
    return processed.value / elapsed, len(data) - processed.value


def baseline_receiver(processed, busy: list[float]):
    """The bare loop; appends to `busy` the share of its run it spent on the CPU (the rest it
    waited for the sender, so its CPU-bound rate is rate / busy)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))

    def receive(n: int, sender) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            loop(n)
        finally:
            busy.append((time.thread_time() - cpu) / (time.perf_counter() - wall))

    def loop(n: int) -> None:
        sock.settimeout(2)  # a lost datagram must end the run, not hang it
        count = valid = 0
        recvfrom, unpack_from, crc32 = sock.recvfrom, _MAGIC.unpack_from, zlib.crc32
        while count < n:
            try:
                data, _ = recvfrom(4096)
            except socket.timeout:
                break
            magic = unpack_from(data)[0]
            if magic == 0xC5110006 and len(data) >= 60:
                _FEATURE_STATE.unpack_from(data)
            if crc32(data[:-4]) == _CRC.unpack_from(data, len(data) - 4)[0]:
                valid += 1
            count += 1
            if count & 63 == 0:
                processed.value = count
        processed.value = count
    return sock, receive


def bridge_receiver(broker_port: int, processed, round_no: int):
    udp_port = free_port()
    bridge, ext = start_nodes_bridge(broker_port, f"bench{round_no}",
                                     nodes={"udp": {"bind": "127.0.0.1", "port": udp_port}})
    handle = ext.udp._handle
    count = [0]

    def counted(batch):
        handle(batch)
        count[0] += len(batch)
        processed.value = count[0]
    ext.udp._handle = counted

    def receive(n: int, sender) -> None:
        last, idle_since = -1, time.monotonic()
        while processed.value < n:
            time.sleep(0.001)
            if processed.value != last:
                last, idle_since = processed.value, time.monotonic()
            elif not sender.is_alive() and time.monotonic() - idle_since > 2:
                break  # lost datagrams: the round reports them
    return bridge, ext, udp_port, receive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=200, help="virtual nodes (node ids are u8: <= 255)")
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=2000, help="datagrams in flight")
    args = parser.parse_args()
    data = datagrams(args.nodes, args.frames)
    processed = multiprocessing.get_context("fork").Value("q", 0, lock=False)
    broker = Mosquitto().start()
    base_rates, bridge_rates, base_busy = [], [], []
    try:
        for r in range(args.rounds):
            kernel_drops = udp_rcvbuf_errors()
            sock, receive = baseline_receiver(processed, base_busy)
            rate, base_lost = run(receive, sock.getsockname()[1], data, processed, args.window)
            base_rates.append(rate)
            sock.close()
            bridge, ext, port, receive = bridge_receiver(broker.port, processed, r)
            rate, lost = run(receive, port, data, processed, args.window)
            bridge_rates.append(rate)
            published = bridge.mqtt.stats()["published"]
            socket_drops = ext.udp.dropped
            bridge.stop()
            kernel_drops = udp_rcvbuf_errors() - kernel_drops
            print(f"round {r + 1}: baseline {base_rates[-1]:9.0f} frames/s   bridge {bridge_rates[-1]:9.0f} "
                  f"frames/s   ratio {bridge_rates[-1] / base_rates[-1]:.2f}   lost: baseline {base_lost}, "
                  f"bridge {lost} (kernel {kernel_drops}, bridge socket {socket_drops})   published {published}",
                  flush=True)
    finally:
        broker.cleanup()
    b, n = statistics.median(base_rates), statistics.median(bridge_rates)
    print(f"median over {args.rounds} rounds of {len(data)} datagrams from {args.nodes} nodes:")
    print(f"  baseline recvfrom+unpack+crc32 {b:9.0f} frames/s")
    print(f"  bridge pipeline to MQTT        {n:9.0f} frames/s")
    print(f"  ratio bridge/baseline          {n / b:9.2f}   (target >= 0.5)")
    busy = statistics.median(base_busy)
    print(f"  the baseline loop was on the CPU {busy:.0%} of its run and waited for the sender the rest;")
    print(f"  its CPU-bound rate would be about {b / busy:.0f} frames/s, and the bridge {n / (b / busy):.2f} of that")


if __name__ == "__main__":
    main()

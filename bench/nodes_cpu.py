"""CPU a bridge costs at real node rates: the bridge as users run it vs a bare receive loop.

    python -m bench.nodes_cpu [--seconds 60] [--rounds 1] [--only 20x1|20x5|255x10]
    # 20 nodes x 1 Hz (the newest firmware's rate), 20 x 5 Hz, then 255 nodes x 10 Hz

The bridge runs as its own process exactly as users start it (`ruview-bridge run`, Home Assistant
discovery on, the default), on a real Mosquitto. One paced sender process sends every node's
feature state at the node rate (and vitals once a second) to the bridge and, datagram for
datagram, to a bare loop in a process of its own: blocking `recvfrom` + `struct.unpack` +
`zlib.crc32`, no timeout. CPU seconds of both come from /proc/<pid>/stat over the same window
(after a warm-up: 10 s of calibration, plus the paced HA announcement of every node). Target (issue 13): bridge CPU <= 2x the bare
loop's at both rates. Also prints the bridge's CPU per thread (ingest, MQTT network, ticker ...),
to show where it goes, and the floor: the ratio the bridge would have if its ingest thread cost no
more than the bare loop (the bare loop plus the bridge's other threads: publishing, the beat).
Exits 1 if the bridge did not take the frames (its frame counters, read
from its retained bridge/health, must show at least 99 % of what was sent in the window).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time


from bench.harness import HostSteal, bridge_process, frames_taken, stop
from bridge.homeassistant.extension import PACE_SECONDS
from firmware_tools.simulate import generate, make_nodes
from tests.brokers import Mosquitto, free_port, free_port_udp

WARMUP = 10.0  # seconds, plus the paced HA announcement (PACE_SECONDS a node)
INGEST_THREAD = "nodes-udp-inges"  # the OS keeps 15 bytes of "nodes-udp-ingest"
BARE = r'''
import socket, struct, sys, zlib
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("127.0.0.1", int(sys.argv[1])))
head = struct.Struct("<IBBHI")
n = 0
while True:
    data = s.recv(65536)
    if len(data) >= 16:
        head.unpack_from(data)
        zlib.crc32(data[:-4])
    n += 1
'''


def _task_cpu(pid: int, tid: str) -> tuple[str, float]:
    """(thread name, CPU seconds) of one thread, from its schedstat: nanoseconds, where /proc's
    stat counts 10 ms ticks and a 30 s window at 20 nodes x 1 Hz holds only a few of them."""
    with open(f"/proc/{pid}/task/{tid}/comm") as f:
        name = f.read().strip()
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return name, int(f.read().split()[0]) / 1e9


def cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds_by_thread(pid).values())


def cpu_seconds_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (the bridge names its threads for the OS; see core/supervisor.py)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name, seconds = _task_cpu(pid, tid)
        except (OSError, ValueError, IndexError):  # the thread ended
            continue
        out[name] = out.get(name, 0.0) + seconds
    return out


def floor_ratio(threads: dict[str, float], bare_pct: float) -> float:
    """(bare loop + every bridge thread but ingest) / bare loop: the ratio of a free pipeline."""
    others = sum(pct for name, pct in threads.items() if name != INGEST_THREAD)
    return (bare_pct + others) / bare_pct if bare_pct else float("inf")


def warmup(nodes: int) -> float:
    return WARMUP + PACE_SECONDS * nodes


def sender(ports: list[int], nodes: int, rate: float, seconds: float, sent_after_warmup) -> None:
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    count = 0
    for t, data in generate(make_nodes(nodes, "visit", seconds, rate=rate), seconds):
        delay = start + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for port in ports:
            sock.sendto(data, ("127.0.0.1", port))
        if t >= warmup(nodes):
            count += 1
    sent_after_warmup.value = count


def run(broker, nodes: int, rate: float, seconds: float) -> dict:
    udp, bare_port = free_port_udp(), free_port_udp()
    base = f"cpu{nodes}"
    with tempfile.TemporaryDirectory() as tmp:
        bridge = bridge_process({"mqtt": {"url": broker.url, "base_topic": base},
                                 "bridge": {"health_interval": 2, "state_dir": tmp}, "http": {"port": free_port()},
                                 "nodes": {"udp": {"bind": "127.0.0.1", "port": udp}}}, tmp)
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
        ctx = multiprocessing.get_context("spawn")
        sent = ctx.Value("q", 0)
        try:
            time.sleep(3)  # both listening, the bridge connected
            proc = ctx.Process(target=sender, args=([udp, bare_port], nodes, rate, seconds + warmup(nodes), sent))
            proc.start()
            time.sleep(warmup(nodes))
            taken_before = frames_taken(broker, base) or 0
            threads0, steal = cpu_seconds_by_thread(bridge.pid), HostSteal()
            b0, r0, t0 = cpu_seconds(bridge.pid), cpu_seconds(bare.pid), time.monotonic()
            proc.join(seconds + 60)
            b1, r1, t1 = cpu_seconds(bridge.pid), cpu_seconds(bare.pid), time.monotonic()
            threads1, steal_pct = cpu_seconds_by_thread(bridge.pid), steal.percent()
            time.sleep(2.5)  # one more health update
            taken = (frames_taken(broker, base) or 0) - taken_before
        finally:
            stop(bridge, bare)
    window = t1 - t0
    threads = {name: 100 * (cpu - threads0.get(name, 0.0)) / window for name, cpu in threads1.items()}
    return {"nodes": nodes, "rate": rate, "bridge_pct": 100 * (b1 - b0) / window,
            "bare_pct": 100 * (r1 - r0) / window, "sent": sent.value, "taken": taken, "steal": steal_pct,
            "threads": {name: pct for name, pct in sorted(threads.items(), key=lambda t: -t[1]) if pct >= 0.05}}


CONFIGS = {"20x1": [(20, 1.0)], "20x5": [(20, 5.0)], "255x10": [(255, 10.0)]}  # nodes x Hz; 1 Hz: new firmware


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=list(CONFIGS), help="one configuration only")
    args = parser.parse_args()
    broker = Mosquitto().start()
    failed = False
    try:
        print(f"CPU over {args.seconds:g} s after the warm-up, the bridge as `ruview-bridge run` "
              f"(HA discovery on) vs a bare recvfrom+unpack+crc32 loop, same datagrams:")
        for nodes, rate in CONFIGS[args.only] if args.only else [c for cs in CONFIGS.values() for c in cs]:
            for _ in range(args.rounds):
                r = run(broker, nodes, rate, args.seconds)
                ratio = r["bridge_pct"] / r["bare_pct"] if r["bare_pct"] else float("inf")
                ok = r["taken"] >= 0.99 * r["sent"]
                failed |= not ok
                print(f"  {nodes:3d} nodes x {rate:g} Hz: bridge {r['bridge_pct']:5.2f} % of a core, bare loop "
                      f"{r['bare_pct']:5.2f} %, ratio {ratio:4.2f} (target <= 2)   frames sent {r['sent']:,}, "
                      f"taken by the bridge {r['taken']:,}{'' if ok else '  FAIL: frames missing'}")
                print("      bridge threads: " + ", ".join(f"{name} {pct:.2f} %" for name, pct in r["threads"].items())
                      + f"; host steal {r['steal']:.1f} %")
                print(f"      floor, had ingest cost no more than the bare loop: ratio "
                      f"{floor_ratio(r['threads'], r['bare_pct']):4.2f}")
    finally:
        broker.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

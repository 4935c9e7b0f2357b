"""Open-loop throughput: the highest offered rate the bridge takes with zero drops, vs a bare loop.

A paced sender in C (compiled here with the system's cc; `sendmmsg`, 32 datagrams a call) offers
simulated node datagrams (200 nodes: feature state, vitals, mesh HEALTH) at a fixed rate for
`--seconds`, step after step, never waiting for the receiver — as nodes do — and sleeping, not
spinning, between calls. The pool holds a whole step, so node clocks and sequence numbers run
on through it as real nodes' do. Receivers, each its
own process, in the same run:

- the bridge exactly as users start it (`ruview-bridge run`, Home Assistant discovery on) on a
  real Mosquitto;
- the bare loop: blocking `recvfrom` + `struct.unpack` + `zlib.crc32`, no timeout.

A step is sustained when the receiver's socket dropped nothing (the kernel's per-socket drop
counter in /proc/net/udp, read after the socket drained) and, for the bridge, its own frame
counters (retained `bridge/health`) grew by every datagram sent. Both sides also get their CPU
seconds per datagram from /proc over the step.

    python -m bench.nodes_open_loop [--seconds 3] [--rates 5000,10000,...]

Prints the highest sustained rate of each and their ratio (issue 13's target: >= 0.5), and a
floor for the CPU ratio: what it would be if the bridge, after receiving as the bare loop does,
only decoded each datagram (`codec.decode`, timed here over the pool, warm, against the bare
loop's unpack + CRC), with nothing after it. Exits 1
when the work was not done: the sender could not offer a rate, or the bridge's counters are missing.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib

from bench.harness import HostSteal, bridge_process, frames_taken, stop
from bench.nodes_cpu import BARE, cpu_seconds
from bridge.homeassistant.extension import PACE_SECONDS
from bridge.nodes.codec import DecodeError, decode
from firmware_tools.simulate import generate, make_nodes
from tests.brokers import Mosquitto, free_port, free_port_udp

SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    int port = atoi(argv[1]); double rate = atof(argv[2]), seconds = atof(argv[3]);
    FILE *f = fopen(argv[4], "rb"); fseek(f, 0, SEEK_END); size_t n = ftell(f); fseek(f, 0, SEEK_SET);
    unsigned char *pool = malloc(n); if (fread(pool, 1, n, f) != n) return 2; fclose(f);
    int count = 0; size_t off = 0; struct iovec *iov = malloc(sizeof *iov * (n / 2));
    while (off + 2 <= n) { unsigned short l = pool[off] | pool[off + 1] << 8; iov[count].iov_base = pool + off + 2; iov[count].iov_len = l; off += 2 + l; count++; }
    int s = socket(AF_INET, SOCK_DGRAM, 0); int buf = 8 << 20; setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in to = {0}; to.sin_family = AF_INET; to.sin_port = htons(port); to.sin_addr.s_addr = htonl(0x7f000001);
    enum { B = 32 }; struct mmsghdr msgs[B]; memset(msgs, 0, sizeof msgs);
    long total = (long)(rate * seconds), sent = 0; int next = 0; double start = now();
    while (sent < total) {
        double due = start + sent / rate;
        double wait = due - now();
        if (wait > 0) { struct timespec ts = {0, (long)(wait * 1e9)}; nanosleep(&ts, NULL); continue; }
        int k = total - sent < B ? (int)(total - sent) : B;
        for (int i = 0; i < k; i++) { msgs[i].msg_hdr.msg_name = &to; msgs[i].msg_hdr.msg_namelen = sizeof to;
            msgs[i].msg_hdr.msg_iov = &iov[next]; msgs[i].msg_hdr.msg_iovlen = 1; next = (next + 1) % count; }
        int r = sendmmsg(s, msgs, k, 0); if (r > 0) sent += r;
    }
    printf("%ld %.6f\n", sent, now() - start); return 0;
}
"""
NODES = 200
DATAGRAMS_PER_NODE_SECOND = 6.03  # feature state at 5 Hz, vitals at 1 Hz, mesh HEALTH every 30 s
MAX_POOL = 1_000_000  # datagrams (about 60 MB); steps beyond it replay the pool
RATES = (5_000, 10_000, 20_000, 30_000, 40_000, 60_000, 80_000, 100_000, 110_000, 120_000, 135_000, 150_000,
         165_000, 180_000, 200_000, 220_000, 250_000, 275_000, 300_000, 350_000, 400_000, 500_000, 600_000,
         800_000)  # about 10 % apart where the bridge and the sender's limit are


def build_sender(tmp: str) -> str:
    src, exe = os.path.join(tmp, "sender.c"), os.path.join(tmp, "sender")
    with open(src, "w") as f:
        f.write(SENDER_C)
    subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
    return exe


def write_pool(path: str, datagrams: int) -> list[bytes]:
    """The simulated nodes' datagrams in time order, enough for a whole step: replayed from the
    start again, the pool would make every node look rebooted and its room change, at a rate
    real nodes never reach (with a 60,000-datagram pool at 120,000/s, twice a second)."""
    seconds = min(datagrams, MAX_POOL) / DATAGRAMS_PER_NODE_SECOND / NODES + 1
    frames = [data for _, data in generate(make_nodes(NODES, "visit", seconds), seconds)]
    with open(path, "wb") as f:
        for data in frames:
            f.write(struct.pack("<H", len(data)) + data)
    return frames


def decode_extra_us(frames: list[bytes]) -> float:
    """µs per datagram that a full decode costs beyond the bare loop's unpack + CRC (warm, here)."""
    head = struct.Struct("<IBBHI")

    def bare(data: bytes) -> None:  # what BARE (bench/nodes_cpu.py) does with each datagram
        if len(data) >= 16:
            head.unpack_from(data)
            zlib.crc32(data[:-4])

    def full(data: bytes) -> None:
        try:
            decode(data)
        except DecodeError:
            pass

    def per_frame(work) -> float:
        best = float("inf")
        for _ in range(3):
            t = time.thread_time()
            for data in frames:
                work(data)
            best = min(best, time.thread_time() - t)
        return best / len(frames) * 1e6
    return per_frame(full) - per_frame(bare)


def udp_counters(port: int) -> tuple[int, int]:
    """(bytes queued, datagrams dropped) of the socket bound to 127.0.0.1:port."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[1] == want:
                return int(cols[4].split(":")[1], 16), int(cols[12])
    raise RuntimeError(f"no socket on UDP port {port}")


def step(sender: str, pool: str, port: int, rate: int, seconds: float, pid: int) -> dict:
    _, drops0 = udp_counters(port)
    cpu0 = cpu_seconds(pid)
    out = subprocess.run([sender, str(port), str(rate), str(seconds), pool], capture_output=True, text=True,
                         check=True).stdout.split()
    sent, took = int(out[0]), float(out[1])
    deadline = time.monotonic() + 30
    while udp_counters(port)[0] and time.monotonic() < deadline:  # let the receiver drain its socket
        time.sleep(0.02)
    time.sleep(0.05)
    cpu1 = cpu_seconds(pid)
    _, drops1 = udp_counters(port)
    return {"rate": rate, "sent": sent, "offered": sent / took, "dropped": drops1 - drops0,
            "cpu_us_per_frame": (cpu1 - cpu0) / sent * 1e6}


def climb(label: str, sender: str, pool: str, port: int, pid: int, rates, seconds: float, check=None):
    best, rows = 0, []
    misses = 0
    for rate in rates:
        r = step(sender, pool, port, rate, seconds, pid)
        if r["offered"] < 0.95 * rate:  # the sender's own limit on this machine: no valid step beyond
            print(f"  {label:<7} {rate:>8,}/s: the sender offered only {r['offered']:,.0f}/s; steps end here")
            if not rows:
                raise RuntimeError("the sender cannot offer even the first step")
            return best, rows, True
        ok = r["dropped"] == 0 and (check is None or check(r))
        rows.append((r, ok))
        print(f"  {label:<7} {rate:>8,}/s offered {r['offered']:>10,.0f}/s  dropped {r['dropped']:>8,}  "
              f"CPU {r['cpu_us_per_frame']:6.2f} µs per datagram sent  {'sustained' if ok else 'NOT sustained'}")
        if ok:
            best, misses = rate, 0
        else:
            misses += 1
            if misses == 2:
                break
    return best, rows, False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default=",".join(str(r) for r in RATES))
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    broker = Mosquitto().start()
    base = "openloop"
    with tempfile.TemporaryDirectory() as tmp:
        sender, pool = build_sender(tmp), os.path.join(tmp, "pool.bin")
        frames = write_pool(pool, max(rates) * int(args.seconds + 1))
        n, extra = len(frames), decode_extra_us(frames[:100_000])
        del frames
        udp, bare_port = free_port_udp(), free_port_udp()
        bridge = bridge_process({"mqtt": {"url": broker.url, "base_topic": base}, "http": {"port": free_port()},
                                 "bridge": {"health_interval": 1, "state_dir": tmp},
                                 "nodes": {"udp": {"bind": "127.0.0.1", "port": udp}}}, tmp)
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
        try:
            time.sleep(3)
            # the first datagram from each node makes it known (and announced to HA): not part of a step
            step(sender, pool, udp, 2000, 1.0, bridge.pid)
            time.sleep(NODES * PACE_SECONDS + 2)  # the paced HA announcement
            steal = HostSteal()
            print(f"Open loop, a pool of {n:,} datagrams of {NODES} simulated nodes, steps of {args.seconds:g} s:")
            bare_best, bare_rows, bare_capped = climb("bare", sender, pool, bare_port, bare.pid, rates, args.seconds)
            state = {"taken": frames_taken(broker, base)}
            if state["taken"] is None:
                print("the bridge publishes no bridge/health: the work was not done", file=sys.stderr)
                return 1

            def counted(r):
                time.sleep(1.2)  # one more health update
                now = frames_taken(broker, base)
                ok = now is not None and now - state["taken"] >= r["sent"]
                state["taken"] = now if now is not None else state["taken"]
                return ok
            bridge_best, bridge_rows, _ = climb("bridge", sender, pool, udp, bridge.pid, rates, args.seconds, counted)
        finally:
            stop(bridge, bare)
            broker.cleanup()
    ratio = bridge_best / bare_best if bare_best else 0.0
    ceiling = (" (the bare loop took every step the sender could offer: its limit is higher, the ratio lower)"
               if bare_capped or bare_best == rates[-1] else "")
    print(f"highest rate sustained with zero drops: bridge {bridge_best:,}/s, bare loop {bare_best:,}/s, "
          f"ratio {ratio:.2f} (target >= 0.5){ceiling}")
    if bridge_best:  # what a frame costs where both kept up: the ratio the sender's limit cannot hide
        bridge_cpu = next(r["cpu_us_per_frame"] for r, ok in bridge_rows if r["rate"] == bridge_best)
        bare_cpu = next((r["cpu_us_per_frame"] for r, ok in bare_rows if r["rate"] == bridge_best), None)
        if bare_cpu:
            print(f"CPU per datagram at {bridge_best:,}/s: bridge {bridge_cpu:.2f} µs, bare loop {bare_cpu:.2f} µs, "
                  f"ratio {bare_cpu / bridge_cpu:.2f}")
            print(f"floor, had the bridge only decoded each datagram (+{extra:.2f} µs beyond the bare loop's "
                  f"unpack + CRC): CPU ratio at most {bare_cpu / (bare_cpu + extra):.2f}")
    print(steal.line())
    return 0 if bridge_best else 1


if __name__ == "__main__":
    sys.exit(main())

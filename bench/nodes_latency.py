"""Frame-to-subscriber latency: 100 nodes at 10 Hz through a bridge process and a real Mosquitto.

The bridge runs as its own process (`ruview-bridge run`), as deployed. This
process sends edge-vitals frames over loopback UDP, 100 nodes x 10 Hz
(1,000 frames/s), each flipping its node's motion bit so that every frame
changes state and must be published at once; a subscriber here takes the
time each `<base>/node/<name>` state arrives and matches it by the node's
vitals frame counter to the frame's send time (one clock, one process).

Baseline in the same run: the same number of messages of the same size
published straight to the broker and timed to the same subscriber, which
is the floor any bridge adds to.

    python -m bench.nodes_latency [--seconds 30] [--nodes 100] [--rate 10] [--no-ha] [--no-http]

Home Assistant discovery is on, as users run the bridge: the one-time announcement of
every node (paced at 10 nodes/s, so 10 s for 100 nodes) falls in the timed window, and
its frames are also reported on their own row.

Targets: p50 <= 2 ms (issue 3), p99 <= 5 ms (issue 13), no frame lost. Exits 1 when a
frame's state never reached the subscriber, or none did.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time

import orjson
import paho.mqtt.client as paho

from bench.harness import HostSteal, bridge_process, percentile, stop
from bridge.homeassistant.extension import PACE_SECONDS
from bridge.nodes import codec
from tests.brokers import Mosquitto, free_port

WARMUP = 1.0  # seconds of sending not counted (connections and first publishes)


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        self.arrivals: list[tuple[float, bytes, bytes]] = []
        self._ready = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = lambda c, u, m: self.arrivals.append(
            (time.perf_counter(), m.topic.encode(), m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("subscriber got no SUBACK")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def paced(count: int, rate: float, send) -> list[float]:
    """Call send(i) count times at `rate` per second; returns each call's perf_counter time."""
    times, start = [], time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        times.append(time.perf_counter())
        send(i)
    return times


def vitals(node_id: int, k: int) -> bytes:
    return codec.encode_edge_vitals(codec.EdgeVitals(
        node_id, 0x04 if k % 2 else 0, 0.0, 0.0, -55, 1, 0.5 if k % 2 else 0.1, 1.0, 100 * k))


def run_bridge(broker_port: int, nodes: int, rate: float, seconds: float,
               ha: bool, http: bool = True) -> tuple[list[tuple[float, float]], int]:
    """(seconds into the run it was sent, ms until its state arrived) per timed frame, and frames lost."""
    udp_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = bridge_process({"mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}", "base_topic": "lat"},
                               "nodes": {"udp": {"bind": "127.0.0.1", "port": udp_port}},
                               "homeassistant": {"enabled": ha},
                               "http": {"port": free_port()} if http else {"enabled": False},
                               "bridge": {"state_dir": tmp}}, tmp)
        try:
            sub = Subscriber(broker_port, "lat/node/+")
            time.sleep(2)  # the bridge connects
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            total = int(seconds * rate * nodes)
            sends = paced(total, rate * nodes, lambda i: sock.sendto(
                vitals(1 + i % nodes, 1 + i // nodes), ("127.0.0.1", udp_port)))
            time.sleep(1)
            sub.stop()
        finally:
            stop(proc)
    sent_at = {(1 + i % nodes, 1 + i // nodes): t for i, t in enumerate(sends)}
    start, timed, seen = sends[0] + WARMUP, [], set()
    for arrived, topic, payload in sub.arrivals:
        state = orjson.loads(payload)
        key = (state["node_id"], state["frames"].get("vitals", 0))
        if key in sent_at and key not in seen:
            seen.add(key)
            if sent_at[key] >= start:
                timed.append((sent_at[key] - sends[0], (arrived - sent_at[key]) * 1000))
    lost = len(sent_at) - len(seen)
    return timed, lost


def run_baseline(broker_port: int, count: int, rate: float, size: int) -> list[float]:
    sub = Subscriber(broker_port, "base/node/+")
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    pub.connect("127.0.0.1", broker_port)
    pub.loop_start()
    time.sleep(0.5)
    body = b"x" * size
    sends = paced(count, rate, lambda i: pub.publish(f"base/node/n{i % 100}", b"%08d" % i + body,
                                                    qos=1, retain=True))
    time.sleep(1)
    sub.stop()
    pub.loop_stop()
    start = sends[0] + WARMUP
    return [(arrived - sends[int(payload[:8])]) * 1000 for arrived, _, payload in sub.arrivals
            if sends[int(payload[:8])] >= start]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10, help="frames/s per node")
    parser.add_argument("--no-ha", dest="ha", action="store_false",
                        help="turn Home Assistant discovery off (it is on by default, as in config.yaml)")
    parser.add_argument("--no-http", dest="http", action="store_false",
                        help="turn the HTTP frontend off (on by default, as in config.yaml)")
    args = parser.parse_args()
    broker = Mosquitto().start()
    steal = HostSteal()
    try:
        timed, lost = run_bridge(broker.port, args.nodes, args.rate, args.seconds, args.ha, args.http)
        baseline = run_baseline(broker.port, int(args.seconds * args.rate * args.nodes),
                                args.rate * args.nodes, 420)
    finally:
        broker.cleanup()
    total = int(args.seconds * args.rate * args.nodes)
    print(f"{args.nodes} nodes x {args.rate:g} Hz for {args.seconds:g} s ({total} frames, first "
          f"{WARMUP:g} s not timed), Mosquitto on loopback, Home Assistant discovery "
          f"{'on' if args.ha else 'off'}:")
    if not timed:
        print("  no node state reached the subscriber: the work was not done", file=sys.stderr)
        return 1
    latencies = [ms for _, ms in timed]
    announcing = args.nodes * PACE_SECONDS if args.ha else 0.0
    rows = [("broker alone (publish -> subscriber)", baseline), ("bridge (UDP frame -> subscriber)", latencies)]
    if args.ha:
        rows += [(f"  while HA is announced (first {announcing:g} s)", [ms for t, ms in timed if t < announcing]),
                 ("  after", [ms for t, ms in timed if t >= announcing])]
    for label, values in rows:
        if values:
            print(f"  {label:38s} p50 {percentile(values, 50):6.2f} ms   p99 {percentile(values, 99):6.2f} ms"
                  f"   max {max(values):7.2f} ms   n={len(values)}")
    print(f"  frames lost: {lost}   (targets: p50 <= 2 ms, p99 <= 5 ms, none lost)")
    print(f"  ratio bridge/broker-alone p50: {statistics.median(latencies) / statistics.median(baseline):.1f}x, "
          f"p99: {percentile(latencies, 99) / percentile(baseline, 99):.1f}x")
    print(f"  {steal.line()}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

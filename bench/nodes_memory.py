"""Resident memory a bridge grows by when it tracks many nodes.

A bridge connected to a real Mosquitto is fed `--seconds` of node time of
feature state (5 Hz) and vitals (1 Hz) for each of `--nodes` nodes, so every
per-node structure reaches its steady size (smoothing window, learning,
registry, latest frames, retained-state cache, home-state mirrors), and all
node states are published. RSS is read from /proc before and after, after
a garbage collection, in the same process.

Node ids are one byte on the wire, so a real deployment tops out at 255
nodes per bridge; to measure 1,000 the frames go into the pipeline as
decoded frames rather than datagrams (everything after decoding is the same).

    python -m bench.nodes_memory [--nodes 1000] [--seconds 60] [--ha]

With --ha, Home Assistant discovery is on (the default in config.yaml): every node's discovery
configs are published (and kept), and the run waits until all of them are on the broker.

Target (issue 3): RSS growth <= 50 MB for 1,000 nodes.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import time

from bench.harness import start_nodes_bridge
from bridge.nodes import codec
from tests.brokers import Mosquitto


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def frames(node_id: int, seconds: float, rng: random.Random):
    for i in range(int(seconds * 5)):
        t = i / 5
        score = math.exp(rng.gauss(0.0 if (t // 20) % 2 == 0 else 2.0, 0.35))
        yield codec.FeatureState(node_id, 0, i % 65536, int(t * 1e6), 0.3, score, 14.0, 0.8,
                                 0.0, 0.0, 0.0, 0.0, 1.0, 0x03, -60)
        if i % 5 == 0:
            yield codec.EdgeVitals(node_id, 0x05, 14.0, 0.0, -60, 1, 0.4, score, int(t * 1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60, help="node time fed per node")
    parser.add_argument("--ha", action="store_true", help="with Home Assistant discovery on")
    args = parser.parse_args()
    broker = Mosquitto().start()
    try:
        bridge, ext = start_nodes_bridge(broker.port, "mem", mqtt={"outbox_size": 100_000},
                                         nodes={"udp": {"enabled": False}},
                                         homeassistant={"collect_seconds": 0.2} if args.ha else None)
        ha = bridge.extension("homeassistant") if args.ha else None
        if ha is not None:
            deadline = time.time() + 10
            while ha._collecting and time.time() < deadline:
                time.sleep(0.05)
        gc.collect()
        before = rss_mb()
        rng = random.Random(1)
        fed = 0
        for node_id in range(1, args.nodes + 1):
            now = time.time()
            with ext._pipeline:  # the same path handle() takes after decoding
                for frame in frames(node_id, args.seconds, rng):
                    ext._accept(frame, "127.0.0.1", 40000 + node_id % 1000, now)
                    fed += 1
                ext._publish_state(node_id, now)
        deadline = time.time() + 600
        while ha is not None and (ha._pacing or len(ha.nodes) < args.nodes) and time.time() < deadline:
            time.sleep(0.2)  # the announcement is paced: every node's configs, then done
        deadline = time.time() + 60
        while bridge.mqtt.stats()["outbox"] and time.time() < deadline:
            time.sleep(0.2)
        configs = len(ha.published) if ha is not None else 0
        gc.collect()
        after = rss_mb()
        tracked = len(ext.registry)
        bridge.stop()
    finally:
        broker.cleanup()
    growth = after - before
    print(f"{tracked} nodes tracked, {fed} frames fed ({args.seconds:g} s of node time each), "
          f"Home Assistant discovery {'on: ' + format(configs, ',') + ' configs published' if args.ha else 'off'}:")
    print(f"  RSS before {before:7.1f} MB   after {after:7.1f} MB   growth {growth:6.1f} MB "
          f"({growth * 1024 / tracked:.1f} KB per node)   target <= 50 MB for 1,000 nodes")


if __name__ == "__main__":
    main()

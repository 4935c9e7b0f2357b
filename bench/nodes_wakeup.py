"""What a datagram costs the node pipeline after a pause, against back to back: a cold wakeup's price.

    python -m bench.nodes_wakeup [--nodes 20] [--pause 8] [--datagrams 300] [--rounds 3]

At real node rates (20 nodes x 5 Hz: a datagram every 8 ms) each datagram meets a pipeline
whose code and data the machine's other work has pushed out of the caches since the last one.
This bench feeds simulated node datagrams one at a time through `NodePipeline.handle` (the
bridge in-process, on a real Mosquitto, Home Assistant discovery off) and takes the thread's
CPU time of each call, three ways, interleaved in rounds:

- back to back (the baseline);
- after a `--pause` ms sleep, as the ingest thread waits for the next datagram;
- after a `--pause` ms busy spin: the thread never sleeps, so whatever is lost was evicted by
  other work on the machine, not by the sleep itself.

Prints µs per datagram for each (medians over the rounds; the clock read itself, a system call
here, is in every figure alike) and the ratio to back to back. Exits 1 when the work was not
done: the registry must have counted every datagram fed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.harness import start_nodes_bridge
from firmware_tools.simulate import generate, make_nodes
from tests.brokers import Mosquitto

WARMUP_SECONDS = 30.0  # node time fed back to back first: calibration, learning, every node joined
SOURCE = ("127.0.0.1", 5005)


def frames_counted(nodes) -> int:
    return sum(sum(node.frames.values()) for node in nodes.registry.all())


def cost_us(handle, datagrams: list[bytes], pause: float, spin: bool) -> float:
    """Mean thread CPU µs of one handle() call, each after `pause` seconds of sleep or spin."""
    spent = 0.0
    for data in datagrams:
        if spin:
            until = time.perf_counter() + pause
            while time.perf_counter() < until:
                pass
        elif pause:
            time.sleep(pause)
        started = time.thread_time()
        handle([(data, SOURCE)])
        spent += time.thread_time() - started
    return spent / len(datagrams) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--pause", type=float, default=8.0, help="ms between datagrams")
    ap.add_argument("--datagrams", type=int, default=300, help="per way and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ways = (("back to back", 0.0, False), (f"after a {args.pause:g} ms sleep", args.pause / 1000, False),
            (f"after a {args.pause:g} ms spin", args.pause / 1000, True))
    measured = len(ways) * args.rounds * args.datagrams
    per_node_second = 6.0  # feature state at 5 Hz and vitals at 1 Hz
    seconds = WARMUP_SECONDS + measured / (args.nodes * per_node_second) + 2
    stream = [data for _, data in generate(make_nodes(args.nodes, "visit", seconds), seconds)]
    warm = int(WARMUP_SECONDS * args.nodes * per_node_second)
    if len(stream) < warm + measured:
        print(f"the simulator made {len(stream):,} datagrams, {warm + measured:,} needed", file=sys.stderr)
        return 1
    broker = Mosquitto().start()
    try:
        bridge, nodes = start_nodes_bridge(broker.port, "wakeup", nodes={"udp": {"enabled": False}})
        try:
            for data in stream[:warm]:
                nodes.pipeline.handle([(data, SOURCE)])
            before = frames_counted(nodes)
            rest = iter(stream[warm:warm + measured])
            results: dict[str, list[float]] = {name: [] for name, _, _ in ways}
            for _ in range(args.rounds):
                for name, pause, spin in ways:
                    batch = [next(rest) for _ in range(args.datagrams)]
                    results[name].append(cost_us(nodes.pipeline.handle, batch, pause, spin))
            counted = frames_counted(nodes) - before
        finally:
            bridge.stop()
    finally:
        broker.cleanup()
    print(f"One datagram at a time through the node pipeline ({args.nodes} nodes, in-process), "
          f"{args.datagrams} per way and round, {args.rounds} rounds, thread CPU per datagram:")
    base = statistics.median(results[ways[0][0]])
    for name, _, _ in ways:
        runs = results[name]
        mid = statistics.median(runs)
        print(f"  {name:<22} {mid:7.1f} µs  (rounds {' / '.join(f'{r:.1f}' for r in runs)})  "
              f"ratio {mid / base:5.2f}")
    if counted != measured:
        print(f"the registry counted {counted:,} datagrams of {measured:,} fed: the work was not done",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Resident memory a bridge grows by per node, with Home Assistant discovery on and off.

Each mode runs in a process of its own (so one cannot inherit the other's heap): a bridge
connected to a real Mosquitto is fed `--seconds` of node time of feature state (5 Hz) and
vitals (1 Hz) for each of `--nodes` nodes, so every per-node structure reaches its steady
size (smoothing window, learning, registry, latest frames, retained-state cache, home-state
mirrors), and every node state is published; with discovery on (the default in config.yaml)
the run also waits until every node's configs are announced. RSS is read from /proc before
and after, after a garbage collection.

Node ids are one byte on the wire, so a real deployment tops out at 255 nodes per bridge;
to measure 1,000 the frames go into the pipeline as decoded frames rather than datagrams
(everything after decoding is the same).

    python -m bench.nodes_memory [--nodes 1000] [--seconds 60]
    python -m bench.nodes_memory --start [--rounds 3]

`--start`: the bridge as users start it (`ruview-bridge run`, config.yaml's defaults: nodes,
Home Assistant discovery, the HTTP frontend) on a real Mosquitto: seconds from the process's
start until a separate `mosquitto_sub` sees its retained `bridge/state` online, and its RSS
(/proc/<pid>/status) two seconds later; then the same with every feature on (plugins, HomeKit,
assist). Targets (issue 38): RSS with the defaults <= 60 MB, start to online <= 1 s; exits 1
when missed.

Prints KB per node in both modes and their ratio. Targets: <= 30 KB per node with discovery
on (issue 13), <= 50 MB for 1,000 nodes (issue 3). Exits 1 when the work was not done: a
separate `mosquitto_sub` must find every node's retained state, and with discovery on every
config the bridge says it published, retained on the broker.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import subprocess
import sys
import time

from bench.harness import start_nodes_bridge
from bridge.nodes import codec
from bridge.nodes import pipeline as nodes_pipeline
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


def measure(nodes: int, seconds: float, ha: bool) -> dict:
    broker = Mosquitto().start()
    try:
        bridge, ext = start_nodes_bridge(broker.port, "mem", mqtt={"outbox_size": 100_000},
                                         nodes={"udp": {"enabled": False}},
                                         homeassistant={"collect_seconds": 0.2} if ha else None)
        ext_ha = bridge.extension("homeassistant") if ha else None
        if ext_ha is not None:
            deadline = time.time() + 10
            while ext_ha._collecting and time.time() < deadline:
                time.sleep(0.05)
        gc.collect()
        before = rss_mb()
        rng = random.Random(1)
        fed = 0
        nodes_pipeline.decode = lambda frame: frame  # already decoded: ids past 255 do not fit the wire
        for node_id in range(1, nodes + 1):
            source = ("127.0.0.1", 40000 + node_id % 1000)
            batch = [(frame, source) for frame in frames(node_id, seconds, rng)]
            ext.pipeline.handle(batch)  # the pipeline's own path from there on
            fed += len(batch)
            with ext.pipeline.lock:
                ext.pipeline._publish_state(node_id, time.time())
        deadline = time.time() + 600
        while ext_ha is not None and (ext_ha._pacing or len(ext_ha.nodes) < nodes) and time.time() < deadline:
            time.sleep(0.2)  # the announcement is paced: every node's configs, then done
        deadline = time.time() + 60
        while (bridge.mqtt.stats()["outbox"] or bridge.mqtt.stats()["unacknowledged"]) and time.time() < deadline:
            time.sleep(0.2)
        configs = len(ext_ha.published) if ext_ha is not None else 0
        gc.collect()
        after = rss_mb()
        tracked = len(ext.registry)
        on_broker = retained_counts(broker.port, ha)
        bridge.stop()
    finally:
        broker.cleanup()
    return {"ha": ha, "tracked": tracked, "fed": fed, "configs": configs, "before": before, "after": after,
            "states_on_broker": on_broker["states"], "configs_on_broker": on_broker["configs"]}


def retained_counts(port: int, ha: bool) -> dict[str, int]:
    """What a separate subscriber finds retained: node states, and discovery configs."""
    topics = ["-t", "mem/node/+"] + (["-t", "homeassistant/#"] if ha else [])
    out = subprocess.run(["mosquitto_sub", "-p", str(port), *topics, "-v", "--retained-only", "-W", "5"],
                         capture_output=True, text=True).stdout.splitlines()
    configs = sum(1 for line in out if line.startswith("homeassistant/") and line.split(" ", 1)[0].endswith("/config"))
    return {"states": sum(1 for line in out if line.startswith("mem/node/")), "configs": configs}


def started(broker: Mosquitto, features: dict, tmp: str) -> tuple[float, float]:
    """(seconds from spawn to `bridge/state` online on the broker, RSS in MB two seconds later)."""
    import yaml

    from bench.harness import stop
    from tests.brokers import free_port, free_port_udp

    base = f"start{free_port()}"
    config = {"mqtt": {"url": broker.url, "base_topic": base}, "bridge": {"state_dir": tmp},
              "nodes": {"udp": {"bind": "127.0.0.1", "port": free_port_udp()}},
              "http": {"port": free_port()}, **features}
    watcher = subprocess.Popen(["mosquitto_sub", "-p", str(broker.port), "-t", f"{base}/bridge/state", "-C", "1",
                                "-W", "30"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)  # subscribed before the bridge starts
    began = time.monotonic()
    path = f"{tmp}/config.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", path, "--no-status", "--log-level",
                             "error"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        line = watcher.stdout.readline() if watcher.stdout else ""
        online = time.monotonic() - began
        if "online" not in line:
            raise RuntimeError(f"the bridge never said online (got {line!r})")
        time.sleep(2.0)
        with open(f"/proc/{proc.pid}/status") as f:
            rss = next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))
    finally:
        stop(proc)
        watcher.kill()
    return online, rss


COMPONENTS = ("pydantic", "paho.mqtt.client", "bridge.app", "bridge.nodes.extension",
              "bridge.homeassistant.extension", "aiohttp.web", "bridge.http.extension")
_COMPONENTS = """
import importlib, json, sys
def rss():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith('VmRSS:'))
out = [('python', rss())]
for name in sys.argv[1:]:
    before = rss()
    importlib.import_module(name)
    out.append((name, rss() - before))
print(json.dumps(out))
"""


def components() -> list[tuple[str, float]]:
    """What each part of a default bridge adds to RSS when imported, in start order (a fresh process)."""
    out = subprocess.run([sys.executable, "-c", _COMPONENTS, *COMPONENTS], capture_output=True, text=True,
                         check=True).stdout
    return [(name, mb) for name, mb in json.loads(out)]


def start_main(rounds: int) -> int:
    import tempfile

    every = {"plugins": {"enabled": True}, "homekit": {"enabled": True, "port": 0},
             "assist": {"enabled": True}}
    broker = Mosquitto().start()
    failed = False
    try:
        for label, features in (("defaults", {}), ("defaults, HTTP frontend off", {"http": {"enabled": False}}),
                                ("every feature on", every)):
            runs = []
            for _ in range(rounds):
                with tempfile.TemporaryDirectory() as tmp:
                    if "homekit" in features:
                        from tests.brokers import free_port
                        features["homekit"]["port"] = free_port()
                    runs.append(started(broker, features, tmp))
            onl = [r[0] for r in runs]
            rss = [r[1] for r in runs]
            bad = label == "defaults" and (max(rss) > 60 or max(onl) > 1.0)
            failed |= bad
            print(f"  {label:<28} start to online {min(onl):.2f}-{max(onl):.2f} s, RSS after start "
                  f"{min(rss):.1f}-{max(rss):.1f} MB ({rounds} runs){'   FAIL: targets 60 MB, 1 s' if bad else ''}")
    finally:
        broker.cleanup()
    print("  RSS each part adds when imported (MB): " + ", ".join(f"{n} {mb:.1f}" for n, mb in components()))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60, help="node time fed per node")
    parser.add_argument("--only", choices=("on", "off"), help=argparse.SUPPRESS)  # one mode, in this process
    parser.add_argument("--start", action="store_true", help="RSS and time to online of `ruview-bridge run`")
    parser.add_argument("--rounds", type=int, default=3, help="runs of --start per configuration")
    args = parser.parse_args()
    if args.start:
        print("`ruview-bridge run` on a real Mosquitto, each run a process of its own:")
        return start_main(args.rounds)
    if args.only:
        print(json.dumps(measure(args.nodes, args.seconds, args.only == "on")))
        return 0
    results, failed = {}, False
    print(f"{args.nodes} nodes, {args.seconds:g} s of node time each (5 Hz feature state, 1 Hz vitals), "
          "each mode in its own process:")
    for mode in ("off", "on"):
        out = subprocess.run([sys.executable, "-m", "bench.nodes_memory", "--nodes", str(args.nodes),
                              "--seconds", str(args.seconds), "--only", mode],
                             capture_output=True, text=True, check=True).stdout.splitlines()[-1]
        r = results[mode] = json.loads(out)
        growth = r["after"] - r["before"]
        r["per_node"] = growth * 1024 / r["tracked"]
        problems = []
        if r["tracked"] != args.nodes:
            problems.append(f"{r['tracked']} nodes tracked")
        if r["states_on_broker"] != args.nodes:
            problems.append(f"{r['states_on_broker']} node states retained on the broker")
        if r["ha"] and (r["configs"] < 20 * args.nodes or r["configs_on_broker"] != r["configs"]):
            problems.append(f"{r['configs']:,} configs published, {r['configs_on_broker']:,} retained on the broker")
        failed |= bool(problems)
        print(f"  HA discovery {mode:<3}: RSS {r['before']:6.1f} -> {r['after']:6.1f} MB, growth {growth:5.1f} MB "
              f"= {r['per_node']:5.1f} KB per node   (retained on the broker: {r['states_on_broker']:,} node states"
              f"{', ' + format(r['configs_on_broker'], ',') + ' configs' if r['ha'] else ''})"
              f"{'  FAIL: ' + '; '.join(problems) if problems else ''}")
    on, off = results["on"]["per_node"], results["off"]["per_node"]
    print(f"  with discovery on / off: {on / off:.2f}x; {on:.1f} KB per node with it on (target <= 30), "
          f"{on * 1000 / 1024:.1f} MB for 1,000 nodes (target <= 50)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

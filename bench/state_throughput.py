"""State changes per second through the bridge's state machine vs raw paho-mqtt.

Both sides publish QoS 1 retained state JSON of the same shape and size to a
real Mosquitto (started here on a free port), and the clock stops when a
separate `mosquitto_sub` process has received every message. The ratio
bridge/raw says what the bridge's layer (validation, change detection,
context ids, timestamps, JSON, outbox bookkeeping) costs. Since issue 30 the
bridge conflates while the link is behind (each entity's newest state, not
every write: bridge/core/state.py), so its side is timed until the subscriber
has every entity's last state, and says how many of its writes it published.

    python -m bench.state_throughput [--changes 20000] [--rounds 3] [--protocol auto|3.1.1]

Targets (issue 2): ratio >= 0.67 and >= 5,000 state changes/s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time

import orjson
import paho.mqtt.client as paho

from bridge.app import build_bridge
from bridge.core.context import new_context_id, utc_now_iso
from bridge.catalog import validate_config
from tests.brokers import Mosquitto

ENTITIES = 100


def subscriber(port: int, topic_filter: str, count: int) -> subprocess.Popen:
    proc = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-p", str(port), "-q", "1", "-C", str(count),
                             "-t", topic_filter, "-d"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:  # wait for SUBACK so no message is missed
        if "SUBACK" in line:
            break
    # keep reading, or mosquitto_sub blocks on a full pipe
    threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
    return proc


def wait_done(proc: subprocess.Popen) -> None:
    proc.wait(120)


def payload(entity: str, i: int) -> bytes:
    now = utc_now_iso()
    return orjson.dumps({"entity_id": entity, "state": str(i), "attributes": {"unit": "W"},
                         "last_changed": now, "last_updated": now,
                         "context": {"id": new_context_id(), "parent_id": None, "user_id": None}})


def run_raw(port: int, n: int, prefix: str, protocol: int) -> float:
    messages = [(f"{prefix}/state/sensor.bench_{i % ENTITIES}",
                 payload(f"sensor.bench_{i % ENTITIES}", i)) for i in range(n)]
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=protocol)
    client.max_inflight_messages_set(20)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sub = subscriber(port, f"{prefix}/state/#", n)
    start = time.perf_counter()
    for topic, body in messages:
        client.publish(topic, body, qos=1, retain=True)
    wait_done(sub)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return n / elapsed


def run_bridge(port: int, n: int, base: str, protocol: str) -> float:
    """Until the subscriber has every entity's last state. While the link is behind, the bridge
    publishes each entity's newest state rather than every write (bridge/core/state.py), so it may
    send fewer than n messages; the rate is still n writes over the time they took to arrive."""
    config = validate_config({"mqtt": {"url": f"mqtt://127.0.0.1:{port}", "base_topic": base,
                                       "protocol": protocol, "outbox_size": n + 10},
                              "bridge": {"health_interval": 3600}}, env={})
    bridge = build_bridge(config, extensions=[])
    bridge.start()
    assert bridge.mqtt.wait_connected(10)
    last = {f"{base}/state/sensor.bench_{e}": str(max(range(e, n, ENTITIES))) for e in range(min(ENTITIES, n))}
    sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-p", str(port), "-q", "1", "-v", "-d",
                            "-t", f"{base}/state/#"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in sub.stdout:  # wait for SUBACK so no message is missed
        if "SUBACK" in line:
            break
    arrived = threading.Event()

    def read() -> None:
        for line in sub.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            if last.get(topic) is not None and payload.startswith("{") and \
                    orjson.loads(payload).get("state") == last[topic]:
                del last[topic]
                if not last:
                    arrived.set()

    threading.Thread(target=read, daemon=True).start()
    start = time.perf_counter()
    for i in range(n):
        bridge.states.set(f"sensor.bench_{i % ENTITIES}", i, {"unit": "W"})
    done = arrived.wait(120)
    elapsed = time.perf_counter() - start
    superseded = bridge.states.superseded
    sub.terminate()
    bridge.stop()
    print(f"  the bridge published {n - superseded:,} of its {n:,} writes (the rest superseded by a newer "
          "state of the same entity while the link was behind)", flush=True)
    assert done, f"the subscriber never had the last state of {len(last)} entities"
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--protocol", choices=["auto", "3.1.1"], default="auto")
    args = parser.parse_args()
    broker = Mosquitto().start()
    raw_proto = paho.MQTTv5 if args.protocol == "auto" else paho.MQTTv311
    raw, bridged = [], []
    try:
        for r in range(args.rounds):
            raw.append(run_raw(broker.port, args.changes, f"raw{r}", raw_proto))
            bridged.append(run_bridge(broker.port, args.changes, f"bridge{r}", args.protocol))
            print(f"round {r + 1}: raw paho {raw[-1]:8.0f}/s   bridge {bridged[-1]:8.0f}/s   "
                  f"ratio {bridged[-1] / raw[-1]:.2f}", flush=True)
    finally:
        broker.cleanup()
    raw_m, bridge_m = statistics.median(raw), statistics.median(bridged)
    ratio = bridge_m / raw_m
    print(f"median over {args.rounds} rounds of {args.changes} QoS 1 state changes "
          f"(MQTT {'5' if args.protocol == 'auto' else '3.1.1'}, Mosquitto, subscriber in another process):")
    print(f"  raw paho-mqtt      {raw_m:8.0f} changes/s")
    print(f"  bridge StateMachine {bridge_m:7.0f} changes/s")
    print(f"  ratio bridge/raw   {ratio:8.2f}   (target >= 0.67; >= 5000/s: "
          f"{'met' if bridge_m >= 5000 else 'NOT met'})")


if __name__ == "__main__":
    main()

"""Home Assistant's recorder applied to what the bridge publishes: rows per node per day.

Home Assistant records a state row when an entity's state (or its attributes) changes; a
message that renders the same state again is not a new row (MQTT entities' `force_update` is
false by default, and since 2024.4 an unchanged write only moves `last_reported`, which the
recorder does not store as a row: home-assistant/core#114201). A sensor that expires
(`expire_after` without a message) records `unavailable`, and its next value another row.

This bench runs the bridge's node pipeline in process on a simulated clock (a day takes
seconds), takes every message it publishes on a node's state topic, renders each entity of the
bridge's own discovery configs (bridge/homeassistant/discovery.py) with Jinja, as Home
Assistant does, and counts rows as the recorder would. Inputs:

- `recording`: the real two-node recording (tests/data), looped with its clocks and
  counters running on, for `--hours`;
- `visit 1 Hz`, `visit 10 Hz`: the simulator's visit scenario (someone in the room for the
  middle 40 % of the span) repeated every hour, one node at 1 Hz and one at 10 Hz.

Each is run with the bridge's default reporting policy, and (for `--baseline-hours`) with
`refresh: 0` and every numeric field reported on every change: the bridge before the policy.
Every presence, occupancy and motion edge the pipeline decides must be a recorded row at the
same frame (the latency of that publish is bench/nodes_latency.py's).

    python -m bench.ha_recorder [--hours 24] [--baseline-hours 2]

Prints numeric-sensor rows per node per day (target <= 1,000) and exits 1 if a target is
missed or an edge is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from contextlib import nullcontext
from types import SimpleNamespace
from typing import Any, Iterator

import jinja2

from bridge.core.directory import NodeDirectory, NodeInfo
from bridge.homeassistant.discovery import node_components
from bridge.homeassistant.extension import expire_after
from bridge.nodes import codec
from bridge.nodes.config import NodesConfig
from bridge.nodes.pipeline import NodePipeline
from bridge.nodes.recording import recording_datagrams
from bridge.nodes.registry import NodeRegistry
from bridge.nodes.reporting import FIELD_RULES
from bridge.privacy import PrivacyClass, PrivacyGate
from bridge.topics import Topics
from firmware_tools.simulate import Scenario, VirtualNode

RECORDING = "tests/data/ruview-2node-120s.csi.jsonl.gz"
EPOCH = 1_800_000_000.0  # the simulated clock's start (2027-01-15)
TARGET_ROWS = 1000
EDGE_KEYS = ("presence", "occupancy", "motion")
# the bridge before the reporting policy: its state on every beat, every number as measured
EVERY_BEAT = {"refresh": 0, "min_interval": 0, "heartbeat": 0,
              "fields": {name: {"delta": 0, "relative": 0, "smooth": 0} for name in FIELD_RULES}}


class _Mqtt:
    """What the pipeline publishes, stamped with the simulated clock."""

    def __init__(self, clock: list[float]) -> None:
        self.clock, self.sent = clock, []  # type: list[tuple[float, str, bytes]]

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, **_: Any) -> bool:
        self.sent.append((self.clock[0], topic, payload.encode() if isinstance(payload, str) else payload))
        return True

    def burst(self) -> Any:
        return nullcontext()


class _States:
    def set(self, *_: Any, **__: Any) -> None:
        pass

    def get(self, *_: Any) -> None:
        return None

    def remove(self, *_: Any) -> None:
        pass


def _pipeline(reporting: dict[str, Any] | None, clock: list[float]) -> NodePipeline:
    cfg = NodesConfig.model_validate({"udp": {"enabled": False}, **({"reporting": reporting} if reporting else {})})
    ctx = SimpleNamespace(config=cfg, topics=Topics("ruview"), mqtt=_Mqtt(clock), states=_States())
    return NodePipeline(ctx, PrivacyGate(cfg.privacy_class, {}), NodeRegistry({}), NodeDirectory())  # type: ignore[arg-type]


# ------------------------------------------------------------ inputs: (time s, source, datagram)

def recording(hours: float) -> Iterator[tuple[float, str, bytes]]:
    """The real recording, looped: device clocks, sequence numbers and host time run on."""
    one = [(d.t, d.src, codec.decode(d.data), d.data) for d in recording_datagrams(RECORDING)]
    span = one[-1][0] + 1.0
    counts = Counter((f.node_id, f.kind) for _, _, f, _ in one)
    for k in range(int(hours * 3600 / span) + 1):
        for t, src, f, data in one:
            t += k * span
            if t >= hours * 3600:
                return
            if isinstance(f, codec.EdgeVitals):
                data = codec.encode_edge_vitals(f._replace(timestamp_ms=f.timestamp_ms + int(k * span * 1000)))
            elif isinstance(f, codec.FeatureVector):
                data = codec.encode_feature_vector(f._replace(
                    timestamp_us=f.timestamp_us + int(k * span * 1e6),
                    seq=(f.seq + k * counts[(f.node_id, f.kind)]) % 65536))
            elif isinstance(f, codec.RawCsi):
                data = codec.encode_raw_csi(f.node_id, (f.seq + k * counts[(f.node_id, f.kind)]) % (1 << 32),
                                            data[20:], rssi=f.rssi)
            yield t, src, data


def visits(hours: float, rate: float, node_id: int) -> Iterator[tuple[float, str, bytes]]:
    """The simulator's visit scenario (in the room for the middle 40 %), once an hour."""
    scenario = Scenario("visit", visits=[(h * 3600 + 0.3 * 3600, h * 3600 + 0.7 * 3600) for h in range(int(hours) + 1)])
    for t, data in VirtualNode(node_id, scenario, rate).frames(hours * 3600):
        yield t, f"127.0.0.1:{40000 + node_id}", data


# ------------------------------------------------------------ the run and the recorder

def run(stream: Iterator[tuple[float, str, bytes]], hours: float, reporting: dict[str, Any] | None) -> dict[str, Any]:
    clock = [EPOCH]
    pipeline = _pipeline(reporting, clock)
    truth: dict[tuple[int, str], list[tuple[float, str]]] = {}  # the pipeline's decided edges
    shown: dict[tuple[int, str], str] = {}
    next_beat = EPOCH + 1.0
    frames = 0
    started = time.perf_counter()
    for t, src, data in stream:
        now = EPOCH + t
        while now >= next_beat:
            clock[0] = next_beat
            pipeline.flush_due(next_beat)
            pipeline.mark_silent_offline(next_beat)
            next_beat += 1.0
        clock[0] = now
        host, port = src.rsplit(":", 1)
        pipeline.handle([(data, (host, int(port)))], now=now)
        frames += 1
        node_id = data[4] if len(data) > 4 else 0
        view = pipeline.views.get(node_id)
        if view is None:
            continue
        for key in EDGE_KEYS:
            value = "ON" if getattr(view.flags, key) else "OFF"
            if shown.get((node_id, key), "OFF") != value:
                shown[(node_id, key)] = value
                truth.setdefault((node_id, key), []).append((now, value))
    end = EPOCH + hours * 3600
    while next_beat <= end:
        clock[0] = next_beat
        pipeline.flush_due(next_beat)
        next_beat += 1.0
    elapsed = time.perf_counter() - started
    return {"frames": frames, "elapsed": elapsed, "pipeline": pipeline, "truth": truth,
            "sent": pipeline.ctx.mqtt.sent}  # type: ignore[attr-defined]


def record(result: dict[str, Any], hours: float) -> dict[str, Any]:
    """The recorder's rows per entity, from the state messages as Home Assistant renders them."""
    pipeline: NodePipeline = result["pipeline"]
    env = jinja2.Environment()
    topics = pipeline.topics
    per_node: dict[str, Any] = {}
    for node in pipeline.registry.all():
        info = NodeInfo(node.node_id, node.name, node.room, PrivacyClass.ANONYMOUS, offline_after=pipeline.cfg.offline_after)
        limit = expire_after(info)
        entities = {oid: (c["platform"], env.from_string(c["value_template"]))
                    for oid, c in node_components(topics, info, limit).items()
                    if c.get("state_topic") == topics.node(node.name) and c["platform"] in ("sensor", "binary_sensor")}
        state_topic = topics.node(node.name)
        messages = [(t, json.loads(p)) for t, topic, p in result["sent"] if topic == state_topic and p]
        rows: Counter[str] = Counter()
        last: dict[str, str] = {}
        last_at: float | None = None
        changes: dict[str, list[tuple[float, str]]] = {}
        for t, value_json in messages:
            expired = last_at is not None and t - last_at > limit
            last_at = t
            for oid, (platform, template) in entities.items():
                if expired:
                    rows[oid] += 1
                    last[oid] = "unavailable"
                state = template.render(value_json=value_json)
                if last.get(oid) != state:
                    rows[oid] += 1
                    last[oid] = state
                    changes.setdefault(oid, []).append((t, state))
        numeric = {oid: rows[oid] for oid, (platform, _) in entities.items() if platform == "sensor"}
        missing = []
        for key in EDGE_KEYS:
            want = result["truth"].get((node.node_id, key), [])
            got = [c for c in changes.get(key, []) if not (c is changes[key][0] and c[1] == "OFF")]
            if [v for _, v in want] != [v for _, v in got] or any(abs(a[0] - b[0]) > 1e-6 for a, b in zip(want, got)):
                missing.append(f"{key}: decided {len(want)} edges, recorded {len(got)} (or at another time)")
        per_node[node.name] = {
            "messages_per_day": len(messages) * 24 / hours,
            "numeric_rows_per_day": sum(numeric.values()) * 24 / hours,
            "by_entity": {oid: round(n * 24 / hours) for oid, n in numeric.items()},
            "edges": {key: len(result["truth"].get((node.node_id, key), [])) for key in EDGE_KEYS},
            "missing": missing,
        }
    return per_node


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours per input, default policy")
    parser.add_argument("--baseline-hours", type=float, default=2.0,
                        help="simulated hours per input for the bridge before the policy (0: skip)")
    args = parser.parse_args()
    inputs = {
        "recording (2 nodes, ~1 Hz vitals, ~22 Hz raw CSI)": lambda h: recording(h),
        "visit 1 Hz": lambda h: visits(h, 1.0, 1),
        "visit 10 Hz": lambda h: visits(h, 10.0, 2),
    }
    failed = False
    print(f"Home Assistant recorder rows per node per day (numeric sensors, as if all enabled); "
          f"target <= {TARGET_ROWS:,}")
    for label, make in inputs.items():
        for policy, hours, reporting in (("default policy", args.hours, None),
                                         ("every beat (before)", args.baseline_hours, EVERY_BEAT)):
            if not hours:
                continue
            result = run(make(hours), hours, reporting)
            nodes = record(result, hours)
            for name, r in nodes.items():
                ok = r["numeric_rows_per_day"] <= TARGET_ROWS
                bad = policy == "default policy" and (not ok or r["missing"])
                failed |= bool(bad) or bool(r["missing"])
                top = ", ".join(f"{k} {v:,}" for k, v in sorted(r["by_entity"].items(), key=lambda kv: -kv[1]) if v)
                print(f"  {label:<48} {policy:<20} {name:<7} {r['numeric_rows_per_day']:>9,.0f} rows/day "
                      f"({top}); {r['messages_per_day']:,.0f} state messages/day; edges kept: "
                      f"{'all ' + str(sum(r['edges'].values())) if not r['missing'] else '; '.join(r['missing'])}"
                      f"{'   <-- over target' if policy == 'default policy' and not ok else ''}")
            print(f"      ({result['frames']:,} frames, {hours:g} h simulated in {result['elapsed']:.1f} s)")
    if failed:
        print("FAILED: a target was missed or an edge was not recorded")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

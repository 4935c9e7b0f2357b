"""Virtual RuView nodes: realistic frames for tests, benchmarks and demos.

Each node sends feature state at `rate` Hz (presence_score as raw variance:
about 1 in an empty room, about 8 with a person, log-normally noisy like
the real recording), edge vitals at 1 Hz, a mesh HEALTH every 30 s and,
optionally, raw CSI. Scenarios shape what the room does; `generate()`
yields (time, datagram) in time order so callers decide how to send.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from bridge.nodes import codec
from bridge.nodes.capture import send_datagrams

EMPTY_SCORE, PERSON_SCORE, SPREAD = 1.0, 8.0, 0.35


@dataclass
class Scenario:
    """What happens in a node's room: presence windows and faults."""

    name: str = "empty"
    visits: list[tuple[float, float]] = field(default_factory=list)  # (enter, leave) seconds
    breathing: bool = False
    reboot_at: float | None = None
    loss: float = 0.0  # probability a datagram is not sent
    corrupt: float = 0.0  # probability one byte of a datagram is flipped

    def present(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.visits)


SCENARIOS: dict[str, Callable[[float], Scenario]] = {
    "empty": lambda d: Scenario("empty"),
    "visit": lambda d: Scenario("visit", visits=[(d * 0.3, d * 0.7)]),
    "breathing": lambda d: Scenario("breathing", visits=[(0, d)], breathing=True),
    "reboot": lambda d: Scenario("reboot", visits=[(d * 0.3, d * 0.7)], reboot_at=d * 0.5),
    "loss": lambda d: Scenario("loss", visits=[(d * 0.3, d * 0.7)], loss=0.1),
    "corrupt": lambda d: Scenario("corrupt", visits=[(d * 0.3, d * 0.7)], corrupt=0.05),
}


@dataclass
class VirtualNode:
    node_id: int
    scenario: Scenario
    rate: float = 5.0
    raw_csi: bool = False
    seed: int = 0

    def frames(self, duration: float) -> Iterator[tuple[float, bytes]]:
        rng = random.Random(self.seed * 7919 + self.node_id)
        seq, boot, offset = 0, 0.0, rng.uniform(0, 1 / self.rate)
        step = 1 / self.rate
        for i in range(int(duration * self.rate)):
            t = offset + i * step
            if self.scenario.reboot_at is not None and boot == 0.0 and t >= self.scenario.reboot_at:
                boot, seq = t, 0
            present = self.scenario.present(t)
            score = math.exp(rng.gauss(math.log(PERSON_SCORE if present else EMPTY_SCORE), SPREAD))
            breathing = self.scenario.breathing and present
            flags = 0x01 | (0x02 if breathing else 0)
            respiration = 14.0 + rng.uniform(-1, 1) if breathing else 0.0
            rssi = -50 - rng.randrange(15)  # (drawn after the breathing rate, as always)
            state = codec.FeatureState(
                self.node_id, 0, seq % 65536, int((t - boot) * 1e6), 1.0, score,
                respiration, 0.8 if breathing else 0.0,
                0.0, 0.0, 0.0, 0.0, 1.0, flags, rssi)
            seq += 1
            yield t, codec.encode_feature_state(state)
            if i % max(1, round(self.rate)) == 0:
                yield t, codec.encode_edge_vitals(codec.EdgeVitals(
                    self.node_id, (0x01 if present else 0) | (0x04 if present else 0),
                    state.respiration_bpm, 0.0, rssi, 1 if present else 0, 0.5 if present else 0.0,
                    score, int((t - boot) * 1000)))
            if i % max(1, round(30 * self.rate)) == 0:
                yield t, codec.encode_mesh_health(codec.MeshHealth(
                    self.node_id, 1, int((t - boot) * 1e6), 2, 6, 20, -92, 20, 100, 0))
            if self.raw_csi:
                iq = bytes(rng.randrange(256) for _ in range(128))
                yield t, codec.encode_raw_csi(self.node_id, seq, iq)


def generate(nodes: list[VirtualNode], duration: float, seed: int = 0) -> Iterator[tuple[float, bytes]]:
    """All nodes' datagrams in time order, with the scenarios' loss and corruption applied."""
    rng = random.Random(seed)
    merged = sorted((item for node in nodes for item in _tagged(node, duration)), key=lambda x: x[0])
    for t, data, node in merged:
        if node.scenario.loss and rng.random() < node.scenario.loss:
            continue
        if node.scenario.corrupt and rng.random() < node.scenario.corrupt:
            buf = bytearray(data)
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
            data = bytes(buf)
        yield t, data


def _tagged(node: VirtualNode, duration: float):
    for t, data in node.frames(duration):
        yield t, data, node


def make_nodes(count: int, scenario: str, duration: float, *, rate: float = 5.0,
               raw_csi: bool = False, first_id: int = 1, seed: int = 0) -> list[VirtualNode]:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    return [VirtualNode(first_id + i, SCENARIOS[scenario](duration), rate, raw_csi, seed)
            for i in range(count)]


def phases(nodes: list[VirtualNode], duration: float) -> list[tuple[float, str]]:
    """What happens when, in words, for a person watching the simulation."""
    events: dict[float, list[str]] = {}
    for node in nodes:
        sc = node.scenario
        for enter, leave in sc.visits:
            if sc.name == "breathing":
                events.setdefault(0.0, []).append(f"node_{node.node_id}: someone is in the room, breathing")
                continue
            events.setdefault(enter, []).append(f"node_{node.node_id}: a person walks in")
            if leave < duration:
                events.setdefault(leave, []).append(f"node_{node.node_id}: they leave")
        if sc.reboot_at is not None:
            events.setdefault(sc.reboot_at, []).append(f"node_{node.node_id}: reboots")
    out = []
    for t in sorted(events):
        names = events[t]
        same = {n.split(": ", 1)[1] for n in names}
        text = (f"all {len(names)} nodes: {same.pop()}" if len(names) > 1 and len(same) == 1
                else "; ".join(names))
        out.append((t, text))
    return out


def narrate(stream: Iterator[tuple[float, bytes]], nodes: list[VirtualNode], duration: float,
            say: Callable[[str], None], every: float = 10.0) -> Iterator[tuple[float, bytes]]:
    """Pass the stream through, saying each scenario phase and the progress as time goes by."""
    upcoming = phases(nodes, duration)
    sent, next_report = 0, every
    for t, data in stream:
        while upcoming and upcoming[0][0] <= t:
            at, text = upcoming.pop(0)
            say(f"{at:5.1f} s  {text}")
        while t >= next_report:
            say(f"{next_report:5.0f} s  {sent} frames sent")
            next_report += every
        sent += 1
        yield t, data


def send_udp(stream: Iterator[tuple[float, bytes]], host: str, port: int, speed: float = 1.0) -> int:
    """Send in (scaled) real time; speed 0 sends as fast as possible. Returns datagrams sent."""
    return send_datagrams(stream, host, port, speed)


def write_serial(stream: Iterator[tuple[float, bytes]], port, speed: float = 1.0) -> int:
    """Write frames into a serial port (or pty) interleaved with ESP-IDF style log lines."""
    sent, start = 0, time.monotonic()
    for t, data in stream:
        if speed > 0:
            delay = start + t / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if sent % 25 == 0:
            port.write(b"I (%d) csi_collector: tick\r\n" % int(t * 1000))
        port.write(data)
        sent += 1
    return sent

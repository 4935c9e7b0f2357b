"""What every bench builds the same way: a bridge in-process with the nodes pipeline, the bridge
as its own process exactly as users start it, its frame counters, stopping processes, percentiles,
and how much CPU time the host took from this machine while a bench ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import yaml

from bridge.app import Bridge, build_bridge
from bridge.catalog import validate_config
from bridge.nodes.extension import NodesExtension


def start_nodes_bridge(broker_port: int, base: str, *, mqtt: dict[str, Any] | None = None,
                       nodes: dict[str, Any] | None = None,
                       homeassistant: dict[str, Any] | None = None) -> tuple[Bridge, NodesExtension]:
    """The bridge with the nodes pipeline, and Home Assistant discovery when `homeassistant` is given."""
    raw = {"mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}", "base_topic": base, **(mqtt or {})},
           "nodes": nodes or {}, "bridge": {"health_interval": 3600}}
    extensions = [NodesExtension()]
    if homeassistant is not None:
        from bridge.homeassistant.extension import HomeAssistantExtension
        raw["homeassistant"] = homeassistant
        extensions.append(HomeAssistantExtension())
    config = validate_config(raw, env={})
    bridge = build_bridge(config, extensions=extensions)
    bridge.start()
    if not bridge.mqtt.wait_connected(10):
        raise RuntimeError(f"the bridge did not connect to the broker on port {broker_port}")
    return bridge, bridge.extension("nodes")


def bridge_process(config: dict[str, Any], workdir: str) -> subprocess.Popen:
    """`ruview-bridge run -c <workdir>/config.yaml`, as users start it (its start-up banner silenced)."""
    path = os.path.join(workdir, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", path, "--no-status",
                             "--log-level", "warning"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def frames_taken(broker, base: str) -> int | None:
    """Frames the bridge counted, from its retained `<base>/bridge/health` as a separate
    `mosquitto_sub` reads it; None when there is none."""
    out = subprocess.run(["mosquitto_sub", "-p", str(broker.port), "-t", f"{base}/bridge/health", "-C", "1",
                          "-W", "5"], capture_output=True, text=True).stdout
    if not out:
        return None
    per_node = (json.loads(out).get("nodes") or {}).get("per_node") or {}
    return sum(sum(n["frames"].values()) for n in per_node.values())


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: a value that was measured."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class HostSteal:
    """The share of this machine's CPU time its host gave to others since it was made (a virtual
    machine's steal, from /proc/stat). Timings and CPU figures from a run with much steal are
    slower and noisier, baseline and bridge alike; the benches print it beside their figures."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return 0, 0
        return (ticks[7] if len(ticks) > 7 else 0), sum(ticks[:8])  # steal; user..steal (guest is in user)

    def percent(self) -> float:
        steal, total = self._read()
        elapsed = total - self.start[1]
        return 100 * (steal - self.start[0]) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        return f"host steal during the run: {self.percent():.1f} % of this machine's CPU time"

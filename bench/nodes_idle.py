"""What a bridge costs when nothing happens: CPU and wakeups with nodes known but none sending.

    python -m bench.nodes_idle [--seconds 60] [--nodes 10]

The bridge runs as users start it (`ruview-bridge run`, config.yaml's defaults: nodes, Home
Assistant discovery, the HTTP frontend) on a real Mosquitto, with `--nodes` nodes configured
and none sending. After a settling time (discovery announced, every node's first offline check
done), it reads each thread's CPU time in nanoseconds (/proc/<pid>/task/<tid>/schedstat; the
tick-based /proc stat cannot resolve 0.02 %) and its voluntary context switches (a wakeup
after a sleep) over `--seconds`, and prints the whole process's share of a core and, per
thread, wakeups per second and µs of CPU per second. Target (issue 38): idle <= 0.02 % of a
core; exits 1 when it is over. The MQTT network thread's share is printed with the rest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import yaml

from bench.harness import HostSteal, stop
from tests.brokers import Mosquitto, free_port, free_port_udp

TARGET_PERCENT = 0.02
SETTLE = 35.0  # seconds: connected, the known nodes announced to HA and (offline_after, 30 s) offline


def threads(pid: int) -> dict[str, tuple[int, int]]:
    """thread name -> (CPU ns, voluntary context switches), summed over threads of one name."""
    out: dict[str, tuple[int, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches = next(int(l.split()[1]) for l in f if l.startswith("voluntary_ctxt_switches"))
        except (OSError, StopIteration, ValueError):  # the thread ended
            continue
        cpu, woke = out.get(name, (0, 0))
        out[name] = (cpu + ns, woke + switches)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--nodes", type=int, default=10)
    args = ap.parse_args()
    broker = Mosquitto().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = {"mqtt": {"url": broker.url, "base_topic": "idle"}, "bridge": {"state_dir": tmp},
                      "nodes": {"udp": {"bind": "127.0.0.1", "port": free_port_udp()},
                                "devices": {i: {"name": f"room_{i}"} for i in range(1, args.nodes + 1)}},
                      "http": {"port": free_port()}}
            path = os.path.join(tmp, "config.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(config, f)
            proc = subprocess.Popen([sys.executable, "-m", "bridge", "run", "-c", path, "--no-status",
                                     "--log-level", "error"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                time.sleep(SETTLE)
                if proc.poll() is not None:
                    print(f"the bridge exited ({proc.returncode}) before the measurement")
                    return 1
                steal = HostSteal()
                before, began = threads(proc.pid), time.monotonic()
                time.sleep(args.seconds)
                after, elapsed = threads(proc.pid), time.monotonic() - began
            finally:
                stop(proc)
    finally:
        broker.cleanup()
    rows = []
    for name, (ns, woke) in after.items():
        ns0, woke0 = before.get(name, (0, 0))
        rows.append((name, (ns - ns0) / 1e3 / elapsed, (woke - woke0) / elapsed))
    total = sum(us for _, us, _ in rows) / 1e6 * 100
    print(f"`ruview-bridge run` (defaults) with {args.nodes} nodes known, none sending, {elapsed:.0f} s after "
          f"{SETTLE:.0f} s of settling:")
    print(f"  the whole process: {total:.4f} % of a core (target <= {TARGET_PERCENT} %)"
          f"{'   FAIL' if total > TARGET_PERCENT else ''}")
    for name, us, woke in sorted(rows, key=lambda r: -r[1]):
        if us >= 0.05 or woke >= 0.01:
            print(f"    {name:<20} {woke:6.2f} wakeups/s  {us:7.1f} µs CPU per s ({us / 1e4:.4f} % of a core)")
    print(f"  {steal.line()}")
    return 1 if total > TARGET_PERCENT else 0


if __name__ == "__main__":
    sys.exit(main())

"""What the MQTT network thread costs when there is nothing to do: wake-ups and CPU per second.

    python -m bench.mqtt_idle [--seconds 20] [--keepalive 60]

One MqttClient connected to a real Mosquitto on a free port, nothing published: the thread's
run time and times scheduled are read from /proc (schedstat) over the window. Issue 38's target
for the whole idle bridge is 0.02 % of a core; the network thread alone should wake only for
the keepalive. Exits 1 when the client did not connect or the thread is not found.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from bridge.core.inbox import Inbox
from bridge.core.supervisor import Supervisor
from bridge.mqtt.client import MqttClient
from bridge.mqtt.router import Router
from bridge.mqtt.settings import ConnectionSettings
from tests.brokers import Mosquitto


def schedstat(native_id: int) -> tuple[int, int]:
    """(ns on a CPU, times scheduled) of one thread of this process."""
    with open(f"/proc/self/task/{native_id}/schedstat") as f:
        run_ns, _wait, slices = f.read().split()
    return int(run_ns), int(slices)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--keepalive", type=int, default=60)
    args = ap.parse_args()
    broker = Mosquitto().start()
    supervisor = Supervisor()
    inbox = Inbox("bench-handlers", supervisor).start()
    client = MqttClient(ConnectionSettings("127.0.0.1", broker.port, keepalive=args.keepalive, client_id="bench-idle"),
                        Router(inbox), state_topic="bench/bridge/state", supervisor=supervisor)
    try:
        client.start()
        if not client.wait_connected(10):
            print("did not connect", file=sys.stderr)
            return 1
        time.sleep(1.0)  # the session's own first packets are done
        thread = next((t for t in threading.enumerate() if t.name == "mqtt-network"), None)
        if thread is None or thread.native_id is None:
            print("no mqtt-network thread", file=sys.stderr)
            return 1
        run0, slices0 = schedstat(thread.native_id)
        began = time.monotonic()
        time.sleep(args.seconds)
        run1, slices1 = schedstat(thread.native_id)
        spent = time.monotonic() - began
        wakes = (slices1 - slices0) / spent
        share = (run1 - run0) / 1e9 / spent * 100
        print(f"mqtt-network thread idle over {spent:.0f} s (keepalive {args.keepalive} s): "
              f"{wakes:.2f} wake-ups/s, {share:.4f} % of a core, "
              f"{(run1 - run0) / 1e3 / max(1, slices1 - slices0):.0f} µs per wake-up")
        return 0
    finally:
        client.stop(1.0)
        inbox.stop()
        broker.cleanup()


if __name__ == "__main__":
    sys.exit(main())

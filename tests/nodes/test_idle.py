"""Nothing wakes when nothing is due: with no node online the nodes feature has no timer, and
the UDP ingest thread sleeps in its receive until a datagram comes (bench/nodes_idle.py).

The first frame starts the beat and the offline check again; silence ends them once more."""

from __future__ import annotations

import threading
import time

import pytest

from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.polling import wait_until


def _switches(thread: threading.Thread) -> int:
    """Voluntary context switches of a thread of this process: each wait that slept."""
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


@pytest.mark.slow
def test_no_timer_and_no_ingest_wakeup_while_no_node_is_online_and_frames_start_them_again(
        mosquitto, node_bridge, make_probe):
    bridge, ext, port = node_bridge(mosquitto, offline_after=1, devices={9: {"name": "attic"}})
    inbox = ext.ctx.inbox
    # the configured node is remembered, then offline after offline_after: then nothing is due
    assert wait_until(lambda: ext.registry.get(9).online is False and inbox.timers == 0, 10), inbox.timers
    ingest = ext.udp._thread.thread
    before = _switches(ingest)
    time.sleep(1.0)
    assert _switches(ingest) == before, "the ingest thread woke with nothing to receive"
    assert inbox.timers == 0

    probe = make_probe(mosquitto, "ruview/node/#")
    send_udp(generate(make_nodes(1, "empty", 3, first_id=9), 3), "127.0.0.1", port, speed=0)
    probe.wait_topic("ruview/node/attic", 5)  # the first state, then the beat's
    probe.wait_topic("ruview/node/attic/availability", 5, match=lambda m: m.json()["state"] == "online")
    assert wait_until(lambda: inbox.timers > 0, 2)  # the offline check runs again ...
    probe.wait_topic("ruview/node/attic/availability", 5, match=lambda m: m.json()["state"] == "offline")
    assert wait_until(lambda: inbox.timers == 0, 5), inbox.timers  # ... and stops once it is silent

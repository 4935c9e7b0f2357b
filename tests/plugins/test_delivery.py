"""Delivery into plugins under load: a plugin that keeps up loses nothing in a burst (the putting
thread waits a moment for room instead of dropping), and a slow plugin drops, counted once, while
the others get everything — checked by counts, never by timing."""

from __future__ import annotations

import pytest

from bridge.plugins import host
from bridge.plugins.extension import PluginsExtension
from tests.harness import in_process
from tests.plugins import wat
from tests.plugins.helpers import Publisher
from tests.polling import wait_until

TOPIC = "delivery/in"
BURST = 20_000  # MQTT messages, from the thread that stands for paho's
STATES = 5_000  # state changes, from the test's thread
# counts every event in a global the test reads back through the instance's memory
COUNTER = """(global $n (mut i32) (i32.const 0))
             (func (export "receive_event") (param i32 i32 i32 i32) (result i32)
               (global.set $n (i32.add (global.get $n) (i32.const 1)))
               (i32.store (i32.const 0) (global.get $n))
               (i32.const 0))"""
# about a millisecond or more of work per event, whatever the machine
SPIN = """(func (export "receive_event") (param i32 i32 i32 i32) (result i32) (local $i i32)
          (loop $spin (local.set $i (i32.add (local.get $i) (i32.const 1)))
                      (br_if $spin (i32.lt_u (local.get $i) (i32.const 3000000))))
          (i32.const 0))"""


@pytest.fixture
def publisher(tmp_path):
    return Publisher(tmp_path)


@pytest.fixture
def started(tmp_path, publisher, monkeypatch):
    # The bounds of the wait for room are generous here: the test is about counts, and a loaded
    # test machine may not run a worker for a while. The fast/slow line (host.FAST_CALL) stays.
    monkeypatch.setattr(host, "PATIENCE", 10.0)
    monkeypatch.setattr(host, "WAIT_CAP", 30.0)
    made = []

    def start(plugins):
        bridge, mqtt = in_process({"plugins": {
            "enabled": True, "dirs": [str(plugins)], "trusted_keys": [publisher.public],
            "cache_dir": str(tmp_path / "cache"), "audit_log": str(tmp_path / "audit.jsonl"), "watch": False}},
            [PluginsExtension()])
        made.append(bridge)
        return bridge, mqtt, bridge.extension("plugins")

    yield start
    for bridge in made:
        bridge.stop()


def counting(publisher, plugins, domain, body=COUNTER, **limits):
    return wat.plugin(publisher, plugins, domain, wat.module(body, overrides={"receive_event": ""}),
                      permissions=[f"mqtt:subscribe:{TOPIC}", "state:read:sensor.burst_*"],
                      subscriptions=[TOPIC], subscribed_state_entities=["sensor.burst_*"],
                      **({"limits": limits} if limits else {}))


def counted(plugin) -> int:
    """What the plugin itself counted (its global, stored at address 0)."""
    return int.from_bytes(plugin._instance.read(0, 4), "little")


def test_a_plugin_that_keeps_up_loses_nothing_in_a_burst(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    counting(publisher, plugins, "keeps_up")  # the default queue: limits.queue 1000
    bridge, mqtt, extension = started(plugins)
    plugin = extension.plugins["keeps_up"]
    assert wait_until(lambda: plugin.state == "running", 5)
    assert plugin.inbox._max_queue == 1000
    for i in range(BURST):  # as paho's network thread hands them over: as fast as it can
        mqtt.inject(TOPIC, b'{"seq": %d, "pad": "%s"}' % (i, b"x" * 380))
    for i in range(STATES):  # straight onto the plugin's queue: the writer waits for room
        bridge.states.set(f"sensor.burst_{i % 100}", i)
    assert bridge.drain(60)
    health = extension.health_of(plugin)
    assert (health["events"], health["dropped"], counted(plugin)) == (BURST + STATES, 0, BURST + STATES), \
        (health, plugin.inbox.call_cpu, plugin.inbox.waited, plugin.inbox.behind)


def test_a_slow_plugin_drops_counted_once_and_the_others_get_everything(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    counting(publisher, plugins, "slow", SPIN, queue=5)
    counting(publisher, plugins, "fast")
    bridge, mqtt, extension = started(plugins)
    slow, fast = extension.plugins["slow"], extension.plugins["fast"]
    assert wait_until(lambda: slow.state == fast.state == "running", 5)
    n = 300
    for i in range(n):
        mqtt.inject(TOPIC, b'{"seq": %d}' % i)
    for i in range(n):
        bridge.states.set(f"sensor.burst_{i % 10}", i)
    assert bridge.drain(60)
    s, f = extension.health_of(slow), extension.health_of(fast)
    assert s["dropped"] > 0 and s["events"] + s["dropped"] == 2 * n, s  # each delivery counted once
    assert (f["events"], f["dropped"]) == (2 * n, 0), f
    # it cannot pace the senders: they waited for it at most while its first call ran (before that
    # call was measured, a plugin counts as fast), the router and the state writer once each
    assert slow.inbox.waited <= 2, slow.inbox.waited
    assert bridge.health()["plugins"]["slow"]["dropped"] == s["dropped"]

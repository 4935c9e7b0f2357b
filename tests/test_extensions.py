"""The extension contract on a real broker: late starters, failing starters, and a clean stop."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.core.eventdata import PluginEntities, StateChanged
from bridge.app import build_bridge
from bridge.extension import Extension
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.nodes.extension import NodesExtension
from bridge.topics import InvalidTopic
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import free_port_udp
from tests.conftest import served
from tests.polling import wait_until


class LateWatcher(Extension):
    """Starts slowly (as a plugin host compiling modules would), then watches the nodes."""

    name = "late_watcher"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen: dict[int, str] = {}
        self.threads: set[str] = set()

    def start(self, ctx) -> None:
        time.sleep(self.delay)
        ctx.nodes.watch(self._on_node)

    def _on_node(self, change) -> None:
        self.threads.add(threading.current_thread().name)
        self.seen[change.node.node_id] = change.node.name


class Busy(Extension):
    """Registers one of everything, to check that a stop undoes it all."""

    name = "busy"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.heard: list[str] = []

    def start(self, ctx) -> None:
        self.ctx = ctx
        ctx.mqtt.subscribe("busy/in/#", lambda m: self.heard.append(m.topic))
        ctx.mqtt.on_session(lambda: None)
        ctx.listen(StateChanged, lambda ev: self.heard.append(ev.entity_id))
        ctx.nodes.watch(lambda change: None)
        ctx.register_request("busy/ping", lambda req: {"pong": True})
        ctx.register_service("busy", "poke", lambda call: "poked")
        ctx.add_health("busy", lambda: {"ok": True})
        ctx.add_info("busy", lambda: ["x"])
        ctx.spawn("loop", lambda: ctx.stopping.wait())
        ctx.call_later(3600, lambda: None)
        if self.fail:
            raise RuntimeError("cannot open /dev/busy")


def _stream_in_background(port: int, seconds: float) -> threading.Thread:
    frames = list(generate(make_nodes(2, "empty", seconds), seconds))
    sender = threading.Thread(target=send_udp, args=(iter(frames), "127.0.0.1", port), kwargs={"speed": 1},
                              daemon=True)
    sender.start()
    return sender


def test_an_extension_that_starts_late_sees_every_streaming_node(mosquitto, make_config, make_probe):
    port = free_port_udp()
    config = make_config(mosquitto, nodes={"udp": {"bind": "127.0.0.1", "port": port}},
                         homeassistant={"collect_seconds": 0.3})
    watcher = LateWatcher(delay=2.0)
    bridge = build_bridge(config, extensions=[NodesExtension(), watcher, HomeAssistantExtension()])
    probe = make_probe(mosquitto, "homeassistant/binary_sensor/+/presence/config")
    sender = _stream_in_background(port, 6)
    bridge.start()  # nodes first, then 2 s of the watcher starting, then Home Assistant
    try:
        nodes = bridge.extension("nodes")
        assert len(nodes.registry) == 2, "both nodes streamed while the watcher was starting"
        assert wait_until(lambda: set(watcher.seen) == {1, 2}, 5), watcher.seen
        assert watcher.threads == {"ext-late_watcher"}  # on its own inbox, not the UDP thread
        for node_id in (1, 2):  # Home Assistant, started after the slow one, announces both
            probe.wait_topic(f"homeassistant/binary_sensor/ruview_ruview_node_{node_id}/presence/config", 10)
    finally:
        bridge.stop()
        sender.join(10)


def _held(bridge) -> dict:
    """What the core holds on behalf of features: compare before and after."""
    return {"routes": len(bridge.router), "listeners": bridge.bus.listener_count(),
            "verbs": bridge.api.verbs(), "services": bridge.services.names(),
            "session_callbacks": len(bridge.mqtt._session_callbacks),
            "watchers": bridge.directory.watcher_count(),
            "health": sorted(bridge.health_providers), "info": sorted(bridge.info_providers),
            "threads": sorted(h.name for h in bridge.supervisor.threads()),
            "alive": sorted(t.name for t in threading.enumerate() if t.name.startswith(("busy", "ext-busy")))}


def test_a_failing_start_leaves_the_bridge_serving_and_shows_in_health(mosquitto, make_config, make_probe):
    config = make_config(mosquitto)
    bridge = build_bridge(config, extensions=[])
    bridge.start()
    try:
        assert bridge.mqtt.wait_connected(10)
        core_only = _held(bridge)
        bridge.add(Busy(fail=True))
        bridge._start_extension(bridge.extension("busy"))
        probe = make_probe(mosquitto, "ruview/bridge/health", "ruview/bridge/info")
        served(probe, bridge)  # still answering
        probe.clear()  # a health published while it was starting (retained) is not the answer
        bridge.publish_health()
        bridge.publish_info()
        health = probe.wait_topic("ruview/bridge/health",
                                  match=lambda m: "busy" in m.json()["extensions"]).json()
        assert health["extensions"]["busy"]["state"] == "failed"
        assert "cannot open /dev/busy" in health["extensions"]["busy"]["error"]
        info = probe.wait_topic("ruview/bridge/info", match=lambda m: "busy" in m.json()["extensions"]).json()
        assert info["extensions"]["busy"] == "failed" and "busy/ping" not in info["requests"]
        assert _held(bridge) == core_only, "a failed start left registrations behind"
    finally:
        bridge.stop()


def test_stop_undoes_every_subscription_listener_verb_service_and_thread(mosquitto, make_config, make_probe):
    bridge = build_bridge(make_config(mosquitto), extensions=[])
    bridge.start()
    try:
        assert bridge.mqtt.wait_connected(10)
        core_only = _held(bridge)
        busy = Busy()
        bridge.add(busy)
        bridge._start_extension(busy)
        assert bridge.extension_state["busy"]["state"] == "running"
        assert bridge.mqtt.wait_connected(5)  # its subscription is acknowledged
        running = _held(bridge)
        assert running != core_only and "busy/ping" in running["verbs"] and "busy.poke" in running["services"]
        assert running["alive"], "the extension's thread and inbox run"
        probe = make_probe(mosquitto, "ruview/bridge/response/#")
        probe.publish("busy/in/1", b"x")
        assert wait_until(lambda: busy.heard == ["busy/in/1"], 5)
        ctx = busy.ctx

        bridge.stop_extension("busy")
        assert ctx.held() == {}
        assert _held(bridge) == core_only
        probe.publish("busy/in/2", b"x")  # the broker subscription went with it
        probe.publish("ruview/bridge/request/busy/ping", {"transaction": 1})
        answer = probe.wait_topic("ruview/bridge/response/busy/ping").json()
        assert answer["status"] == "error" and "unknown request" in answer["error"]
        served(probe, bridge)
        assert busy.heard == ["busy/in/1"]
    finally:
        bridge.stop()


def test_an_extension_publishing_to_an_invalid_topic_gets_an_error_and_the_bridge_survives_a_broker_restart(
        mosquitto, make_config, make_probe):
    bridge = build_bridge(make_config(mosquitto), extensions=[])
    busy = Busy()
    bridge.add(busy)
    bridge.start()
    try:
        assert bridge.mqtt.wait_connected(10)
        for topic in ("ruview/plugin/+/status", "ruview/a\0b", "x" * 70_000):
            with pytest.raises(InvalidTopic):
                busy.ctx.mqtt.publish(topic, b"state", qos=1, retain=True)
        assert not [t for t in bridge.mqtt._retained if "+" in t or "\0" in t or len(t) > 1000]
        mosquitto.kill()
        assert wait_until(lambda: not bridge.mqtt.connected, 10)
        mosquitto.start()
        assert bridge.mqtt.wait_connected(20), "the bridge did not reconnect"
        assert bridge.mqtt.stats()["connects"] == 2 and bridge.mqtt.stats()["network_errors"] == 0
        served(make_probe(mosquitto), bridge)
    finally:
        bridge.stop()


def test_an_exception_in_the_network_loop_reconnects_instead_of_killing_it(mosquitto, make_bridge, make_probe):
    bridge = make_bridge(mosquitto)
    real_loop = bridge.mqtt._paho.loop_misc  # called on every turn of the network loop
    calls = {"n": 0}

    def loop_that_fails_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("surprise inside paho")
        return real_loop(*args, **kwargs)

    bridge.mqtt._paho.loop_misc = loop_that_fails_once
    assert wait_until(lambda: bridge.mqtt.stats()["network_errors"] == 1, 5)
    assert wait_until(lambda: bridge.mqtt.stats()["connects"] == 2 and bridge.mqtt.connected, 10)
    served(make_probe(mosquitto), bridge)
    assert bridge.supervisor.stats()["mqtt-network"]["alive"]


def test_bus_listeners_run_on_their_own_inbox_and_a_slow_one_never_blocks_the_emitter(
        mosquitto, make_config):
    gate = threading.Event()

    class Slow(Extension):
        name = "slow"

        def start(self, ctx):
            self.got = []
            ctx.listen(PluginEntities, lambda e: (gate.wait(10), self.got.append((int(e.plugin),
                                                                                  threading.current_thread().name))))

    slow = Slow()
    bridge = build_bridge(make_config(mosquitto), extensions=[slow])
    bridge.start()
    try:
        began = time.monotonic()
        for n in range(100):
            bridge.bus.emit(PluginEntities(str(n), "tick"))
        assert time.monotonic() - began < 0.5, "emit waited for a listener"
        gate.set()
        assert wait_until(lambda: len(slow.got) == 100, 5)
        assert [n for n, _ in slow.got] == list(range(100))
        assert {t for _, t in slow.got} == {"ext-slow"}
    finally:
        gate.set()
        bridge.stop()


def test_the_node_beat_and_a_serial_reader_outlive_an_unexpected_exception(mosquitto, node_bridge, tmp_path):
    import os
    bridge, ext, port = node_bridge(mosquitto, offline_after=1)
    real_flush, failures = ext.pipeline.flush_due, {"n": 0}

    def flush_that_fails_once(now, idle=None):
        if failures["n"] == 0:
            failures["n"] += 1
            raise RuntimeError("a bug in a flush")
        return real_flush(now, idle)

    errors = ext.ctx.inbox.errors
    ext.pipeline.flush_due = flush_that_fails_once
    send_udp(generate(make_nodes(1, "empty", 3, first_id=4), 3), "127.0.0.1", port, speed=0)
    assert wait_until(lambda: failures["n"] == 1 and ext.ctx.inbox.errors == errors + 1, 5), "the beat failed once"
    # the failing beat may come before node 4's first frame is taken: wait for it to exist, then go offline
    assert wait_until(lambda: (node := ext.registry.get(4)) is not None and node.online is False, 10), \
        "the beat goes on: nodes go offline"
    assert wait_until(lambda: all(v.dirty_since is None for v in ext.pipeline.views.values()), 5), \
        "and pending state is published on the next beats"

    # a serial link whose pipeline raises on a batch keeps reading (the error is counted)
    from bridge.nodes.serial_ingest import SerialIngest
    master, slave = os.openpty()
    calls = {"n": 0}

    def fragile(batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bad batch")

    link = SerialIngest("desk", os.ttyname(slave), 115200, fragile)
    link.start()
    frames = [data for _, data in generate(make_nodes(1, "empty", 2), 2)]
    try:
        assert wait_until(lambda: link.connected, 5)
        os.write(master, b"".join(frames[:5]))
        assert wait_until(lambda: calls["n"] == 1 and link.errors == 1, 5)  # the batch that raised
        os.write(master, b"".join(frames[5:]))
        assert wait_until(lambda: calls["n"] >= 2, 5) and link.connected, "the link stopped reading"
    finally:
        link.stop()
        os.close(master)
        os.close(slave)

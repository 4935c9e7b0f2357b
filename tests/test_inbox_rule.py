"""The platform's concurrency rule, checked: everything an extension receives runs on its inbox.

Service calls from anywhere hop onto the callee's inbox and answer in a future; a timer is an
entry in the inbox's heap, never a thread; only the network thread calls paho; and a callback
that runs off its inbox fails loudly (thread checks are on in the whole suite: conftest.py).
Most of these run in process (tests/harness.py); the paho one needs a real broker.
"""

from __future__ import annotations

import threading
import time

import pytest

from bridge.app import build_bridge
from bridge.core import inbox as inbox_rule
from bridge.core.eventdata import PluginEntities
from bridge.core.services import ServiceError
from bridge.extension import Extension
from bridge.homeassistant import extension as ha_extension
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.nodes.extension import NodesExtension
from bridge.plugins.extension import PluginsExtension
from tests.harness import in_process
from tests.polling import wait_until


class Callee(Extension):
    name = "callee"

    def start(self, ctx):
        self.ctx, self.gate = ctx, threading.Event()
        self.gate.set()
        ctx.register_service("callee", "where", lambda call: threading.current_thread().name)
        ctx.register_service("callee", "slow", lambda call: self.gate.wait(10) and "late")
        ctx.register_service("callee", "refuse", self._refuse)

    @staticmethod
    def _refuse(call):
        raise ServiceError("no, because")


class Caller(Extension):
    name = "caller"

    def start(self, ctx):
        self.ctx, self.heard = ctx, []
        ctx.listen(PluginEntities, self._on_entities)

    def _on_entities(self, announced):  # on this extension's inbox: calls the other one and waits
        self.heard.append((threading.current_thread().name,
                           self.ctx.call_service("callee", "where").answer(2)))


@pytest.fixture
def pair():
    callee, caller = Callee(), Caller()
    bridge, _ = in_process({}, [callee, caller])
    yield bridge, callee, caller
    callee.gate.set()
    bridge.stop()


def test_a_service_call_from_another_feature_runs_on_the_callee_inbox_and_answers_in_a_future(pair):
    bridge, callee, caller = pair
    assert caller.ctx.call_service("callee", "where").answer() == "ext-callee"
    bridge.bus.emit(PluginEntities("x", "X"))
    assert wait_until(lambda: caller.heard == [("ext-caller", "ext-callee")], 5)
    with pytest.raises(ServiceError, match="no, because"):
        caller.ctx.call_service("callee", "refuse").answer()
    with pytest.raises(ServiceError, match="unknown service callee.nothing"):
        caller.ctx.call_service("callee", "nothing")


def test_a_caller_waits_for_a_slow_service_only_as_long_as_it_says(pair):
    bridge, callee, caller = pair
    callee.gate.clear()
    began = time.monotonic()
    with pytest.raises(ServiceError, match=r"callee.slow did not answer within 0.2 s"):
        caller.ctx.call_service("callee", "slow").answer(0.2)
    assert time.monotonic() - began < 2
    callee.gate.set()
    assert bridge.drain()


def test_a_service_whose_inbox_is_full_says_so_at_once(pair):
    bridge, callee, caller = pair
    callee.gate.clear()
    blocked = caller.ctx.call_service("callee", "slow")  # holds the callee's worker
    assert wait_until(lambda: callee.ctx.inbox.backlog == 0, 5)
    inbox = callee.ctx.inbox
    inbox._max_queue = 1  # a small inbox, so that filling it is quick
    queued = caller.ctx.call_service("callee", "where")
    refused = caller.ctx.call_service("callee", "where")
    with pytest.raises(ServiceError, match="too busy"):
        refused.answer(0.1)
    callee.gate.set()
    assert blocked.answer() == "late" and queued.answer() == "ext-callee"


def test_a_callback_run_off_its_inbox_fails_loudly(pair):
    bridge, callee, caller = pair
    ran = []
    checked = caller.ctx.checked(lambda: ran.append(1), "a test callback")
    with pytest.raises(inbox_rule.OffInbox, match="caller: a test callback ran on thread 'MainThread'"):
        checked()
    assert ran == [] and inbox_rule.violations, "the violation is recorded for the suite to fail on"
    inbox_rule.violations.clear()  # this one was made on purpose
    caller.ctx.inbox.put(checked)  # on its inbox it runs
    assert bridge.drain() and ran == [1]


def test_timers_are_entries_in_the_inbox_not_threads(pair):
    bridge, callee, caller = pair
    order, started = [], threading.active_count()
    for delay in (0.06, 0.02, 0.04):
        caller.ctx.call_later(delay, lambda d=delay: order.append((d, threading.current_thread().name)))
    cancelled = caller.ctx.call_later(0.03, lambda: order.append("cancelled"))
    cancelled.cancel()
    assert threading.active_count() == started, "a timer started a thread"
    assert caller.ctx.held().get("timer") == 3
    assert wait_until(lambda: len(order) == 3, 5)
    assert order == [(0.02, "ext-caller"), (0.04, "ext-caller"), (0.06, "ext-caller")]
    caller.ctx.call_later(3600, lambda: order.append("never"))
    bridge.stop_extension("caller")  # a stopped extension's timers go with it
    assert "never" not in order and not caller.ctx.inbox.running


def test_no_thread_is_started_while_plugins_tick_and_home_assistant_announces_200_nodes(
        monkeypatch, tmp_path):
    monkeypatch.setattr(ha_extension, "PACE_SECONDS", 0.002)  # the pace, not its length, is the point
    ticks = []
    real_tick = PluginsExtension._tick
    monkeypatch.setattr(PluginsExtension, "_tick", lambda self: (ticks.append(1), real_tick(self)))
    sections = {"nodes": {"udp": {"enabled": False}, "devices": {n: {} for n in range(1, 201)}},
                "homeassistant": {"collect_seconds": 0.05},
                "plugins": {"enabled": True, "dirs": [str(tmp_path / "none")], "cache_dir": str(tmp_path / "c"),
                            "audit_log": str(tmp_path / "audit.jsonl"), "watch_interval": 0.2}}
    started = []
    real_start = threading.Thread.start
    bridge, mqtt = in_process(sections, [NodesExtension(), HomeAssistantExtension(), PluginsExtension()])
    try:
        ha = bridge.extension("homeassistant")
        before = bridge.health()["os_threads"]
        monkeypatch.setattr(threading.Thread, "start", lambda self: (started.append(self.name), real_start(self)))
        assert wait_until(lambda: not ha._collecting and not ha._pacing and len(ha.nodes) == 200, 30)
        assert wait_until(lambda: len(ticks) >= 2, 5), "the plugins' clock ticked"
        announced = {p.topic.split("/")[2] for p in mqtt.sent
                     if p.topic.startswith("homeassistant/binary_sensor/ruview_ruview_node_")}
        assert len(announced) == 200, "every node was announced"
        assert started == [], f"threads started: {started[:5]}"
        assert bridge.health()["os_threads"] == before
    finally:
        monkeypatch.setattr(threading.Thread, "start", real_start)
        bridge.stop()


def test_only_the_network_thread_calls_paho(mosquitto, make_config, make_probe):
    class Late(Extension):
        name = "late"

        def start(self, ctx):
            self.ctx, self.got = ctx, []

        def follow(self):  # on its inbox, while the bridge is online
            self.route = self.ctx.mqtt.subscribe("late/in", lambda m: self.got.append(m.payload))

        def unfollow(self):
            self.ctx.mqtt.unsubscribe(self.route)

    late = Late()
    bridge = build_bridge(make_config(mosquitto), extensions=[late])
    callers: list[tuple[str, str]] = []  # (paho method, the thread that called it)
    paho = bridge.mqtt._paho
    for method in ("subscribe", "unsubscribe", "publish", "disconnect"):
        real = getattr(paho, method)
        setattr(paho, method, lambda *a, _real=real, _name=method, **k: (
            callers.append((_name, threading.current_thread().name)), _real(*a, **k))[1])
    bridge.start()
    try:
        assert bridge.mqtt.wait_connected(10)
        late.ctx.inbox.put(late.follow)
        assert bridge.drain() and bridge.mqtt.wait_connected(5), "subscribed, and the broker said so"
        probe = make_probe(mosquitto)
        probe.publish("late/in", b"1")
        assert wait_until(lambda: late.got == [b"1"], 5), "the late subscription reached the broker"
        late.ctx.inbox.put(late.unfollow)
        bridge.states.set("sensor.from_the_test_thread", "1")
        assert bridge.drain()
    finally:
        bridge.stop()
    assert {name for name, _ in callers} == {"subscribe", "unsubscribe", "publish", "disconnect"}
    assert {thread for _, thread in callers} == {"mqtt-network"}, sorted(set(callers))

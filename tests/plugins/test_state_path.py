"""State changes on their way into plugins (issue 30, speed): every change reaches the bus and a
plugin that watches it, straight onto the plugin's inbox; the MQTT mirror of the states keeps up by
conflating only while the link is behind — each entity's newest state goes out, in the order of the
last writes — and a link that keeps up still sees every write. Checked by counts and contents."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import orjson
import pytest

from bridge.core import state as state_module
from bridge.core.bus import EventBus
from bridge.core.eventdata import StateChanged
from bridge.core.inbox import Inbox
from bridge.core.state import BEHIND, StateMachine
from bridge.core.supervisor import Supervisor
from bridge.mqtt.router import Message
from bridge.plugins.extension import PluginsExtension
from bridge.topics import Topics
from tests.harness import in_process
from tests.plugins import wat
from tests.plugins.helpers import Publisher
from tests.polling import wait_until


class Link:
    """What the state machine needs of the MQTT client, with a backlog the test sets."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.backlog = 0
        self.routes: dict[str, Any] = {}
        self._lock = threading.Lock()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, **_: Any) -> bool:
        with self._lock:
            self.sent.append((topic, payload))
        return True

    def burst(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def subscribe(self, topic_filter: str, handler: Any, **_: Any) -> str:
        self.routes[topic_filter] = handler
        return topic_filter

    def values(self) -> list[tuple[str, str | None]]:
        with self._lock:
            return [(t.rsplit("/", 1)[1], orjson.loads(p)["state"] if p else None) for t, p in self.sent]


@pytest.fixture
def machine(monkeypatch):
    monkeypatch.setattr(state_module, "FLUSH", 0.01)
    inbox = Inbox("mqtt-handlers", Supervisor()).start()
    heard: list[StateChanged] = []
    bus = EventBus(inbox)
    bus.subscribe(StateChanged, heard.append)
    link = Link()
    states = StateMachine(link, Topics("ruview"), bus)  # type: ignore[arg-type]
    states.start()
    yield states, link, heard
    inbox.stop()


def test_a_link_that_keeps_up_sees_every_write(machine):
    states, link, heard = machine
    for value in range(5):
        states.set("sensor.a", value)
    assert link.values() == [("sensor.a", str(v)) for v in range(5)]
    assert wait_until(lambda: len(heard) == 5, 5) and states.superseded == 0


def test_a_link_that_is_behind_gets_each_entitys_newest_state_in_the_order_of_last_writes(machine):
    states, link, heard = machine
    link.backlog = BEHIND
    for value in range(100):
        states.set("sensor.a", value)
        states.set("sensor.b", value)
    states.set("sensor.a", "last")
    states.set("sensor.c", "gone")
    states.remove("sensor.c")
    assert link.values() == [], "nothing is handed to a link that is behind"
    assert wait_until(lambda: len(heard) == 203, 5), "every change reaches the bus at once"
    link.backlog = BEHIND - 1  # caught up
    assert wait_until(lambda: len(link.values()) == 3, 5), link.values()
    assert link.values() == [("sensor.b", "99"), ("sensor.a", "last"), ("sensor.c", None)]
    assert states.superseded == 200
    mirror = link.routes["ruview/state/#"]  # our own newest state, echoed by a 3.1.1 broker: not news
    mirror(Message("ruview/state/sensor.a", link.sent[1][1], retain=True))
    assert states.get("sensor.a").state == "last" and len(heard) == 203


def test_another_bridges_newer_write_is_not_overwritten_by_ours_waiting_to_go_out(machine):
    states, link, heard = machine
    link.backlog = BEHIND
    states.set("sensor.shared", "ours")
    link.routes["ruview/state/#"](Message("ruview/state/sensor.shared", b'{"state": "theirs"}', retain=True))
    states.set("sensor.other", 1)
    link.backlog = 0
    assert wait_until(lambda: link.values() == [("sensor.other", "1")], 5), link.values()
    assert states.get("sensor.shared").state == "theirs"


def test_what_waits_goes_out_when_the_bridge_stops(machine):
    states, link, _ = machine
    link.backlog = BEHIND
    states.set("sensor.a", 1)
    states.flush()  # Bridge.stop calls it before the MQTT client says offline
    assert link.values() == [("sensor.a", "1")]


def test_state_changes_reach_only_the_plugins_that_watch_them_on_their_own_inbox(tmp_path):
    publisher = Publisher(tmp_path)
    plugins = tmp_path / "plugins"
    for domain, watched in (("hall", "sensor.hall_*"), ("garden", "sensor.garden_*")):
        wat.plugin(publisher, plugins, domain, wat.module(), permissions=[f"state:read:{watched}"],
                   subscribed_state_entities=[watched])
    bridge, _ = in_process({"plugins": {
        "enabled": True, "dirs": [str(plugins)], "trusted_keys": [publisher.public], "watch": False,
        "cache_dir": str(tmp_path / "cache"), "audit_log": str(tmp_path / "audit.jsonl")}}, [PluginsExtension()])
    try:
        extension = bridge.extension("plugins")
        hall, garden = extension.plugins["hall"], extension.plugins["garden"]
        assert wait_until(lambda: hall.state == garden.state == "running", 5)
        handled = garden.inbox.handled
        for i in range(50):
            bridge.states.set("sensor.hall_temperature", i)
        assert wait_until(lambda: hall.counters.events == 50, 10), hall.counters
        assert garden.inbox.handled == handled, "a change it does not watch never takes its queue"
        assert bridge.drain(20) and garden.counters.events == 0
        assert extension.ctx.inbox.handled < 50, "not through the plugins extension's own inbox"
        extension.unload("hall", "the test unloaded it")
        bridge.states.set("sensor.hall_temperature", "after")
        assert bridge.drain(20) and hall.counters.events == 50
        assert extension.ctx.held().get("bus listener") == 2, "its subscription went with it"  # EventFired + garden
    finally:
        bridge.stop()


@pytest.mark.parametrize("share_group,remote_delivered", [(None, True), ("hall_bridges", False)])
def test_with_a_share_group_only_the_changes_made_here_reach_a_plugin(tmp_path, share_group, remote_delivered):
    """Several bridges running the same plugins: a change another bridge made (heard over MQTT)
    is that bridge's plugins' to act on, so one presence change turns a light on once."""
    publisher = Publisher(tmp_path)
    plugins = tmp_path / "plugins"
    wat.plugin(publisher, plugins, "hall", wat.module(), permissions=["state:read:sensor.hall_*"],
               subscribed_state_entities=["sensor.hall_*"])
    bridge, mqtt = in_process({
        "bridge": {"share_group": share_group} if share_group else {},
        "plugins": {"enabled": True, "dirs": [str(plugins)], "trusted_keys": [publisher.public], "watch": False,
                    "cache_dir": str(tmp_path / "cache"), "audit_log": str(tmp_path / "audit.jsonl")}},
        [PluginsExtension()])
    try:
        hall = bridge.extension("plugins").plugins["hall"]
        assert wait_until(lambda: hall.state == "running", 5)
        mqtt.inject("ruview/state/sensor.hall_motion", {"state": "on"}, retain=True)  # another bridge's
        assert wait_until(lambda: bridge.states.get("sensor.hall_motion") is not None, 5)
        bridge.states.set("sensor.hall_lux", 12)  # made here
        assert bridge.drain(20)
        assert hall.counters.events == (2 if remote_delivered else 1), hall.counters
    finally:
        bridge.stop()

"""Home state, events and services over a real broker (both Mosquitto and the embedded broker)."""

from __future__ import annotations


import pytest

from bridge.core.eventdata import EventFired, StateChanged
from bridge.core.services import ServiceError
from bridge.core.state import InvalidEntityId, valid_entity_id
from tests.conftest import settled
from tests.polling import wait_until

STATE = "ruview/state/sensor.kitchen_temp"


@pytest.mark.parametrize("entity_id,ok", [
    ("light.kitchen", True), ("sensor.room_1_temp", True), ("a.b", True),
    ("Light.kitchen", False), ("light", False), ("light.kit-chen", False),
    ("light._x", False), ("light.x_", False), ("light.a__b", False), ("light.kitchen.x", False),
    ("light." + "x" * 250, False), ("light." + "x" * 249, True),
])
def test_entity_id_rules(entity_id, ok):
    assert valid_entity_id(entity_id) is ok


def test_state_write_semantics(broker, make_bridge, make_probe):
    bridge = make_bridge(broker)
    probe = make_probe(broker, STATE)
    s1 = bridge.states.set("sensor.kitchen_temp", 21.5, {"unit_of_measurement": "°C"})
    first = probe.wait_topic(STATE).json()
    assert first["state"] == "21.5" and first["attributes"] == {"unit_of_measurement": "°C"}
    assert first["last_changed"] == first["last_updated"] == s1.last_changed
    assert len(first["context"]["id"]) == 26

    # a write that changes nothing publishes nothing
    assert bridge.states.set("sensor.kitchen_temp", "21.5", {"unit_of_measurement": "°C"}) is None
    # attribute-only change: last_changed kept, last_updated bumped, new context
    s2 = bridge.states.set("sensor.kitchen_temp", "21.5", {"unit_of_measurement": "°C", "x": 1})
    second = probe.wait_for(lambda ms: len([m for m in ms if m.topic == STATE]) >= 2)[-1].json()
    assert second["last_changed"] == first["last_changed"]
    assert second["last_updated"] > first["last_updated"]
    assert second["context"]["id"] != first["context"]["id"] == s1.context["id"]
    assert s2 is not None
    settled(bridge)
    probe.flush()
    assert len(probe.on(STATE)) == 2, "the no-op write must not have been published"

    # a new late subscriber gets the retained latest state
    settled(bridge)
    late = make_probe(broker, STATE)
    retained = late.wait_topic(STATE)
    assert retained.retain and retained.json()["attributes"]["x"] == 1

    with pytest.raises(InvalidEntityId):
        bridge.states.set("Kitchen Temp", "1")


def test_empty_retained_payload_removes_entity(broker, make_bridge, make_probe):
    bridge = make_bridge(broker)
    bridge.states.set("switch.fan", "on")
    probe = make_probe(broker, "ruview/state/switch.fan")
    probe.wait_topic("ruview/state/switch.fan")
    # another client removes it
    probe.publish("ruview/state/switch.fan", b"", retain=True)
    assert wait_until(lambda: bridge.states.get("switch.fan") is None, 5)
    # and the bridge can remove its own
    bridge.states.set("switch.pump", "off")
    assert bridge.states.remove("switch.pump")
    settled(bridge)
    late = make_probe(broker, "ruview/state/#")  # subscribed and flushed: the retained copies are in
    assert not [m for m in late.messages if m.retain and m.payload], \
        "removed entities must leave no retained state"


def test_restart_resumes_from_retained_state(broker, make_bridge):
    first = make_bridge(broker)
    first.states.set("light.hall", "on", {"brightness": 200})
    first.states.set("sensor.outside", "4")
    first.stop()
    second = make_bridge(broker)
    assert wait_until(lambda: len(second.states) >= 2, 5)
    hall = second.states.get("light.hall")
    assert hall is not None and hall.attributes == {"brightness": 200}
    # resuming keeps last_changed, so an unchanged write is still a no-op
    assert second.states.set("light.hall", "on", {"brightness": 200}) is None


def test_foreign_state_writes_are_mirrored_and_bad_ones_ignored(broker, make_bridge, make_probe):
    bridge = make_bridge(broker)
    seen = []
    bridge.bus.subscribe(StateChanged, lambda ev: seen.append(ev))
    probe = make_probe(broker)
    probe.publish("ruview/state/light.desk", {"state": "off", "attributes": {}}, retain=True)
    probe.publish("ruview/state/light.bad", b"{not json", retain=True)
    probe.publish("ruview/state/Not_Valid", {"state": "on"}, retain=True)
    probe.publish("ruview/state/light.last", {"state": "on"})  # after the bad ones
    assert wait_until(lambda: bridge.states.get("light.last") is not None, 5)
    assert bridge.states.get("light.desk").state == "off"
    assert wait_until(lambda: any(ev.entity_id == "light.desk" and ev.origin == "REMOTE"
                                  for ev in seen), 5)
    assert bridge.states.get("light.bad") is None
    assert bridge.states.rejected >= 2
    for topic in ("ruview/state/light.desk", "ruview/state/light.bad", "ruview/state/Not_Valid"):
        probe.publish(topic, b"", retain=True)


def test_events_out_and_in(broker, make_bridge, make_probe):
    bridge = make_bridge(broker)
    heard = []
    bridge.bus.subscribe(EventFired, lambda ev: heard.append(ev))
    probe = make_probe(broker, "ruview/event/#")
    bridge.events.fire("doorbell_pressed", {"door": "front"})
    msg = probe.wait_topic("ruview/event/doorbell_pressed")
    body = msg.json()
    assert not msg.retain
    assert body["data"] == {"door": "front"} and body["origin"] == "LOCAL"
    assert {"time_fired", "context"} <= set(body)
    probe.publish("ruview/event/window_opened", {"data": {"room": "bath"}})
    assert wait_until(lambda: any(e.event_type == "window_opened" for e in heard), 5)
    remote = [e for e in heard if e.event_type == "window_opened"]
    assert remote and remote[0].origin == "REMOTE" and remote[0].data == {"room": "bath"}
    # our own event came back over MQTT but was delivered on the bus only once
    assert len([e for e in heard if e.event_type == "doorbell_pressed"]) == 1


def test_service_calls(broker, make_bridge, make_probe):
    bridge = make_bridge(broker)

    def add(call):
        if "a" not in call.data:
            raise ServiceError("need 'a' and 'b'")
        return {"sum": call.data["a"] + call.data["b"]}

    bridge.services.register("math", "add", add)
    probe = make_probe(broker, "replies/#", "ruview/service/+/+/response")
    probe.publish("ruview/service/math/add",
                  {"id": "c1", "data": {"a": 2, "b": 3}, "response_topic": "replies/me"})
    ok = probe.wait_topic("replies/me").json()
    assert ok == {"id": "c1", "success": True, "error": None, "result": {"sum": 5}}

    probe.publish("ruview/service/math/add", {"id": "c2", "data": {}, "response_topic": "replies/me"})
    err = probe.wait_topic("replies/me", match=lambda m: m.json()["id"] == "c2").json()
    assert err["success"] is False and "need 'a'" in err["error"]

    # unknown service: an error answer, on the default response topic when none is named
    probe.publish("ruview/service/light/turn_sideways", {"id": "c3"})
    unknown = probe.wait_topic("ruview/service/light/turn_sideways/response").json()
    assert unknown["success"] is False and "unknown service light.turn_sideways" in unknown["error"]

    # malformed JSON still gets an answer
    probe.publish("ruview/service/math/add", b"{oops")
    bad = probe.wait_topic("ruview/service/math/add/response").json()
    assert bad["success"] is False and "not valid JSON" in bad["error"]



def test_retained_service_call_is_not_replayed(broker, make_bridge, make_probe):
    probe = make_probe(broker, "replies/#")
    probe.publish("ruview/service/math/add", {"id": "r1", "data": {"a": 1, "b": 1},
                                              "response_topic": "replies/me"}, retain=True)
    bridge = make_bridge(broker)
    calls = []
    bridge.services.register("math", "add", lambda call: calls.append(call.id))
    probe.publish("ruview/service/math/add", {"id": "live", "data": {}, "response_topic": "replies/me"})
    probe.wait_topic("replies/me")
    assert calls == ["live"] and [m.json()["id"] for m in probe.on("replies/me")] == ["live"]
    probe.publish("ruview/service/math/add", b"", retain=True)

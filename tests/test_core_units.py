"""The core's pieces on their own, with a recording stand-in for the MQTT client.

Fast and in-process, so that mutation testing (docs/testing.md) can run them for every
mutant; the same behaviour is tested end to end on real brokers elsewhere.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

import orjson
import pytest

from bridge.core.api import ApiError, BridgeApi
from bridge.core.bus import EventBus
from bridge.core.directory import NodeDirectory, NodeInfo
from bridge.core.eventdata import EventFired, PluginEntities, StateChanged
from bridge.core.events import EventChannel
from bridge.core.inbox import Inbox
from bridge.core.payload import PayloadError, dumps, parse_json
from bridge.core.services import ServiceError, ServiceRegistry
from bridge.core.state import InvalidEntityId, StateMachine
from bridge.core.supervisor import Supervisor
from bridge.mqtt.router import Message
from bridge.names import check_node_name, default_instance, is_node_name, node_entity_id, slugify, \
    valid_entity_id
from bridge.privacy import PrivacyClass
from bridge.topics import DiscoveryTopics, Topics
from tests.polling import wait_until


@dataclass
class Sent:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    correlation_data: bytes | None = None


@dataclass
class FakeMqtt:
    """Records what the core publishes and which handlers it subscribes."""

    sent: list[Sent] = field(default_factory=list)
    routes: dict[str, object] = field(default_factory=dict)
    connected: bool = True
    base_topic: str = "ruview"

    def listens_to(self, topic):
        from bridge.mqtt.router import filter_matches
        return any(filter_matches(f, topic) for f in self.routes)

    def publish(self, topic, payload, qos=0, retain=False, *, expiry=None, response_topic=None,
                correlation_data=None):
        from bridge.topics import check_topic
        check_topic(topic)
        self.sent.append(Sent(topic, payload if isinstance(payload, bytes) else payload.encode(), qos, retain,
                              correlation_data))
        return True

    options: dict[str, dict] = field(default_factory=dict)

    def subscribe(self, topic_filter, handler, **kwargs):
        self.routes[topic_filter] = handler
        self.options[topic_filter] = kwargs
        return topic_filter

    def on(self, topic):
        return [s for s in self.sent if s.topic == topic]


class Immediate:
    """An inbox stand-in that runs calls at once, in the caller's thread."""

    on_worker = False
    dropped = 0

    def put(self, fn, *args):
        fn(*args)
        return True


@pytest.fixture
def core():
    mqtt, topics = FakeMqtt(), Topics("ruview")
    bus = EventBus(Immediate())
    return mqtt, topics, bus


# ---------------------------------------------------------------- names and topics


@pytest.mark.parametrize("name,ok", [("kitchen", True), ("living_room", True), ("hall-2", True), ("3", True),
                                     ("hall-", False), ("-hall", False), ("a--b", False), ("a__b", False),
                                     ("a_-b", False), ("Kitchen", False), ("", False), ("x" * 65, False),
                                     ("x" * 64, True), ("a b", False), ("a/b", False), (7, False)])
def test_node_names_are_valid_in_topics_and_entity_ids(name, ok):
    assert is_node_name(name) is ok
    if ok:
        assert check_node_name(name) == name
        for key in ("presence", "occupancy", "motion"):
            assert valid_entity_id(node_entity_id("binary_sensor", name, key)), name


def test_slugify_makes_valid_object_ids_like_home_assistant():
    assert slugify("Living room lamp") == "living_room_lamp"
    assert slugify("a_ b") == "a_b" and slugify("__x__") == "x" and slugify("!!!") == "unknown"
    assert valid_entity_id(f"light.{slugify('Ärger -- im  Büro')}")
    # Home Assistant's own cases (homeassistant.util.slugify): letters are transliterated, not dropped
    for name, ha in [("T-!@#$!#@$!$est", "t_est"), ("Test More", "test_more"), ("Test_(More)", "test_more"),
                     ("Tèst_Mörê", "test_more"), ("B8:27:EB:00:00:00", "b8_27_eb_00_00_00"),
                     ("test.com", "test_com"), ("greg_phone - exp_wayp1", "greg_phone_exp_wayp1"),
                     ("Jönköping", "jonkoping"), ("本", "ben"), ("$$$", "unknown"),
                     ("Küche Licht", "kuche_licht"), ("Salle de bain – Plafonnier", "salle_de_bain_plafonnier")]:
        assert slugify(name) == ha, name
    assert default_instance() and "/" not in default_instance()


def test_topics_per_instance_only_with_a_share_group():
    alone = Topics("ruview", instance="attic")
    assert alone.bridge_state == "ruview/bridge/state" and alone.instance_request_filter is None
    assert alone.shared("ruview/service/+/+") == "ruview/service/+/+"
    grouped = Topics("ruview", instance="attic", share_group="house")
    assert grouped.bridge_state == "ruview/bridge/attic/state"
    assert grouped.bridge_health == "ruview/bridge/attic/health"
    assert grouped.shared("ruview/service/+/+") == "$share/house/ruview/service/+/+"
    assert grouped.request_verb("ruview/bridge/attic/request/node/rename") == ("node/rename", True)
    assert grouped.request_verb("ruview/bridge/request/info") == ("info", False)
    assert grouped.bridge_response("info", instance=True) == "ruview/bridge/attic/response/info"
    assert grouped.bridge_response("info") == "ruview/bridge/response/info"


def test_discovery_topics_know_whose_config_a_topic_is():
    dt = DiscoveryTopics("homeassistant")
    assert dt.component("sensor", "k", "rssi") == "homeassistant/sensor/k/rssi/config"
    assert dt.owner_key("homeassistant/sensor/k/rssi/config") == "k"
    assert dt.owner_key(dt.device("k")) == "k" and dt.owner_key(dt.trigger("k", "fall")) == "k"
    assert dt.owner_key("homeassistant/sensor/rssi/config") is None


# ---------------------------------------------------------------- payloads


def test_payloads_parse_with_errors_a_sender_can_act_on():
    assert parse_json(b"  ") == {} and parse_json(b'{"a":1}') == {"a": 1}
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_json(b"{oops")
    with pytest.raises(PayloadError, match="must be a JSON object, got list"):
        parse_json(b"[1]")
    assert parse_json(b"[1]", expect_object=False) == [1]
    out = dumps({1: "a"})
    assert out == b'{"1":"a"}' and type(out) is bytes


# ---------------------------------------------------------------- home state


def test_state_machine_semantics(core):
    mqtt, topics, bus = core
    heard = []
    bus.subscribe(StateChanged, lambda ev: heard.append(ev))
    states = StateMachine(mqtt, topics, bus)
    first = states.set("light.hall", "on", {"brightness": 10})
    assert first.state == "on" and first.last_changed == first.last_updated
    assert states.set("light.hall", "on", {"brightness": 10}) is None, "a no-op write"
    second = states.set("light.hall", "on", {"brightness": 20})
    assert second.last_changed == first.last_changed and second.context["id"] != first.context["id"]
    third = states.set("light.hall", "off", {"brightness": 20})
    assert third.last_changed != first.last_changed
    assert states.set("light.hall", "off", {"brightness": 20}, force=True) is not None
    sent = mqtt.on("ruview/state/light.hall")
    assert len(sent) == 4 and all(s.retain and s.qos == 1 for s in sent)
    assert orjson.loads(sent[-1].payload)["state"] == "off"
    assert [ev.new_state.state for ev in heard] == ["on", "on", "off", "off"]
    assert heard[0].old_state is None and heard[1].old_state == first
    assert states.get("light.hall").attributes == {"brightness": 20} and len(states) == 1
    assert states.remove("light.hall") and not states.remove("light.hall")
    assert mqtt.sent[-1].payload == b"" and mqtt.sent[-1].retain
    assert heard[-1].new_state is None and states.get("light.hall") is None
    with pytest.raises(InvalidEntityId):
        states.set("Light.Hall", 1)


def test_state_mirror_takes_others_writes_and_skips_our_echo(core):
    mqtt, topics, bus = core
    heard = []
    bus.subscribe(StateChanged, lambda ev: heard.append(ev))
    states = StateMachine(mqtt, topics, bus)
    states.start()
    mirror = mqtt.routes["ruview/state/#"]
    ours = states.set("switch.fan", "on")
    mirror(Message("ruview/state/switch.fan", mqtt.sent[-1].payload, retain=True))
    assert len(heard) == 1, "our own echo is not delivered again"
    mirror(Message("ruview/state/sensor.t", b'{"state": 21, "attributes": {"u": "C"}}'))
    assert states.get("sensor.t").state == "21" and heard[-1].origin == "REMOTE"
    for bad in (b"{nope", b'{"attributes": {}}', b'{"state": 1, "attributes": [1]}'):
        mirror(Message("ruview/state/sensor.t", bad))
    mirror(Message("ruview/state/Bad_Id", b'{"state": 1}'))
    assert states.rejected == 4 and states.get("sensor.t").state == "21"
    mirror(Message("ruview/state/sensor.t", b""))
    assert states.get("sensor.t") is None and heard[-1].new_state is None
    assert states.get("switch.fan") == ours


# ---------------------------------------------------------------- events


def test_events_out_and_in(core):
    mqtt, topics, bus = core
    heard = []
    bus.subscribe(EventFired, lambda ev: heard.append(ev))
    events = EventChannel(mqtt, topics, bus)
    events.start()
    fired = events.fire("door_opened", {"door": "front"})
    sent = mqtt.on("ruview/event/door_opened")[0]
    assert not sent.retain and sent.qos == 1 and orjson.loads(sent.payload)["origin"] == "LOCAL"
    handler = mqtt.routes["ruview/event/+"]
    handler(Message("ruview/event/door_opened", sent.payload))  # our echo
    handler(Message("ruview/event/window_opened", b'{"data": {"room": "bath"}}'))
    handler(Message("ruview/event/Bad-Type", b"{}"))
    handler(Message("ruview/event/broken", b"{oops"))
    assert [e.event_type for e in heard] == ["door_opened", "window_opened"]
    assert heard[1].origin == "REMOTE" and heard[1].data == {"room": "bath"} and heard[0].as_dict() == fired
    with pytest.raises(ValueError, match="invalid event type"):
        events.fire("Door Opened")


# ---------------------------------------------------------------- services


def _call(mqtt, topic, body, **kw):
    mqtt.routes["ruview/service/+/+"](Message(topic, orjson.dumps(body) if isinstance(body, dict) else body, **kw))
    return orjson.loads(mqtt.sent[-1].payload), mqtt.sent[-1].topic


def test_services_answer_always_and_validate_what_callers_name(core):
    mqtt, topics, _ = core
    services = ServiceRegistry(mqtt, topics)
    services.start()
    services.register("math", "add", lambda call: call.data["a"] + call.data["b"])
    services.register("math", "fail", lambda call: (_ for _ in ()).throw(ServiceError("nope")))
    services.register("math", "bug", lambda call: 1 / 0)
    assert services.names() == ["math.add", "math.bug", "math.fail"] and services.has("math", "add")
    reply, where = _call(mqtt, "ruview/service/math/add", {"id": "1", "data": {"a": 2, "b": 3},
                                                           "response_topic": "me/reply"})
    assert where == "me/reply" and reply == {"id": "1", "success": True, "error": None, "result": 5}
    reply, where = _call(mqtt, "ruview/service/math/fail", {"id": 2})
    assert where == "ruview/service/math/fail/response" and reply["error"] == "nope" and reply["id"] == 2
    reply, _ = _call(mqtt, "ruview/service/math/bug", {})
    assert "ZeroDivisionError" in reply["error"]
    reply, _ = _call(mqtt, "ruview/service/light/turn_sideways", {})
    assert "unknown service light.turn_sideways" in reply["error"]
    for bad, words in (({"response_topic": "me/a\u0000b"}, "NUL"), ({"response_topic": "x" * 70000}, "65535"),
                       ({"response_topic": "me/+"}, "wildcard"), ({"response_topic": 5}, "string"),
                       ({"data": [1]}, '"data" must be a JSON object'), ({"id": True}, '"id" must be')):
        reply, where = _call(mqtt, "ruview/service/math/add", {"data": {"a": 1, "b": 1}, **bad})
        assert where == "ruview/service/math/add/response" and not reply["success"] and words in reply["error"]
    reply, _ = _call(mqtt, "ruview/service/math/add", b"{oops")
    assert "not valid JSON" in reply["error"]
    assert services.calls == 3 and services.failures == 10  # unknown and invalid calls never run
    assert services.call("math", "add", {"a": 1, "b": 2}).answer() == 3
    with pytest.raises(ServiceError):
        services.call("no", "such")
    with pytest.raises(ValueError, match="math.add is already registered"):
        services.register("math", "add", lambda call: 0)  # a name has one owner: never replaced
    assert services.call("math", "add", {"a": 1, "b": 2}).answer() == 3
    services.unregister("math", "add")
    reg = services.register("math", "add", lambda call: 0)
    services.unregister("math", "add", object())  # not the current registration: kept
    assert services.has("math", "add")
    services.unregister("math", "add", reg)
    assert not services.has("math", "add")
    with pytest.raises(ValueError):
        services.register("Math", "add", lambda call: 0)


def test_a_service_runs_on_the_inbox_of_whoever_registered_it(core):
    mqtt, topics, _ = core
    services = ServiceRegistry(mqtt, topics)
    services.start()
    queued = []

    class Recording:
        on_worker = False

        def put(self, fn, *args):
            queued.append((fn, args))
            return True

    services.register("slow", "thing", lambda call: "done", Recording())
    mqtt.routes["ruview/service/+/+"](Message("ruview/service/slow/thing", b'{"id": "q"}'))
    assert mqtt.sent == [] and len(queued) == 1, "the core thread does not run a feature's service"
    fn, args = queued[0]
    fn(*args)
    assert orjson.loads(mqtt.sent[-1].payload)["result"] == "done"


# ---------------------------------------------------------------- requests


def _request(mqtt, topic, payload, route="ruview/bridge/request/#"):
    mqtt.routes[route](Message(topic, payload))
    return orjson.loads(mqtt.sent[-1].payload), mqtt.sent[-1].topic


def test_requests_answer_with_status_and_transaction(core):
    mqtt, topics, _ = core
    api = BridgeApi(mqtt, topics)
    api.start()
    api.register("echo", lambda req: {"got": req})
    api.register("refuse", lambda req: (_ for _ in ()).throw(ApiError("not today")))
    api.register("bug", lambda req: [][1])
    reply, where = _request(mqtt, "ruview/bridge/request/echo", b'{"transaction": 7, "x": 1}')
    assert where == "ruview/bridge/response/echo"
    assert reply == {"status": "ok", "data": {"got": {"transaction": 7, "x": 1}}, "transaction": 7}
    reply, _ = _request(mqtt, "ruview/bridge/request/echo", b'"kitchen"')
    assert reply["data"] == {"got": {"value": "kitchen"}} and "transaction" not in reply
    reply, _ = _request(mqtt, "ruview/bridge/request/refuse", b"{}")
    assert reply["status"] == "error" and reply["error"] == "not today"
    reply, _ = _request(mqtt, "ruview/bridge/request/bug", b"{}")
    assert "IndexError" in reply["error"]
    reply, _ = _request(mqtt, "ruview/bridge/request/no/such", b'{"transaction": 1}')
    assert "unknown request 'no/such'" in reply["error"] and reply["transaction"] == 1
    reply, _ = _request(mqtt, "ruview/bridge/request/echo", b"{oops")
    assert reply["status"] == "error" and "not valid JSON" in reply["error"]
    assert api.requests == 6 and api.errors == 4
    assert api.verbs() == ["bug", "echo", "refuse"]


def test_with_a_share_group_instance_verbs_come_only_from_the_instance_topic(core):
    mqtt, _, _ = core
    topics = Topics("ruview", instance="attic", share_group="house")
    api = BridgeApi(mqtt, topics)
    api.start()
    assert set(mqtt.routes) == {"$share/house/ruview/bridge/request/#", "ruview/bridge/attic/request/#"}
    api.register("restart", lambda req: {"restarting": True}, scope="instance")
    reply, where = _request(mqtt, "ruview/bridge/request/restart", b'{"transaction": 3}',
                            "$share/house/ruview/bridge/request/#")
    assert reply["status"] == "error" and "ruview/bridge/attic/request/restart" in reply["error"]
    assert reply["transaction"] == 3 and where == "ruview/bridge/response/restart"
    reply, where = _request(mqtt, "ruview/bridge/attic/request/restart", b"{}", "ruview/bridge/attic/request/#")
    assert reply["data"] == {"restarting": True} and where == "ruview/bridge/attic/response/restart"


# ---------------------------------------------------------------- bus, inbox, supervisor


def test_the_bus_delivers_each_event_class_to_its_listeners_and_unsubscribes():
    bus = EventBus(Immediate())
    got = []
    stop = bus.subscribe(PluginEntities, lambda e: got.append(("a", e.plugin)))
    bus.subscribe(PluginEntities, lambda e: got.append(("b", e.plugin)))
    bus.subscribe(EventFired, lambda e: got.append(("event", e.event_type)))
    bus.emit(PluginEntities("p1", "P1"))
    bus.emit(EventFired("knock", {}, "LOCAL", "t"))
    stop()
    stop()  # twice is harmless
    bus.emit(PluginEntities("p2", "P2"))
    assert got == [("a", "p1"), ("b", "p1"), ("event", "knock"), ("b", "p2")] and bus.listener_count() == 2


def test_an_inbox_runs_calls_in_order_survives_failures_and_drops_when_full():
    inbox = Inbox("t", Supervisor(), max_queue=3)
    got = []
    for n in range(5):
        inbox.put(got.append, n)
    assert inbox.dropped == 2 and inbox.backlog == 3
    inbox.put(got.append, 9)
    inbox.start()
    assert wait_until(lambda: got == [0, 1, 2], 5)  # the worker has room again before more come
    inbox.put(lambda: 1 / 0)
    inbox.put(got.append, 4)
    assert wait_until(lambda: got == [0, 1, 2, 4], 5)
    inbox.stop()
    assert inbox.errors == 1 and inbox.handled == 4 and inbox.stats()["dropped"] == 3


def test_a_supervised_loop_that_raises_is_restarted_and_counted():
    supervisor = Supervisor(min_backoff=0.01, max_backoff=0.02)
    stop = threading.Event()
    runs = []

    def loop():
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"crash {len(runs)}")
        stop.wait()

    handle = supervisor.spawn("flaky", loop, stop)
    assert wait_until(lambda: len(runs) == 3, 5)
    stats = supervisor.stats()["flaky"]
    assert stats == {"alive": True, "restarts": 2, "last_error": "RuntimeError: crash 2"}
    stop.set()
    handle.join(2)
    assert not handle.alive
    supervisor.forget(handle)
    assert "flaky" not in supervisor.stats()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_operating_system_sees_a_supervised_thread_under_its_name():
    stop, running = threading.Event(), threading.Event()
    handle = Supervisor().spawn("nodes-udp-ingest", lambda: (running.set(), stop.wait()), stop)
    try:
        assert running.wait(5)
        with open(f"/proc/self/task/{handle.thread.native_id}/comm") as f:
            assert f.read().strip() == "nodes-udp-inges"  # Linux keeps 15 bytes
    finally:
        stop.set()
        handle.join(2)


# ---------------------------------------------------------------- node directory


def test_the_directory_gives_a_watcher_the_snapshot_then_every_change():
    directory = NodeDirectory()
    a = NodeInfo(1, "hall", None, PrivacyClass.ANONYMOUS)
    directory.put(a)
    seen = []
    unwatch = directory.watch(seen.append, Immediate())
    assert [c.node.name for c in seen] == ["hall"] and seen[0].previous is None
    directory.put(a)  # unchanged: no news
    assert len(seen) == 1
    directory.update(1, online=True)
    assert seen[-1].node.online and not seen[-1].identity_changed
    directory.update(1, name="lobby")
    assert seen[-1].renamed_from == "hall" and seen[-1].identity_changed
    directory.update(1, state={"presence": True})
    assert seen[-1].node.state == {"presence": True}
    assert directory.update(9, online=True) is None
    directory.remove(1)
    assert seen[-1].removed and directory.get(1) is None and len(directory) == 0
    unwatch()
    directory.put(NodeInfo(2, "x", None, PrivacyClass.RESTRICTED))
    assert len(seen) == 5 and directory.watcher_count() == 0
    assert directory.by_name("x").node_id == 2 and [n.node_id for n in directory.all()] == [2]


def test_a_watcher_that_declines_states_hears_identity_and_availability_only():
    directory = NodeDirectory()
    directory.put(NodeInfo(1, "hall", None, PrivacyClass.ANONYMOUS))
    every, identity = [], []
    directory.watch(every.append, Immediate())
    directory.watch(identity.append, Immediate(), states=False)
    directory.update(1, state={"presence": True})
    directory.update(1, state={"presence": False})
    assert len(every) == 3 and len(identity) == 1  # the snapshot, then no state-only news
    directory.update(1, online=True)
    directory.update(1, room="hall", state={"presence": True})
    assert [c.node.online for c in identity[1:]] == [True, True] and identity[-1].node.room == "hall"
    assert len(every) == 5


def test_the_status_lines_rate_is_per_second_however_often_it_is_drawn():
    from bridge.core.rate import RateMeter
    count = {"n": 0}
    meter = RateMeter(lambda: count["n"], period=0.2)
    count["n"] = 9
    assert meter.rate() == 0.0  # drawn again 1 ms later (a log line): no new sample
    assert wait_until(lambda: meter.rate() > 0, 2)
    assert 9 / 0.4 < meter.rate() <= 9 / 0.2 + 1e-6


# ---------------------------------------------------------------- exact shapes (mutation testing found these)

def test_state_changed_events_have_every_field_for_local_and_remote_changes(core):
    mqtt, topics, bus = core
    heard = []
    bus.subscribe(StateChanged, lambda ev: heard.append(ev))
    states = StateMachine(mqtt, topics, bus)
    states.start()
    new = states.set("light.a", "on")
    assert heard[-1] == StateChanged("light.a", None, new, "LOCAL")
    states.remove("light.a")
    assert heard[-1] == StateChanged("light.a", new, None, "LOCAL")
    mirror = mqtt.routes["ruview/state/#"]
    mirror(Message("ruview/state/light.b", b'{"state": "off", "last_changed": "t1", "last_updated": "t2", '
                                          b'"context": {"id": "c1"}}'))
    remote = states.get("light.b")
    assert (remote.state, remote.last_changed, remote.last_updated, remote.context) == ("off", "t1", "t2",
                                                                                       {"id": "c1"})
    assert heard[-1] == StateChanged("light.b", None, remote, "REMOTE")
    mirror(Message("ruview/state/light.b", b'{"state": "off", "last_changed": "t1", "last_updated": "t2", '
                                          b'"context": {"id": "c1"}}'))
    assert len(heard) == 3, "the same state again is no change"
    mirror(Message("ruview/state/light.b", b""))
    assert heard[-1] == StateChanged("light.b", remote, None, "REMOTE")
    mirror(Message("ruview/state/light.nothing", b""))  # removing what is not there tells nobody
    assert len(heard) == 4
    assert remote.as_dict() == {"entity_id": "light.b", "state": "off", "attributes": {}, "last_changed": "t1",
                                "last_updated": "t2", "context": {"id": "c1"}}
    assert remote.domain == "light"


def test_events_carry_every_field_and_remote_events_are_shaped_like_local_ones(core):
    mqtt, topics, bus = core
    heard = []
    bus.subscribe(EventFired, lambda ev: heard.append(ev))
    events = EventChannel(mqtt, topics, bus)
    events.start()
    fired = events.fire("bell", {"n": 1}, parent_id="p1")
    assert set(fired) == {"event_type", "data", "origin", "time_fired", "context"}
    assert fired["context"]["parent_id"] == "p1" and fired["event_type"] == "bell" and fired["data"] == {"n": 1}
    assert events.fire("quiet")["data"] == {}
    mqtt.routes["ruview/event/+"](Message("ruview/event/knock", b'{"data": {"x": 1}, "time_fired": "t", '
                                                                 b'"context": {"id": "r1"}}'))
    assert heard[-1] == EventFired("knock", {"x": 1}, "REMOTE", "t", {"id": "r1"})
    mqtt.routes["ruview/event/+"](Message("ruview/event/bare", b"{}"))
    assert heard[-1].data == {} and heard[-1].context["id"] and heard[-1].time_fired


def test_service_answers_are_exactly_shaped_for_every_outcome(core):
    mqtt, topics, _ = core
    services = ServiceRegistry(mqtt, topics)
    services.start()
    seen = []
    services.register("t", "ok", lambda call: seen.append((call.domain, call.service, call.data, call.id)) or "r")
    services.register("t", "no", lambda call: (_ for _ in ()).throw(ServiceError("refused")))
    services.register("t", "bug", lambda call: {}["x"])
    assert _call(mqtt, "ruview/service/t/ok", {"id": "a", "data": {"k": 1}})[0] == \
        {"id": "a", "success": True, "error": None, "result": "r"}
    assert seen == [("t", "ok", {"k": 1}, "a")]
    assert _call(mqtt, "ruview/service/t/no", {"id": "b"})[0] == \
        {"id": "b", "success": False, "error": "refused", "result": None}
    assert _call(mqtt, "ruview/service/t/bug", {"id": "c"})[0] == \
        {"id": "c", "success": False, "error": "KeyError: 'x'", "result": None}
    assert _call(mqtt, "ruview/service/t/none", {"id": "d"})[0] == \
        {"id": "d", "success": False, "error": "unknown service t.none", "result": None}
    assert services.call("t", "ok", {"j": 2}, call_id="e").answer() == "r" and seen[-1] == ("t", "ok", {"j": 2}, "e")


def test_request_answers_are_exactly_shaped_and_go_to_the_verbs_response_topic(core):
    mqtt, topics, _ = core
    api = BridgeApi(mqtt, topics)
    api.start()
    api.register("a/b", lambda req: None)
    assert api.handle("a/b", {}) == {"status": "ok", "data": {}}
    assert api.handle("a/b", {"transaction": None}) == {"status": "ok", "data": {}, "transaction": None}
    reply, topic = _request(mqtt, "ruview/bridge/request/a/b", b"")
    assert (reply, topic) == ({"status": "ok", "data": {}}, "ruview/bridge/response/a/b")
    api.unregister("a/b", object())  # not the current one: kept
    assert "a/b" in api.verbs()
    api.unregister("a/b")
    assert api.handle("a/b", {})["error"] == "unknown request 'a/b' (known: )"


def test_command_subscriptions_refuse_retained_messages_and_mirrors_skip_our_echoes(core):
    mqtt, topics, bus = core
    StateMachine(mqtt, topics, bus).start()
    EventChannel(mqtt, topics, bus).start()
    ServiceRegistry(mqtt, topics).start()
    BridgeApi(mqtt, topics).start()
    assert mqtt.options["ruview/state/#"] == {"no_local": True}  # retained state is the point of it
    assert mqtt.options["ruview/event/+"] == {"accept_retained": False, "no_local": True}
    assert mqtt.options["ruview/service/+/+"] == {"accept_retained": False}
    assert mqtt.options["ruview/bridge/request/#"] == {"accept_retained": False}


def test_a_base_topic_of_several_levels_still_finds_domain_service_and_verb():
    mqtt, topics = FakeMqtt(), Topics("home/ruview")
    services, api = ServiceRegistry(mqtt, topics), BridgeApi(mqtt, topics)
    services.start(), api.start()
    services.register("light", "turn_on", lambda call: f"{call.domain}.{call.service}")
    api.register("node/rename", lambda req: {"ok": 1})
    mqtt.routes["home/ruview/service/+/+"](Message("home/ruview/service/light/turn_on", b"{}"))
    assert orjson.loads(mqtt.sent[-1].payload)["result"] == "light.turn_on"
    assert mqtt.sent[-1].topic == "home/ruview/service/light/turn_on/response"
    mqtt.routes["home/ruview/bridge/request/#"](Message("home/ruview/bridge/request/node/rename", b"{}"))
    assert mqtt.sent[-1].topic == "home/ruview/bridge/response/node/rename"
    assert orjson.loads(mqtt.sent[-1].payload)["data"] == {"ok": 1}


def test_context_ids_are_ulids_whose_first_ten_characters_are_the_time():
    from bridge.core.context import new_context_id
    import time as _time
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    before = _time.time_ns() // 1_000_000
    ids = [new_context_id() for _ in range(50)]
    after = _time.time_ns() // 1_000_000
    assert len(set(ids)) == 50 and all(len(i) == 26 and set(i) <= set(alphabet) for i in ids)
    for i in ids:
        millis = 0
        for ch in i[:10]:
            millis = millis * 32 + alphabet.index(ch)
        assert before <= millis <= after
    assert sorted(ids, key=lambda i: i[:10]) == sorted(ids, key=lambda i: i[:10])


def test_topics_keep_what_they_were_built_from():
    t = Topics("home/ruview", instance="attic", share_group="g")
    assert (t.base, t.instance, t.share_group) == ("home/ruview", "attic", "g")
    assert (t.bridge_event, t.state_filter, t.event_filter, t.service_filter, t.node_state_filter,
            t.node_set_filter) == ("home/ruview/bridge/event", "home/ruview/state/#", "home/ruview/event/+",
                                   "home/ruview/service/+/+", "home/ruview/node/+", "home/ruview/node/+/set")
    assert t.instance_request_filter == "home/ruview/bridge/attic/request/#"
    assert (t.node_log("k"), t.node_event("k"), t.node_availability("k")) == (
        "home/ruview/node/k/log", "home/ruview/node/k/event", "home/ruview/node/k/availability")
    dt = DiscoveryTopics("ha")
    assert (dt.component_filter, dt.node_component_filter, dt.device_filter) == (
        "ha/+/+/config", "ha/+/+/+/config", "ha/device/+/config")
    assert DiscoveryTopics.statestream_filter("hass") == "hass/+/+/state"

"""Topic matching, the outbox policy and the off-thread router, without a broker."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.core.inbox import Inbox
from bridge.core.supervisor import Supervisor
from bridge.mqtt.outbox import Outbox, Outgoing
from bridge.mqtt.router import Message, Router, filter_matches
from bridge.topics import InvalidTopic, check_filter, check_topic


@pytest.mark.parametrize("flt,topic,ok", [
    ("a/b", "a/b", True), ("a/+", "a/b", True), ("a/+", "a/b/c", False),
    ("a/#", "a", True), ("a/#", "a/b/c", True), ("#", "a/b", True), ("+/+", "a/b", True),
    ("+", "$SYS", False), ("#", "$SYS/x", False), ("$SYS/#", "$SYS/x", True),
    ("a/+/c", "a//c", True), ("$share/g/a/+", "a/b", True), ("a/b", "a/c", False),
])
def test_filter_matching(flt, topic, ok):
    assert filter_matches(flt, topic) is ok


@pytest.mark.parametrize("flt,ok", [("a/#", True), ("a/#/b", False), ("a/b+", False),
                                    ("+/x", True), ("", False), ("a#", False), ("$share/g/a/+", True),
                                    ("$share/g", False), ("$share/+/a", False), ("a/\0b", False),
                                    ("x" * 65536, False), ("\udcff", False)])
def test_valid_filter(flt, ok):
    if ok:
        assert check_filter(flt) == flt
    else:
        with pytest.raises(InvalidTopic):
            check_filter(flt)


@pytest.mark.parametrize("topic,reason", [
    ("me/a\0b", "NUL"), ("a/+", "wildcard"), ("a/#", "wildcard"), ("", "non-empty"),
    ("x" * 70000, "65535"), ("$SYS/x", "system topic"), ("bad\udcff", "UTF-8"), (None, "string"),
])
def test_topics_a_broker_would_refuse_are_refused_with_the_reason(topic, reason):
    with pytest.raises(InvalidTopic, match=reason):
        check_topic(topic)


def test_a_normal_topic_passes():
    assert check_topic("ruview/node/kitchen") == "ruview/node/kitchen"


def _out(topic, retain=False, n=0):
    return Outgoing(topic, str(n).encode(), 1, retain)


def test_outbox_drops_oldest_non_retained_first():
    box = Outbox(3)
    box.append(_out("state/a", retain=True, n=1))
    box.append(_out("event/x", n=1))
    box.append(_out("event/x", n=2))
    box.append(_out("event/x", n=3))  # over: event 1 goes, retained state stays
    assert [m.payload for m in box.drain()] == [b"1", b"2", b"3"]
    assert box.dropped == 1 and box.superseded == 0


def test_outbox_full_of_retained_drops_oldest_retained():
    box = Outbox(2)
    for n in range(4):
        box.append(_out(f"state/{n}", retain=True, n=n))
    assert [m.topic for m in box.drain()] == ["state/2", "state/3"]
    assert box.superseded == 2 and box.dropped == 0


def test_router_runs_handlers_off_the_calling_thread_in_order():
    inbox = Inbox("mqtt-handlers", Supervisor())
    router = Router(inbox)
    seen, threads = [], set()
    done = threading.Event()

    def handler(msg: Message):
        threads.add(threading.current_thread().name)
        seen.append(msg.payload)
        if msg.payload == b"99":
            done.set()

    router.add("x/+", handler)
    router.add("y/#", lambda m: (_ for _ in ()).throw(RuntimeError("bug")))
    inbox.start()
    try:
        for i in range(100):
            router.submit(Message("y/z", b""))  # a failing handler does not stop the worker
            router.submit(Message("x/1", str(i).encode()))
        assert done.wait(5)
    finally:
        inbox.stop()
    assert seen == [str(i).encode() for i in range(100)]
    assert threads == {"mqtt-handlers"} and inbox.errors == 100


def test_each_route_is_delivered_on_its_own_inbox():
    supervisor = Supervisor()
    core, ext = Inbox("core", supervisor), Inbox("ext", supervisor)
    router = Router(core)
    where = {}
    both = threading.Event()

    def note(name):
        def handler(msg):
            where[name] = threading.current_thread().name
            if len(where) == 2:
                both.set()
        return handler

    router.add("a", note("core"))
    router.add("a", note("ext"), inbox=ext)
    core.start(), ext.start()
    try:
        router.submit(Message("a", b""))
        assert both.wait(5)
    finally:
        core.stop(), ext.stop()
    assert where == {"core": "core", "ext": "ext"}


def test_router_never_blocks_when_full():
    inbox = Inbox("idle", Supervisor(), max_queue=5)  # worker not started: the queue fills
    router = Router(inbox)
    router.add("t", lambda m: None)
    start = time.monotonic()
    for _ in range(50):
        router.submit(Message("t", b""))
    assert time.monotonic() - start < 0.5
    assert router.dropped == 45 and inbox.backlog == 5 and inbox.dropped == 45


def test_retained_messages_skip_routes_that_refuse_them():
    inbox = Inbox("idle", Supervisor())
    router = Router(inbox)
    router.add("cmd/#", lambda m: None, accept_retained=False)
    router.submit(Message("cmd/a", b"1", retain=True))
    router.submit(Message("cmd/a", b"2"))
    assert inbox.backlog == 1 and router.ignored_retained == 1


def test_filters_ask_retain_as_published_for_command_routes_and_never_no_local_on_shared():
    router = Router(Inbox("idle", Supervisor()))
    router.add("cmd/#", lambda m: None, accept_retained=False)
    router.add("$share/g/svc/+", lambda m: None, no_local=True)
    router.add("state/#", lambda m: None, no_local=True)
    f = router.filters()
    assert f["cmd/#"].retain_as_published and not f["cmd/#"].no_local
    assert not f["$share/g/svc/+"].no_local, "No Local on a shared subscription is a protocol error"
    assert f["state/#"].no_local and not f["state/#"].retain_as_published


@pytest.mark.slow
def test_the_network_thread_sleeps_until_the_keepalive_is_due_when_idle(mosquitto):
    """Issue 38: an idle bridge must not wake for nothing. The thread waits for its socket, a wake-up
    or paho's keepalive, and still pings in time (the broker would drop it after 1.5 keepalives)."""
    import time as clock

    from bridge.core.inbox import Inbox
    from bridge.core.supervisor import Supervisor
    from bridge.mqtt.client import MqttClient
    from bridge.mqtt.router import Router
    from bridge.mqtt.settings import ConnectionSettings

    supervisor = Supervisor()
    inbox = Inbox("idle-test", supervisor).start()
    client = MqttClient(ConnectionSettings("127.0.0.1", mosquitto.port, keepalive=5, client_id="idle-test"),
                        Router(inbox), state_topic="idle/bridge/state", supervisor=supervisor)
    try:
        client.start()
        assert client.wait_connected(10)
        clock.sleep(0.5)
        before = client.counters.wakeups
        clock.sleep(8)  # the scenario: nothing to do for 8 s, keepalive 5 s (the broker's limit: 7.5 s)
        woke = client.counters.wakeups - before
        assert woke <= 5, f"{woke} wake-ups in 8 s idle: more than one keepalive ping and its answer"
        assert client.connected and client.counters.connects == 1, "the keepalive was kept"
    finally:
        client.stop(1.0)
        inbox.stop()

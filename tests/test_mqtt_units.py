"""Topic matching, the outbox policy and the off-thread router, without a broker."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.mqtt.outbox import Outbox, Outgoing
from bridge.mqtt.router import Message, Router, filter_matches, valid_filter


@pytest.mark.parametrize("flt,topic,ok", [
    ("a/b", "a/b", True), ("a/+", "a/b", True), ("a/+", "a/b/c", False),
    ("a/#", "a", True), ("a/#", "a/b/c", True), ("#", "a/b", True), ("+/+", "a/b", True),
    ("+", "$SYS", False), ("#", "$SYS/x", False), ("$SYS/#", "$SYS/x", True),
    ("a/+/c", "a//c", True), ("$share/g/a/+", "a/b", True), ("a/b", "a/c", False),
])
def test_filter_matching(flt, topic, ok):
    assert filter_matches(flt, topic) is ok


@pytest.mark.parametrize("flt,ok", [("a/#", True), ("a/#/b", False), ("a/b+", False),
                                    ("+/x", True), ("", False), ("a#", False)])
def test_valid_filter(flt, ok):
    assert valid_filter(flt) is ok


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
    router = Router()
    seen, threads = [], set()
    done = threading.Event()

    def handler(msg: Message):
        threads.add(threading.current_thread().name)
        seen.append(msg.payload)
        if msg.payload == b"99":
            done.set()

    router.add("x/+", handler)
    router.add("y/#", lambda m: (_ for _ in ()).throw(RuntimeError("bug")))
    router.start()
    try:
        for i in range(100):
            router.submit(Message("y/z", b""))  # a failing handler does not stop the worker
            router.submit(Message("x/1", str(i).encode()))
        assert done.wait(5)
    finally:
        router.stop()
    assert seen == [str(i).encode() for i in range(100)]
    assert threads == {"mqtt-handlers"} and router.handler_errors == 100


def test_router_never_blocks_when_full():
    router = Router(max_queue=5)
    router.add("t", lambda m: None)  # worker not started: the queue fills
    start = time.monotonic()
    for _ in range(50):
        router.submit(Message("t", b""))
    assert time.monotonic() - start < 0.5
    assert router.dropped == 45 and router.backlog == 5


def test_retained_messages_skip_routes_that_refuse_them():
    router = Router()
    got = []
    router.add("cmd/#", got.append, accept_retained=False)
    router.submit(Message("cmd/a", b"1", retain=True))
    router.submit(Message("cmd/a", b"2"))
    assert router.backlog == 1

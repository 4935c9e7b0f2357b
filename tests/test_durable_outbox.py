"""QoS 1 messages queued while the broker is away survive kill -9 (issue 33 finding 7).

A bridge process fires five QoS 1 events with its broker down, is killed with SIGKILL once it
says they are on disk, and is started again with the broker up: all five arrive, in order,
before anything the new run publishes, and their rows are gone once the broker took them.
A store that cannot keep them (a real SQLITE_FULL) leaves them in memory, counted, said once.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson

from bridge.app import build_bridge
from bridge.core.store import StateStore
from tests.brokers import Mosquitto, free_port
from tests.polling import wait_until

def events(store: StateStore) -> list[str]:
    return [q.topic for q in store.outbox_pending() if q.topic.startswith("ruview/event/")]


CHILD = textwrap.dedent("""
    import sys, time
    from bridge.app import build_bridge
    from bridge.catalog import validate_config
    url, state_dir = sys.argv[1], sys.argv[2]
    config = validate_config({"mqtt": {"url": url, "protocol": "3.1.1",
                                       "reconnect": {"min_delay": 0.2, "max_delay": 1.0}},
                              "bridge": {"state_dir": state_dir}}, "test", env={})
    bridge = build_bridge(config, extensions=[])
    bridge.start()
    for n in range(5):
        bridge.events.fire("node_rebooted", {"node": "node_3", "n": n})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(q.topic.endswith("/node_rebooted")
                                              for q in bridge.store.outbox_pending()) < 5:
        time.sleep(0.01)
    print("kept", sum(q.topic.endswith("/node_rebooted") for q in bridge.store.outbox_pending()), flush=True)
    time.sleep(600)  # killed here
""")


def test_events_queued_while_the_broker_is_down_survive_kill_9(make_config, make_probe, tmp_path):
    broker = Mosquitto(free_port())  # not started yet: the broker is down
    state_dir = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", CHILD, broker.url, str(state_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        died = child.stderr.read() if child.poll() is not None and child.stderr else ""
        assert line.strip() == "kept 5", (line, died)
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        store = StateStore.in_dir(state_dir)
        assert events(store) == ["ruview/event/node_rebooted"] * 5
        store.close()

        broker.start()
        probe = make_probe(broker, "ruview/event/#")
        bridge = build_bridge(make_config(broker, bridge={"state_dir": str(state_dir)}), extensions=[])
        try:
            bridge.start()
            bridge.events.fire("after_restart")  # new: after the earlier run's five
            probe.wait_for(lambda got: len(got) >= 6, 10)
            got = [(m.topic.rsplit("/", 1)[1], m.json()["data"].get("n")) for m in probe.messages]
            assert got == [("node_rebooted", n) for n in range(5)] + [("after_restart", None)], got
            assert wait_until(lambda: bridge.store.outbox_pending() == [], 5), \
                ("rows kept after the broker took them", bridge.store.outbox_pending())
        finally:
            bridge.stop()
    finally:
        if child.poll() is None:
            child.kill()
        broker.cleanup()


def test_a_store_that_cannot_keep_them_leaves_them_in_memory_counted_said_once(make_config, make_probe, caplog):
    broker = Mosquitto(free_port())
    bridge = build_bridge(make_config(broker), extensions=[])
    db = bridge.store._db  # a real SQLITE_FULL: the file may grow no more
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    try:
        bridge.start()
        with caplog.at_level(logging.INFO, logger="bridge.mqtt.keeper"):
            for n in range(5):  # each larger than a page: the file must grow to keep it
                bridge.events.fire("node_rebooted", {"n": n, "note": "x" * 5000})
            assert wait_until(lambda: bridge.mqtt.stats()["outbox_disk"]["unsaved"] >= 5, 5), bridge.mqtt.stats()
            said = [r for r in caplog.records if r.name == "bridge.mqtt.keeper"]
            assert len(said) == 1 and said[0].levelname == "ERROR" and "disk is full" in said[0].getMessage(), \
                [r.getMessage() for r in said]
        assert bridge.mqtt.stats()["outbox"] >= 5 and events(bridge.store) == []
        broker.start()
        probe = make_probe(broker, "ruview/event/#")
        assert bridge.mqtt.wait_connected(15)
        probe.wait_for(lambda got: len(got) >= 5, 10, "kept in memory, they still go")
    finally:
        bridge.stop()
        broker.cleanup()


def test_the_writer_keeps_a_burst_in_few_short_commits(make_config):
    """The network thread never writes to disk; the writer gathers a burst into few transactions."""
    broker = Mosquitto(free_port())
    bridge = build_bridge(make_config(broker), extensions=[])
    try:
        bridge.start()
        for n in range(2000):
            bridge.events.fire("tick", {"n": n})
        assert wait_until(lambda: len(events(bridge.store)) == 2000, 20), bridge.mqtt.stats()
        disk = bridge.mqtt.stats()["outbox_disk"]
        assert disk["commits"] <= 50, disk  # batches, not one fsync per message
        print("outbox writer:", disk)
    finally:
        bridge.stop()
    store = StateStore.in_dir(Path(bridge.config.bridge.state_path))
    assert len(events(store)) == 2000, "not acknowledged: kept for the next start"
    store.close()


def test_an_outbox_overflow_forgets_the_dropped_rows(make_config):
    broker = Mosquitto(free_port())
    bridge = build_bridge(make_config(broker, mqtt={"outbox_size": 10}), extensions=[])
    try:
        bridge.start()
        for n in range(15):
            bridge.events.fire("tick", {"n": n})
        held = bridge.mqtt.stats()["outbox"]
        assert held == 10 and wait_until(lambda: len(bridge.store.outbox_pending()) == held, 10), \
            (bridge.mqtt.stats(), bridge.store.outbox_pending())
        kept = [orjson.loads(q.payload)["data"]["n"] for q in bridge.store.outbox_pending()
                if q.topic == "ruview/event/tick"]
        assert kept == list(range(15 - len(kept), 15)), kept  # the oldest went, from disk too
    finally:
        bridge.stop()


def test_an_earlier_runs_messages_wait_while_the_store_cannot_be_written(tmp_path, caplog):
    """Sent from a store that cannot forget them, they would go again at every start (and the
    directory may be another running bridge's)."""
    from bridge.core.supervisor import Supervisor
    from bridge.mqtt.keeper import OutboxKeeper
    store = StateStore.in_dir(tmp_path)
    store.outbox_add([("ruview/event/a", b"1", 1, False)])
    assert [m.topic for m in OutboxKeeper(store, Supervisor()).earlier()] == ["ruview/event/a"]
    store.problem = f"{store.path}: cannot be written (it is read-only: make the directory writable)"
    assert OutboxKeeper(store, Supervisor()).earlier() == []
    assert any("stay in" in r.getMessage() for r in caplog.records)
    store.close()

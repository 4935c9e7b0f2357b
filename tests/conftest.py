"""Fixtures: real brokers (Mosquitto and the bridge's embedded broker), probes and bridges."""

from __future__ import annotations

import copy
import itertools
import os
import tempfile
import time

import pytest

# The inbox rule is checked in the whole suite, and in every bridge a test starts as a process:
# a callback that runs off its extension's inbox fails the test (bridge/core/inbox.py).
os.environ.setdefault("RUVIEW_CHECK_THREADS", "1")
# Every bridge keeps its state (bridge.state_dir's default follows $XDG_STATE_HOME) away from the
# user's: one directory per test (below), and one per worker for bridges made outside a test.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="ruview-state-")

from bridge.app import Bridge, build_bridge  # noqa: E402
from bridge.core import inbox as inbox_rule  # noqa: E402
from bridge.catalog import validate_config  # noqa: E402
from tests.brokers import Embedded, Mosquitto, free_port, mosquitto_available
from tests.mqtt_probe import Probe  # noqa: E402

os.environ["RUVIEW_HTTP_DEFAULT_PORT"] = str(free_port())  # bridges made outside a test (see own_state_dir)


def pytest_collection_modifyitems(config, items):
    """Spread the few long tests (marked `slow`) so that each xdist worker starts with one: work
    stealing first deals each worker an equal run of the collection, and two long tests dealt to
    one worker would run one after the other, making the whole suite wait for them."""
    workers = getattr(config, "workerinput", {}).get("workercount") or config.getoption("numprocesses", 0) or 0
    slow = [item for item in items if item.get_closest_marker("slow")]
    if not isinstance(workers, int) or workers < 2 or not slow:
        return
    rest = iter([item for item in items if not item.get_closest_marker("slow")])
    chunk = max(1, len(items) // workers)
    ordered: list = []
    for k in range(workers):  # slow[k] opens worker k's run
        head = slow[k:k + 1]
        ordered.extend(head)
        ordered.extend(itertools.islice(rest, chunk - len(head)))
    items[:] = [*ordered, *slow[workers:], *rest]


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path_factory, monkeypatch):
    """A fresh default state directory for each test: nothing a test stores leaks into another."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
    # the frontend is on by default: a bridge a test starts without an http: section takes a free
    # port, never 3000 (a file's http.port still wins)
    monkeypatch.setenv("RUVIEW_HTTP_DEFAULT_PORT", str(free_port()))


@pytest.fixture(autouse=True)
def every_callback_on_its_inbox():
    """Fails a test in which any extension callback ran off its own inbox (thread checks are on)."""
    assert inbox_rule.CHECK_THREADS, "RUVIEW_CHECK_THREADS is off: the inbox rule goes unchecked"
    inbox_rule.violations.clear()
    yield
    caught, inbox_rule.violations[:] = list(inbox_rule.violations), []
    assert not caught, f"ran off its inbox: {caught[:5]}"


def _start(cls):
    if cls is Mosquitto and not mosquitto_available():
        pytest.fail("mosquitto is not installed: run ./tests/run.sh, which installs it")
    broker = cls().start()
    return broker


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request):
    """Each broker-facing test runs on both a real Mosquitto and the bridge's embedded broker."""
    b = _start(Mosquitto if request.param == "mosquitto" else Embedded)
    yield b
    b.cleanup()


@pytest.fixture
def mosquitto():
    b = _start(Mosquitto)
    yield b
    b.cleanup()


@pytest.fixture
def make_config():
    def make(broker, **sections) -> dict:
        protocol = "auto" if broker.supports_v5 else "3.1.1"
        raw = {"mqtt": {"url": broker.url, "protocol": protocol,
                        "reconnect": {"min_delay": 0.2, "max_delay": 1.0}},
               "bridge": {"health_interval": 1, "shutdown_timeout": 3}}
        for key, value in sections.items():
            raw.setdefault(key, {}).update(copy.deepcopy(value))
        return validate_config(raw, "test", env={})
    return make


@pytest.fixture
def make_bridge(make_config):
    started: list[Bridge] = []

    def make(broker, *, start: bool = True, **sections) -> Bridge:
        config = make_config(broker, **sections)
        bridge = build_bridge(config, extensions=[])  # the core alone
        if start:
            bridge.start()
            assert bridge.mqtt.wait_connected(15), f"bridge did not connect to {broker}"
        started.append(bridge)
        return bridge

    yield make
    for bridge in started:
        bridge.stop()


def served(probe: Probe, bridge: Bridge, base: str = "ruview", timeout: float = 5.0) -> None:
    """Barrier: ask the bridge a question, wait for its answer, then for every inbox to drain.

    The core handles requests in arrival order, so once this answer is back every message the
    probe sent before it has been handed to the inbox it is for; `bridge.drain` then waits until
    each has run, and whatever that set off on other inboxes. The way to check that something
    did *not* happen without sleeping.
    """
    tx = f"barrier-{time.monotonic_ns()}"
    topic = f"{base}/bridge/response/health_check"
    if topic not in probe.subscriptions:
        probe.subscribe(topic)
    probe.publish(f"{base}/bridge/request/health_check", {"transaction": tx})
    probe.wait_topic(topic, timeout, match=lambda m: m.json().get("transaction") == tx)
    assert bridge.drain(timeout), "the bridge's inboxes did not drain"


def settled(bridge: Bridge, timeout: float = 5.0) -> None:
    """Wait until the broker has acknowledged everything the bridge published."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = bridge.mqtt.stats()
        if stats["unacknowledged"] == 0 and stats["outbox"] == 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"broker did not acknowledge: {bridge.mqtt.stats()}")


@pytest.fixture
def make_probe():
    probes: list[Probe] = []

    def make(broker, *topics: str, **kwargs) -> Probe:
        probe = Probe(broker.port, **kwargs)
        if topics:
            probe.subscribe(*topics)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()


@pytest.fixture
def node_bridge(make_config):
    """A bridge with the nodes extension listening on a free loopback UDP port."""
    from bridge.nodes.extension import NodesExtension

    made = []

    def make(broker, **nodes_cfg):
        port = free_port()
        nodes_cfg.setdefault("udp", {"bind": "127.0.0.1", "port": port})
        config = make_config(broker, nodes={"publish_interval": 0.2, **nodes_cfg})
        bridge = build_bridge(config, extensions=[NodesExtension()])
        bridge.start()
        assert bridge.mqtt.wait_connected(15)
        made.append(bridge)
        return bridge, bridge.extension("nodes"), port

    yield make
    for bridge in made:
        bridge.stop()

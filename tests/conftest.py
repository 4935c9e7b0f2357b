"""Fixtures: real brokers (Mosquitto and the bridge's embedded broker), probes and bridges."""

from __future__ import annotations

import copy
import time

import pytest

from bridge.app import Bridge, build_bridge
from bridge.catalog import validate_config
from tests.brokers import Embedded, Mosquitto, free_port, mosquitto_available
from tests.mqtt_probe import Probe


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


def served(probe: Probe, base: str = "ruview", timeout: float = 5.0) -> None:
    """Barrier: ask the bridge a question and wait for its answer.

    The core handles requests in arrival order, so once this answer is back every
    message the probe sent before it has been handled: the way to check that
    something did *not* happen without sleeping.
    """
    tx = f"barrier-{time.monotonic_ns()}"
    topic = f"{base}/bridge/response/health_check"
    if topic not in probe.subscriptions:
        probe.subscribe(topic)
    probe.publish(f"{base}/bridge/request/health_check", {"transaction": tx})
    probe.wait_topic(topic, timeout, match=lambda m: m.json().get("transaction") == tx)


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

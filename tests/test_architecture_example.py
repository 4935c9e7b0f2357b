"""The example extension in docs/architecture.md runs as written, on a real broker."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

from bridge.app import build_bridge
from bridge.catalog import validate_config
from bridge.config import ConfigError
from bridge.nodes.extension import NodesExtension
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import free_port_udp
from tests.polling import wait_until

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _example() -> dict:
    text = DOC.read_text()
    block = re.search(r"<!-- example-extension -->\s*```python\n(.*?)```\s*<!-- /example-extension -->",
                      text, re.S)
    assert block, "the example extension is missing from docs/architecture.md"
    lines = block[1].strip().splitlines()
    assert 25 <= len(lines) <= 45, f"the example should stay readable ({len(lines)} lines)"
    module = types.ModuleType("architecture_example")  # a real module, as an installed package would be
    sys.modules[module.__name__] = module
    exec(compile(block[1], str(DOC), "exec"), module.__dict__)
    return module.__dict__


def test_the_documented_extension_counts_occupied_rooms(mosquitto, make_probe):
    example = _example()
    cls = example["OccupancyCount"]
    port = free_port_udp()
    raw = {"mqtt": {"url": mosquitto.url}, "nodes": {"udp": {"bind": "127.0.0.1", "port": port},
                                                      "publish_interval": 0.2},
           "occupancy_count": {"enabled": True, "entity": "busy_rooms"}}
    config = validate_config(raw, "test", env={}, extra={"occupancy_count": cls.Config})
    assert config.occupancy_count.entity == "busy_rooms"

    counter = cls()
    bridge = build_bridge(config, extensions=[NodesExtension(), counter])
    probe = make_probe(mosquitto, "ruview/state/sensor.busy_rooms")
    bridge.start()
    try:
        send_udp(generate(make_nodes(2, "visit", 30), 30), "127.0.0.1", port, speed=0)
        probe.wait_topic("ruview/state/sensor.busy_rooms", 10, match=lambda m: m.json()["state"] == "2")
        assert bridge.health()["occupancy_count"] == {"occupied": 2}
        probe.publish("ruview/occupancy_count/reset", b"")
        probe.wait_topic("ruview/state/sensor.busy_rooms", 5, match=lambda m: m.json()["state"] == "0")
        assert wait_until(lambda: bridge.health()["occupancy_count"] == {"occupied": 0}, 5)
    finally:
        bridge.stop()


def test_its_section_is_validated_like_the_built_in_ones():
    cls = _example()["OccupancyCount"]
    try:
        validate_config({"occupancy_count": {"enabeld": True, "entity": "Bad Name"}}, "my.yaml", env={},
                        extra={"occupancy_count": cls.Config})
    except ConfigError as exc:
        assert exc.problems == [
            'occupancy_count.entity: expected a word of [a-z0-9_-], got "Bad Name"',
            "occupancy_count.enabeld: unknown key (did you mean 'enabled'?)"]
    else:
        raise AssertionError("an invalid section was accepted")
    try:  # without the extension installed, the file has no such section
        validate_config({"occupancy_count": {}}, "my.yaml", env={})
    except ConfigError as exc:
        assert exc.problems[0].startswith("occupancy_count: unknown key")
    else:
        raise AssertionError("a section no extension owns was accepted")

"""Only what is enabled is loaded: a disabled feature's modules (and the libraries they pull in:
wasmtime, HAP-python, hassil, ...) are never imported, so they cost a default bridge no memory.

Each case runs in a fresh interpreter: this test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from bridge import catalog
from bridge.app import build_bridge
config = catalog.validate_config(json.loads(sys.argv[1]), env={})
bridge = build_bridge(config)
heavy = ("wasmtime", "pyhap", "hassil", "numpy", "aiohttp", "bridge.plugins.extension", "bridge.homekit.extension",
         "bridge.assist.extension", "bridge.http.extension")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def _loaded(config: dict) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(config)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_a_default_bridge_imports_no_disabled_feature_and_no_numpy():
    # the defaults: nodes, Home Assistant discovery and the HTTP frontend (aiohttp) on
    assert _loaded({"mqtt": {"url": "mqtt://127.0.0.1:1"}}) == ["aiohttp", "bridge.http.extension"]
    assert _loaded({"mqtt": {"url": "mqtt://127.0.0.1:1"}, "http": {"enabled": False}}) == []


def test_an_enabled_feature_is_loaded_and_a_disabled_ones_section_is_still_checked():
    assert "bridge.assist.extension" in _loaded({"mqtt": {"url": "mqtt://127.0.0.1:1"}, "http": {"enabled": False},
                                                 "assist": {"enabled": True}})
    from bridge.catalog import validate_config
    from bridge.config.loader import ConfigError
    try:
        validate_config({"homekit": {"port": 0}}, env={})
    except ConfigError as exc:
        assert "homekit.port" in str(exc)
    else:
        raise AssertionError("a disabled feature's section must still be validated")

"""`ruview-bridge plugin new --lang c|rust|assemblyscript` writes a plugin that builds with its own
build.sh and loads as it stands; the PDK it copies is the repository's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.plugins.commands import LANGUAGES
from tests.plugins.helpers import PLUGINS
from tests.plugins.toolchains import asc
from tests.plugins.test_lifecycle import status
from tests.plugins.test_plugins_e2e import plugin_bridge  # noqa: F401 (fixture)
from tests.plugins.test_trust_and_tools import cli
from tests.polling import wait_until
from tests.test_hostile_input import pub

VENV_BIN = Path(sys.executable).parent
PDK = {"ruview_plugin.h": PLUGINS / "pdk" / "ruview_plugin.h",
       "ruview_plugin/lib.rs": PLUGINS / "pdk" / "rust" / "src" / "lib.rs",
       "ruview_plugin/json.rs": PLUGINS / "pdk" / "rust" / "src" / "json.rs",
       "ruview_plugin.ts": PLUGINS / "pdk" / "assemblyscript" / "ruview_plugin.ts"}


def test_the_pdk_plugin_new_copies_is_the_repositorys():
    for source, _, copied, _ in LANGUAGES.values():
        for name in copied:
            assert (source / name).read_bytes() == PDK[name].read_bytes(), f"{source / name} is not {PDK[name]}"


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_a_new_plugin_in_each_language_builds_and_loads_as_it_stands(lang, mosquitto, plugin_bridge, make_probe,  # noqa: F811
                                                                      tmp_path, caplog):
    plugin = tmp_path / "plugins" / f"hall-{lang}"
    made = cli("new", "--lang", lang, str(plugin))
    assert made.returncode == 0, made.stderr
    # build.sh as a user runs it: the venv's python3 and ruview-bridge on PATH
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ASC": str(asc())}
    built = subprocess.run([str(plugin / "build.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (plugin / "plugin.wasm").stat().st_size > 0
    probe = make_probe(mosquitto, "ruview/plugin/+/status")
    domain = f"hall_{lang}"
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugin.parent)], "allow_unsigned": True, "watch": False})
    assert status(probe, domain, lambda s: s["state"] == "running", 10)["trust"].startswith("unsigned")
    pub(mosquitto, "ruview/state/binary_sensor.hall_door", {"state": "on", "attributes": {}})
    assert wait_until(lambda: host.plugins[domain].health()["events"] >= 1, 5)
    assert wait_until(lambda: "something turned on" in caplog.text, 5)
    assert host.plugins[domain].health()["crashes"] == 0

"""The Rust and AssemblyScript PDKs, every call: a probe plugin (tests/plugins/pdk_probe) built in
each language the way `plugin new` builds, reading its entry data back, calling every hc_* import
once (a state larger than the first buffer, a denial, a missing entity and service, a reserved
topic, an invalid entity id), answering services and echoing MQTT — on a real bridge and broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins.helpers import PLUGINS
from tests.plugins.toolchains import asc
from tests.plugins.test_lifecycle import status
from tests.plugins.test_plugins_e2e import plugin_bridge  # noqa: F401 (fixture)
from tests.plugins.test_trust_and_tools import cli
from tests.polling import wait_until
from tests.test_hostile_input import pub

PROBE = Path(__file__).resolve().parent / "pdk_probe"
SOURCES = {"rust": "plugin.rs", "assemblyscript": "plugin.ts"}
QUOTE = 'a "quoted" \\ line\nnext \u00e9 \U0001d11e'


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    """lang -> a directory of plugins holding the probe built in that language (built once)."""
    built: dict[str, Path] = {}

    def get(lang: str) -> Path:
        if lang not in built:
            built[lang] = build_probe(lang, tmp_path_factory.mktemp(f"probe-{lang}"))
        return built[lang]

    return get


def build_probe(lang: str, into: Path) -> Path:
    plugin = into / f"probe-{lang}"
    made = cli("new", "--lang", lang, str(plugin))
    assert made.returncode == 0, made.stderr
    for name in (SOURCES[lang], "manifest.json"):
        shutil.copy(PROBE / name, plugin / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "ASC": str(asc())}
    built = subprocess.run([str(plugin / "build.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    return plugin


@pytest.mark.slow  # it builds the probe: about 5 s of rustc, 10 s of asc on a shared machine
@pytest.mark.parametrize("lang", sorted(SOURCES))
def test_every_host_call_of_the_pdk_answers_as_the_abi_says(lang, mosquitto, plugin_bridge, make_probe,  # noqa: F811
                                                             probes):
    plugin = probes(lang)
    probe = make_probe(mosquitto, "ruview/plugin/+/status", "ruview/event/#", "probe/out", "homeassistant/#",
                       "ruview/service/+/+/response")
    entry = {"pdk_probe": {"quote": QUOTE, "list": [1, 2.5, -3e2]}}
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugin.parent)], "allow_unsigned": True,
                                                "entries": entry, "watch": False})
    echoed = []
    bridge.services.register("probe", "echo", lambda call: echoed.append(call.data) or "ok")
    assert status(probe, "pdk_probe", lambda s: s["state"] == "running", 10)
    # the entry data, decoded by the PDK and encoded again
    ready = bridge.states.get("sensor.pdk_probe")
    assert ready.state == "ready"
    assert ready.attributes == {"quote": QUOTE, "list": [1, 2.5, -300], "absent": True, "title": "PDK probe"}
    assert probe.wait_topic("homeassistant/sensor/ruview_ruview_plugin_pdk_probe/pdk_probe/config", 10,
                            match=lambda m: bool(m.payload)).json()["name"] == "PDK probe"

    pub(mosquitto, "ruview/state/sensor.big", {"state": "on", "attributes": {"padding": "x" * 5000}})
    assert wait_until(lambda: bridge.states.get("sensor.big") is not None, 5)
    pub(mosquitto, "ruview/service/pdk_probe/check", {"id": "c1", "data": {}})
    answer = probe.wait_topic("ruview/service/pdk_probe/check/response", 5, match=lambda m: m.json()["id"] == "c1")
    assert answer.json()["success"], answer.json()
    assert wait_until(lambda: bridge.states.get("sensor.pdk_probe_report") is not None, 5)
    report = bridge.states.get("sensor.pdk_probe_report").attributes
    assert report == {"log": "ok", "big_state": "on", "big_padding": 5000, "missing": "not found",
                      "denied": "permission denied", "event": "ok", "service": "ok", "no_service": "not found",
                      "publish": "ok", "reserved": "permission denied", "invalid": "invalid argument"}, report
    assert probe.wait_topic("ruview/event/pdk_probe", 5).json()["data"] == {"n": 1, "plugin": "pdk_probe"}
    assert probe.wait_topic("probe/out", 5).payload == b"hello"
    assert wait_until(lambda: echoed == [{"from": "probe"}], 5)
    assert host.plugins["pdk_probe"].health()["denied"] == 2

    pub(mosquitto, "probe/in", b"ping \xc3\xa9")
    assert probe.wait_topic("probe/out", 5, match=lambda m: m.payload.startswith(b"echo:")).payload == \
        "echo:ping \u00e9".encode()
    pub(mosquitto, "ruview/service/pdk_probe/say", {"id": "s1", "data": {"text": "hi \u00e9"}})
    assert probe.wait_topic("ruview/service/pdk_probe/say/response", 5).json()["success"]
    assert wait_until(lambda: (s := bridge.states.get("sensor.pdk_probe_said")) and s.state == "hi \u00e9", 5)
    # an Err from the handler (no text) is its answer, not a crash; the next call is served
    pub(mosquitto, "ruview/service/pdk_probe/say", {"id": "s2", "data": {}})
    pub(mosquitto, "ruview/service/pdk_probe/say", {"id": "s3", "data": {"text": "after"}})
    assert wait_until(lambda: bridge.states.get("sensor.pdk_probe_said").state == "after", 5)
    # a Rust panic or an AssemblyScript throw is a trap: that call ends, the plugin starts again
    mark = len(probe.messages)
    pub(mosquitto, "ruview/service/pdk_probe/panic", {"id": "p1", "data": {}})
    assert wait_until(lambda: host.plugins["pdk_probe"].health()["crashes"] == 1, 5)
    assert status(probe, "pdk_probe", lambda s: s["state"] == "running", 10, since=mark)
    pub(mosquitto, "ruview/service/pdk_probe/say", {"id": "s4", "data": {"text": "alive"}})
    assert wait_until(lambda: bridge.states.get("sensor.pdk_probe_said").state == "alive", 5)


@pytest.mark.slow
@pytest.mark.parametrize("lang", sorted(SOURCES))
def test_a_setup_entry_error_of_the_plugins_own_is_its_code(lang, mosquitto, plugin_bridge, make_probe,  # noqa: F811
                                                             probes):
    plugin = probes(lang)
    probe = make_probe(mosquitto, "ruview/plugin/+/status")
    plugin_bridge(mosquitto, {"dirs": [str(plugin.parent)], "allow_unsigned": True,
                              "entries": {"pdk_probe": {"fail": True}}, "watch": False})
    failed = status(probe, "pdk_probe", lambda s: s["state"] == "failed", 10)
    assert failed["reason"] == "setup_entry answered -42 (its own error code)"


def test_the_rust_pdks_own_unit_tests_pass_on_the_build_machine(tmp_path):
    """json.rs's tests (escapes, numbers, nested values, no panic on broken input), with rustc --test."""
    rustc = shutil.which("rustc", path="/usr/bin") or "rustc"
    built = subprocess.run([rustc, "--edition", "2021", "--test", str(PLUGINS / "pdk" / "rust" / "src" / "lib.rs"),
                            "-o", str(tmp_path / "pdk-tests")], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(tmp_path / "pdk-tests")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "test result: ok. 4 passed" in ran.stdout, ran.stdout + ran.stderr


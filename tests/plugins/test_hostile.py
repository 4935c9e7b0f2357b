"""Plugins against hostile plugins, hostile files and hostile MQTT clients (in process, real wasmtime).

Each test is a finding of the plugin red-team pass, reproduced: it failed on the code before the
fix. The plugins are WebAssembly text (tests/plugins/wat.py), so each does exactly one bad thing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import orjson
import pytest

from bridge.core.services import ServiceError
from bridge.homeassistant.extension import HomeAssistantExtension
from bridge.plugins import abi
from bridge.plugins.extension import PluginsExtension
from tests.harness import in_process
from tests.plugins import wat
from tests.plugins.helpers import Publisher
from tests.polling import wait_until


@pytest.fixture
def publisher(tmp_path):
    return Publisher(tmp_path)


@pytest.fixture
def started(tmp_path, publisher):
    made = []

    def start(plugins: Path, *, features=(), **cfg):
        sections = {"plugins": {"enabled": True, "dirs": [str(plugins)], "trusted_keys": [publisher.public],
                                "cache_dir": str(tmp_path / "cache"), "audit_log": str(tmp_path / "audit.jsonl"),
                                "watch_interval": 0.2, "restart_backoff": 0.05, **cfg}}
        if any(isinstance(f, HomeAssistantExtension) for f in features):
            sections["homeassistant"] = {"collect_seconds": 0.05}
        bridge, mqtt = in_process(sections, [*features, PluginsExtension()])
        made.append(bridge)
        return bridge, mqtt, bridge.extension("plugins")

    yield start
    for bridge in made:
        bridge.stop()


def statuses(mqtt, domain: str) -> list[dict]:
    return [orjson.loads(p.payload) if p.payload else None for p in mqtt.on(f"ruview/plugin/{domain}/status")]


def quiet(publisher, plugins, domain="quiet", **manifest):
    """A well-behaved plugin that takes every delivery and does nothing."""
    return wat.plugin(publisher, plugins, domain, wat.module(), **manifest)


# ---------------------------------------------------------------- 1. what others send is not the plugin's fault


def test_oversized_states_service_calls_and_binary_messages_are_dropped_never_the_plugins_crash(
        tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    quiet(publisher, plugins, subscribed_state_entities=["sensor.big"], subscriptions=["big/#"],
          registered_services=["quiet.poke"], permissions=["state:read:sensor.*", "mqtt:subscribe:big/#"])
    bridge, mqtt, host = started(plugins, max_crashes=2)
    plugin = host.plugins["quiet"]
    assert wait_until(lambda: plugin.state == "running", 5)
    for n in range(3):  # more than max_crashes of each: any one counted as a crash would disable it
        bridge.states.set("sensor.big", str(n), {"blob": "a" * 70_000})
        with pytest.raises(ServiceError, match="over 64 KiB"):
            bridge.services.call("quiet", "poke", {"blob": "b" * 70_000}).answer()
        mqtt.inject("big/binary", os.urandom(40_000) + b"\xff")  # not UTF-8: hex would be 80 KB
        mqtt.inject("big/text", "c" * 70_000)
    bridge.states.set("sensor.big", "small")  # its old state is still the large one: dropped too
    bridge.states.set("sensor.big", "smaller")
    mqtt.inject("big/binary", b"\xff\x00\x01")
    assert bridge.drain()
    health = plugin.health()
    assert health["crashes"] == 0 and plugin.state == "running" and not plugin.disabled
    assert health["oversize"] == {"state": 4, "service": 3, "mqtt": 6}
    assert health["events"] == 2, "the deliveries that fit still arrive"


# ---------------------------------------------------------------- 2. the compile cache is bound to its module


def test_a_cache_entry_copied_over_another_plugins_is_not_run_as_that_plugin(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    wat.plugin(publisher, plugins, "good", wat.module())
    wat.plugin(publisher, plugins, "evil", wat.module(overrides={
        "setup_entry": '(func (export "setup_entry") (param i32 i32) (result i32) unreachable)'}))
    bridge, _, host = started(plugins, max_crashes=1)
    assert wait_until(lambda: host.plugins["good"].state == "running" and host.plugins["evil"].disabled, 10)
    good_digest = host.plugins["good"].manifest.wasm_module_hash[7:]
    evil_digest = host.plugins["evil"].manifest.wasm_module_hash[7:]
    bridge.stop()
    cache = tmp_path / "cache"
    [good_entry] = cache.glob(f"{good_digest}-*.cwasm")
    [evil_entry] = cache.glob(f"{evil_digest}-*.cwasm")
    shutil.copyfile(evil_entry, good_entry)  # the evil module's native code under the good one's name

    bridge, _, host = started(plugins, max_crashes=1)
    good = host.plugins["good"]
    assert wait_until(lambda: good.state == "running", 5), good.status()
    assert good.counters.crashes == 0 and good.compiled.startswith("compiled"), good.compiled


# ---------------------------------------------------------------- 3. files that are not regular files


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_fifo_or_a_device_as_the_module_is_refused_and_the_others_keep_receiving(
        tmp_path, publisher, started, kind):
    plugins = tmp_path / "plugins"
    quiet(publisher, plugins, subscribed_state_entities=["sensor.t"], permissions=["state:read:sensor.*"])
    bridge, mqtt, host = started(plugins)
    assert wait_until(lambda: host.plugins["quiet"].state == "running", 5)
    bad = wat.plugin(publisher, tmp_path / "staging", "bad", wat.module())
    (bad / "plugin.wasm").unlink()
    if kind == "fifo":
        os.mkfifo(bad / "plugin.wasm")
    else:
        (bad / "plugin.wasm").symlink_to("/dev/zero")
    shutil.move(str(bad), plugins / "bad")
    assert wait_until(lambda: "bad" in host.rejected, 10), "the watcher looked at it and said why"
    assert "not a regular file" in host.rejected["bad"]["reason"]
    bridge.states.set("sensor.t", "1")
    assert wait_until(lambda: host.plugins["quiet"].counters.events == 1, 5), "delivery goes on"
    assert bridge.api.handle("plugin/list", {})["status"] == "ok"


# ---------------------------------------------------------------- 4. one owner per name


def test_a_plugin_cannot_take_a_reserved_domain_or_replace_anothers_service(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    wat.plugin(publisher, plugins, "light", wat.module(), registered_services=["light.turn_on"])
    bridge, mqtt, host = started(plugins, features=(HomeAssistantExtension(),))
    assert "light" not in host.plugins
    assert "reserved" in host.rejected["light"]["reason"]
    assert bridge.services.has("light", "turn_on") and bridge.services.has("homeassistant", "turn_on")
    owner = bridge.services._handlers[("light", "turn_on")].inbox
    assert owner is bridge.contexts["homeassistant"].inbox, "still Home Assistant's own handler"
    with pytest.raises(ValueError, match="already registered"):
        bridge.contexts["plugins"].register_service("light", "turn_on", lambda call: None)


# ---------------------------------------------------------------- 5. budgets without holes


def _calls_denied_state_set(times: int) -> str:
    """receive_event: hc_state_set on lock.front_door `times` times (no permission for it)."""
    return (wat.data(16, "lock.front_door") + wat.data(40, "on") + f"""
        (func (export "receive_event") (param i32 i32 i32 i32) (result i32) (local $i i32)
          (loop $again
            (drop (call $hc_state_set (i32.const 16) (i32.const 15) (i32.const 40) (i32.const 2)
                                      (i32.const 0) (i32.const 0)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const {times}))))
          (i32.const 0))""")


def test_denied_calls_pay_from_the_budget_and_their_audit_records_coalesce(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    body = _calls_denied_state_set(2000)
    wasm = wat.module(body, imports=("hc_state_set",), overrides={"receive_event": ""})
    wat.plugin(publisher, plugins, "noisy", wasm, imports=("hc_state_set",), subscribed_events=["poke"],
               limits={"host_calls_per_s": 50})
    bridge, mqtt, host = started(plugins)
    noisy = host.plugins["noisy"]
    assert wait_until(lambda: noisy.state == "running", 5)
    for _ in range(3):
        bridge.events.fire("poke")
    assert bridge.drain() and wait_until(lambda: noisy.counters.host_calls == 6000, 10)
    assert noisy.counters.rate_limited >= 6000 - 3 * 100, "the budget (twice the rate, per burst) held"
    assert noisy.counters.denied <= 3 * 100
    audits = [orjson.loads(p.payload) for p in mqtt.on("ruview/plugin/noisy/audit")]
    denials = [a for a in audits if a.get("action") == "deny"]
    assert 1 <= len(denials) <= 3, len(denials)


def test_subscriptions_and_retained_topics_are_capped_and_counted(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    topics = [f"own/t{n:03d}" for n in range(40)]
    segments = "".join(wat.data(1024 + 16 * n, t) for n, t in enumerate(topics))
    calls = "".join(f"""
            (drop (call $hc_mqtt_subscribe (i32.const {1024 + 16 * n}) (i32.const 8)))
            (drop (call $hc_mqtt_publish (i32.const {1024 + 16 * n}) (i32.const 8) (i32.const 8) (i32.const 1)
                                         (i32.const 0) (i32.const 1)))""" for n in range(len(topics)))
    body = segments + wat.data(8, "x") + f"""
        (func (export "setup_entry") (param i32 i32) (result i32) {calls} (i32.const 0))"""
    wasm = wat.module(body, imports=("hc_mqtt_subscribe", "hc_mqtt_publish"), overrides={"setup_entry": ""})
    wat.plugin(publisher, plugins, "greedy", wasm, imports=("hc_mqtt_subscribe", "hc_mqtt_publish"),
               permissions=["mqtt:subscribe:own/#", "mqtt:publish:own/#"],
               limits={"subscriptions": 5, "retained_topics": 7, "host_calls_per_s": 1000})
    bridge, mqtt, host = started(plugins)
    greedy = host.plugins["greedy"]
    assert wait_until(lambda: greedy.state == "running", 5)
    assert bridge.drain()
    health = greedy.health()
    assert health["subscriptions"] == 5 and health["subscriptions_refused"] == 35
    assert health["retained_topics"] == 7 and health["retained_refused"] == 33
    assert health["host_calls"] == 80, "subscribing is a host call like any other"
    assert len([p for p in mqtt.sent if p.topic.startswith("own/") and p.retain]) == 7
    assert len([t for t in topics if bridge.router.listens_to(t)]) == 5


def test_a_huge_manifest_is_refused_in_a_few_words(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    for domain, key_length in (("huge", 300_000), ("long", 60_000)):  # over the file cap; under it
        directory = quiet(publisher, plugins, domain=domain)
        raw = orjson.loads((directory / "manifest.json").read_bytes())
        raw["k" * key_length] = 1  # an unknown field, named in the error
        (directory / "manifest.json").write_bytes(orjson.dumps(raw))
    bridge, mqtt, host = started(plugins)
    [huge] = [s for s in statuses(mqtt, "huge") if s]
    [long] = [s for s in statuses(mqtt, "long") if s]
    assert huge["state"] == "rejected" and "larger than 64 KiB" in huge["reason"]
    assert long["state"] == "rejected" and "unknown field" in long["reason"]
    assert all(len(p.payload) < 2000 for p in mqtt.sent if p.topic.startswith("ruview/plugin/"))
    audit_lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    assert audit_lines and max(len(line) for line in audit_lines) < 4000


# ---------------------------------------------------------------- 6. the status follows the running instance


def test_a_second_directory_claiming_a_running_domain_never_touches_its_status(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    quiet(publisher, plugins)
    bridge, mqtt, host = started(plugins)
    assert wait_until(lambda: host.plugins["quiet"].state == "running", 5)
    impostor = plugins / "zz-impostor"
    shutil.copytree(plugins / "quiet", impostor)
    assert wait_until(lambda: any(k.startswith("quiet@") for k in host.rejected), 10)
    shutil.rmtree(impostor)
    assert wait_until(lambda: not any(k.startswith("quiet@") for k in host.rejected), 10)
    assert bridge.drain()
    assert [s["state"] for s in statuses(mqtt, "quiet") if s] == ["running"]
    assert None not in statuses(mqtt, "quiet"), "the running plugin's status was never cleared"


def test_a_call_that_outlives_its_reload_does_not_speak_for_the_new_instance(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    body = """(func (export "receive_event") (param i32 i32 i32 i32) (result i32) (loop $spin (br $spin))
              (i32.const 0))"""
    wat.plugin(publisher, plugins, "slow", wat.module(body, overrides={"receive_event": ""}),
               subscribed_events=["poke"], limits={"time_per_call_ms": 2600})
    bridge, mqtt, host = started(plugins, watch=False)
    old = host.plugins["slow"]
    assert wait_until(lambda: old.state == "running", 5)
    bridge.events.fire("poke")  # the old instance now spins until its deadline, 2.6 s from now
    assert wait_until(lambda: old.inbox.backlog == 0, 5)
    mark = len(mqtt.on("ruview/plugin/slow/status"))
    answer = bridge.api.handle("plugin/reload", {"domain": "slow"})
    assert answer["status"] == "ok", answer
    assert wait_until(lambda: old.counters.crashes == 1, 5), "the old call did end, at its deadline"
    assert bridge.drain()
    after = [s for s in statuses(mqtt, "slow")[mark:] if s]
    assert after and all(s["state"] == "running" for s in after), after
    assert host.plugins["slow"] is not old and host.plugins["slow"].state == "running"


# ---------------------------------------------------------------- 7. compiling holds up nobody


def test_a_large_module_compiles_while_the_other_plugins_keep_receiving(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    quiet(publisher, plugins, subscribed_state_entities=["sensor.t"], permissions=["state:read:sensor.*"])
    bridge, mqtt, host = started(plugins, watch=False)
    good = host.plugins["quiet"]
    assert wait_until(lambda: good.state == "running", 5)
    filler = "".join(f"(func $f{n} (param i32) (result i32) (i32.mul (i32.add (local.get 0) (i32.const {n})) "
                     f"(i32.const 3)))" for n in range(50_000))
    big = wat.plugin(publisher, tmp_path / "staging", "big", wat.module(filler))
    assert (big / "plugin.wasm").stat().st_size > 1_000_000
    started_at = time.monotonic()
    loading = host.load_later(big)
    delivered = []
    while not loading.done() and time.monotonic() - started_at < 60:
        bridge.states.set("sensor.t", str(len(delivered)))
        events = good.counters.events
        if wait_until(lambda: good.counters.events > events, 1):
            delivered.append(time.monotonic())
    assert loading.result(60).state in ("running", "starting")
    assert len(delivered) >= 2, "events reached the other plugin while the big one compiled"


# ---------------------------------------------------------------- 8. the smaller ones


def test_dropped_deliveries_are_counted_once(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    body = """(func (export "receive_event") (param i32 i32 i32 i32) (result i32) (local $i i32)
              (loop $spin (local.set $i (i32.add (local.get $i) (i32.const 1)))
                          (br_if $spin (i32.lt_u (local.get $i) (i32.const 3000000))))
              (i32.const 0))"""
    wat.plugin(publisher, plugins, "small_queue", wat.module(body, overrides={"receive_event": ""}),
               subscribed_events=["poke"], limits={"queue": 2})
    bridge, mqtt, host = started(plugins, watch=False)
    plugin = host.plugins["small_queue"]
    assert wait_until(lambda: plugin.state == "running", 5)
    for _ in range(30):
        bridge.events.fire("poke")
    assert bridge.drain(20)
    health = plugin.health()
    assert health["dropped"] > 0 and health["events"] + health["dropped"] == 30, health


def test_a_state_get_into_a_small_buffer_says_how_much_it_needs(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    body = wat.data(16, "sensor.t") + """
        (func (export "setup_entry") (param i32 i32) (result i32)
          (i32.store (i32.const 0) (call $hc_state_get (i32.const 16) (i32.const 8) (i32.const 200) (i32.const 8)))
          (i32.store (i32.const 4) (call $hc_state_get (i32.const 16) (i32.const 8) (i32.const 0) (i32.const 8)))
          (i32.const 0))"""
    wasm = wat.module(body, imports=("hc_state_get",), overrides={"setup_entry": ""})
    reader = wat.plugin(publisher, tmp_path / "staging", "reader", wasm, imports=("hc_state_get",),
                        permissions=["state:read:sensor.*"])
    bridge, mqtt, host = started(plugins, watch=False)
    bridge.states.set("sensor.t", "21.5", {"unit_of_measurement": "°C"})
    plugin = host.load_later(reader).result(10)
    assert wait_until(lambda: plugin.state == "running", 5)
    memory = plugin._instance
    need = len(orjson.dumps(bridge.extension("plugins")._get_state("sensor.t")))
    assert int.from_bytes(memory.read(0, 4), "little", signed=True) == abi.BUFFER_TOO_SMALL
    assert int.from_bytes(memory.read(200, 4), "little") == need, "the size it needs, in its buffer"
    assert int.from_bytes(memory.read(4, 4), "little", signed=True) == abi.BAD_POINTER, "0 is no buffer"


def test_a_setup_that_says_no_is_not_running(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    wat.plugin(publisher, plugins, "refuses", wat.module(overrides={
        "setup_entry": '(func (export "setup_entry") (param i32 i32) (result i32) (i32.const -5))'}))
    bridge, mqtt, host = started(plugins, watch=False)
    plugin = host.plugins["refuses"]
    assert wait_until(lambda: plugin.state != "starting", 5)
    assert plugin.state == "failed" and "setup_entry answered -5" in plugin.reason
    assert bridge.drain()
    assert statuses(mqtt, "refuses")[-1]["state"] == "failed"


def test_a_start_function_that_loops_says_it_ran_out_of_time(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    body = "(func $forever (loop $spin (br $spin))) (start $forever)"
    wat.plugin(publisher, plugins, "looper", wat.module(body),
               limits={"time_per_call_ms": 50, "fuel_per_call": 10_000_000_000})  # time runs out first
    bridge, mqtt, host = started(plugins, watch=False, max_crashes=1)
    plugin = host.plugins["looper"]
    assert wait_until(lambda: plugin.disabled, 10)
    assert "instantiate: took longer than limits.time_per_call_ms" in plugin.reason, plugin.reason


def test_a_wide_publish_grant_does_not_reach_the_bridges_own_topics(tmp_path, publisher, started):
    plugins = tmp_path / "plugins"
    quiet(publisher, plugins, domain="victim")
    request = '{"domain":"victim"}'
    body = wat.data(16, "ruview/bridge/request/plugin/unload") + wat.data(100, request) + wat.data(
        200, "homeassistant/light/x/config") + """
        (func (export "receive_event") (param i32 i32 i32 i32) (result i32)
          (i32.store (i32.const 0) (call $hc_mqtt_publish (i32.const 16) (i32.const 35) (i32.const 100)
                                                          (i32.const %d) (i32.const 0) (i32.const 0)))
          (i32.store (i32.const 4) (call $hc_mqtt_publish (i32.const 200) (i32.const 28) (i32.const 100)
                                                          (i32.const 2) (i32.const 0) (i32.const 1)))
          (i32.const 0))""" % len(request)
    wasm = wat.module(body, imports=("hc_mqtt_publish",), overrides={"receive_event": ""})
    wat.plugin(publisher, plugins, "attacker", wasm, imports=("hc_mqtt_publish",), permissions=["mqtt:publish:#"],
               subscribed_events=["poke"])
    bridge, mqtt, host = started(plugins, watch=False)
    attacker = host.plugins["attacker"]
    assert wait_until(lambda: attacker.state == "running" and host.plugins["victim"].state == "running", 5)
    bridge.events.fire("poke")
    assert bridge.drain() and wait_until(lambda: attacker.counters.events == 1, 5)
    memory = attacker._instance
    assert int.from_bytes(memory.read(0, 4), "little", signed=True) == abi.DENIED
    assert int.from_bytes(memory.read(4, 4), "little", signed=True) == abi.DENIED
    assert "victim" in host.plugins and not mqtt.on("ruview/bridge/request/plugin/unload")

"""WASM plugins: delivery into receive_event, end to end through a running bridge, start, memory.

    python -m bench.wasm_plugins [--events 50000] [--rounds 5] [--burst 20000] [--e2e-rounds 3]
    python -m bench.wasm_plugins --only e2e        # or: in_process, states

In process (`in_process`): what the plugin host does per event (bridge/plugins/runtime.py
Instance.call_with): copy the event type and a ~300-byte state_changed JSON into the plugin, call
receive_event. The plugin is plugins/threshold-alert, which parses the JSON to find the entity id.
Baselines in the same run: a bare no-op export call (dealloc) on the same fast path, and the same
delivery through wasmtime-py's public API. Target: >= 40,000 events/s.

End to end over MQTT (`e2e`): the bridge as its own process (`python -m bridge run -c <config>`,
plugins on, a signed counting plugin subscribed to one topic), a publisher process sending a burst
of `--burst` 417-byte JSON messages (`--qos`), and a bare paho subscriber process on the same topic
as the baseline, in the same run. The plugin counts what reaches its receive_event and, on an empty
message sent after the burst, publishes its count; the bench times that answer. Figures: events/s
into the plugin, messages/s into the bare subscriber, their ratio (target >= 0.8), and the events
lost from the burst with the plugin's default queue (limits.queue 1000; target 0), cross-checked
against `plugins.<domain>.events` / `dropped` in the bridge's retained `bridge/health`.

State changes (`states`): a bridge built in this process (`bridge.app.build_bridge`, the plugins
extension, a real Mosquitto), `bridge.states.set` in a loop on 100 entities the counting plugin
watches, timed until the plugin's `counters.events` has them all. Target: >= 40,000/s, none lost.
The states go to MQTT too: every one while the link keeps up, each entity's newest once it is
behind (bridge/core/state.py).

Each end-to-end and state round says the CPU it cost per message or change, by thread (from
/proc): where the time went when a figure is under its target.

Exits 1 when the work was not done: the in-process plugin burnt no fuel or wrote no state, an event
was lost, the bridge's health does not agree with what the plugin counted, or an end-to-end or
state-change figure is under its target.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import wasmtime

from bridge.plugins.runtime import Instance, Runtime, check_module
from bridge.plugins.trust import digest

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "threshold-alert"
EVENT = orjson.dumps({"entity_id": "sensor.living_room_temperature",
                      "old_state": {"state": "21.4", "attributes": {"unit_of_measurement": "°C"}},
                      "new_state": {"state": "21.5", "attributes": {"unit_of_measurement": "°C",
                                                                    "device_class": "temperature",
                                                                    "friendly_name": "Living room"},
                                    "last_changed": "2026-12-02T01:00:00.000000+00:00"}})
ENTRY = orjson.dumps({"entry_id": "bench", "domain": "threshold_alert", "title": "bench", "version": 1,
                      "options": {}, "data": {"sensor": "sensor.hall_temperature", "high": 26, "low": 24,
                                              "alert": "binary_sensor.hall_too_warm"}})


def best(fn, n: int, rounds: int) -> float:
    """Best-of-rounds operations per second."""
    fastest = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        fn(n)
        fastest = min(fastest, time.perf_counter() - began)
    return n / fastest


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def in_process(args: argparse.Namespace) -> bool:
    """The host's per-event path, a start from the cache, a first compile, memory per plugin."""
    module_bytes = (PLUGIN / "plugin.wasm").read_bytes()
    with tempfile.TemporaryDirectory() as cache:
        runtime = Runtime(cache)
        runtime.start_clock()
        module, how = runtime.compile(module_bytes, digest(module_bytes))
        check_module(module, ["hc_log", "hc_state_set", "hc_entity_register"])
        writes = []
        imports = {"hc_log": lambda *a: 0, "hc_state_set": lambda *a: writes.append(a) or 0,
                   "hc_entity_register": lambda *a: 0}

        def instance() -> Instance:
            return Instance(runtime, module, imports, memory_bytes=2 << 20, table_elements=1000,
                            fuel=2_000_000, time_ms=50)

        plugin = instance()
        plugin.call_with("setup_entry", ENTRY)
        etype = b"state_changed"

        def deliver(n: int) -> None:
            for _ in range(n):
                plugin.call_with("receive_event", etype, EVENT)

        def bare(n: int) -> None:  # re-armed like every call the host makes
            for _ in range(n):
                plugin.call("dealloc", 0, 0)

        # the same delivery through wasmtime-py's public API
        public = wasmtime.Linker(runtime.engine)
        i32 = wasmtime.ValType.i32()
        for name, n_args in (("hc_log", 3), ("hc_state_set", 6), ("hc_entity_register", 2)):
            public.define_func("homecore", name, wasmtime.FuncType([i32] * n_args, [i32]), lambda *a: 0)
        pstore = wasmtime.Store(runtime.engine)
        pstore.set_fuel(10**12)
        pstore.set_epoch_deadline(10**9)
        pex = public.instantiate(pstore, module).exports(pstore)
        palloc, pdealloc, precv, pmem = pex["alloc"], pex["dealloc"], pex["receive_event"], pex["memory"]

        def deliver_public(n: int) -> None:
            for _ in range(n):
                pstore.set_fuel(2_000_000)
                pstore.set_epoch_deadline(5)
                tp = palloc(pstore, len(etype))
                pmem.write(pstore, etype, tp)
                dp = palloc(pstore, len(EVENT))
                pmem.write(pstore, EVENT, dp)
                precv(pstore, tp, len(etype), dp, len(EVENT))
                pdealloc(pstore, dp, len(EVENT))
                pdealloc(pstore, tp, len(etype))

        bare_rate = best(bare, args.events, args.rounds)
        public_rate = best(deliver_public, max(1000, args.events // 5), args.rounds)
        event_rate = best(deliver, args.events, args.rounds)
        plugin.call_with("receive_event", etype, EVENT)
        fuel = plugin.fuel_used()
        hot = orjson.dumps({"entity_id": "sensor.hall_temperature", "old_state": None,
                            "new_state": {"state": "30.5", "attributes": {}}})
        before = len(writes)
        plugin.call_with("receive_event", etype, hot)
        did_work = fuel > 100 and len(writes) == before + 1

        # start from the compile cache: deserialize + instantiate + setup_entry
        starts = []
        for _ in range(20):
            began = time.perf_counter()
            cached, source = runtime.compile(module_bytes, digest(module_bytes))
            fresh = Instance(runtime, cached, imports, memory_bytes=2 << 20, table_elements=1000,
                             fuel=2_000_000, time_ms=50)
            fresh.call_with("setup_entry", ENTRY)
            starts.append((time.perf_counter() - began) * 1000)
            if source != "cache":
                did_work = False
        starts.sort()

        # first compile of a ~100 KB module
        body = "".join(
            f'(func (export "f{i}") (param $a i32) (param $b i32) (result i32) (local $i i32) (block $d (loop $l '
            f'(br_if $d (i32.ge_u (local.get $i) (local.get $b))) (local.set $a (i32.add (i32.mul (local.get $a) '
            f'(i32.const {i + 3})) (i32.xor (local.get $i) (i32.const {i * 7})))) (local.set $i (i32.add '
            f'(local.get $i) (i32.const 1))) (br $l))) (local.get $a))' for i in range(1400))
        big = wasmtime.wat2wasm(f"(module (memory (export \"memory\") 1) {body})")
        began = time.perf_counter()
        runtime.compile(big, digest(big))
        first_compile = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        _, source = runtime.compile(big, digest(big))
        big_cached = (time.perf_counter() - began) * 1000

        # memory per loaded plugin
        rss_before = rss_kib()
        loaded = [instance() for _ in range(args.instances)]
        for p in loaded:
            p.call_with("setup_entry", ENTRY)
        per_plugin = (rss_kib() - rss_before) / args.instances
        runtime.stop_clock()

    print(f"WASM plugins (wasmtime {runtime.version}, plugin {PLUGIN.name} {len(module_bytes):,} bytes, "
          f"best of {args.rounds} rounds):")
    print(f"  bare no-op export call (fast path)       {bare_rate:12,.0f} calls/s")
    print(f"  event into receive_event, public API     {public_rate:12,.0f} events/s")
    print(f"  event into receive_event, bridge's path  {event_rate:12,.0f} events/s   "
          f"({len(EVENT)}-byte JSON; {fuel:,} fuel each)")
    print(f"  ratio event/bare call: {event_rate / bare_rate:.2f}   bridge/public API: {event_rate / public_rate:.2f}"
          f"   (target: >= 40,000 events/s)")
    print(f"  start from the compile cache (deserialize + instantiate + setup_entry): "
          f"median {starts[len(starts) // 2]:.2f} ms, worst {starts[-1]:.2f} ms   (target: <= 5 ms)")
    print(f"  first compile of a {len(big) / 1024:.0f} KiB module: {first_compile:.0f} ms; from the cache: "
          f"{big_cached:.1f} ms")
    print(f"  memory per loaded plugin: {per_plugin:,.0f} KiB RSS ({args.instances} loaded)")
    if not did_work:
        print("  FAIL: the plugin did not do the work (no fuel burnt, no state written, or no cache hit)")
    return did_work


# ------------------------------------------------------------------ end to end: a running bridge

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "bench_counter"
DATA_TOPIC, COUNT_TOPIC = "bench/e2e/data", "bench/e2e/count"
MARKER_BELOW = 100  # bytes of mqtt_message JSON: an empty message's is ~55, a burst message's ~450
MESSAGE_BYTES = 417
ENTITIES = 100  # sensor.bench_0 .. sensor.bench_99 for the state figure


def burst_payloads(n: int) -> list[bytes]:
    """n distinct JSON messages of MESSAGE_BYTES each (a node's state, padded), numbered."""
    def one(i: int, pad: str) -> bytes:
        return orjson.dumps({"node_id": 7, "name": "lounge", "seq": f"{i:08d}", "presence": True,
                             "motion_level": 0.42, "breathing_rate": 14.2, "heart_rate": 61.0, "rssi": -52,
                             "room": "Living room", "firmware": "1.4.2", "uptime_s": 86400, "pad": pad})
    pad = "x" * (MESSAGE_BYTES - len(one(0, "")))
    return [one(i, pad) for i in range(n)]


def counting_plugin(publisher, into: Path) -> Path:
    """A signed plugin (WebAssembly text) that counts what reaches receive_event: every MQTT message
    on DATA_TOPIC and every state change of sensor.bench_*. An empty message (its mqtt_message JSON
    is under MARKER_BELOW bytes) is not counted: it makes the plugin publish its count (4 bytes,
    little-endian) on COUNT_TOPIC."""
    from tests.plugins import wat
    body = wat.data(16, COUNT_TOPIC) + f"""
      (global $n (mut i32) (i32.const 0))
      (func (export "receive_event") (param i32 i32 i32 i32) (result i32)
        (if (i32.lt_u (local.get 3) (i32.const {MARKER_BELOW}))
          (then (i32.store (i32.const 0) (global.get $n))
                (drop (call $hc_mqtt_publish (i32.const 16) (i32.const {len(COUNT_TOPIC)}) (i32.const 0)
                                             (i32.const 4) (i32.const 0) (i32.const 0)))
                (return (i32.const 0))))
        (global.set $n (i32.add (global.get $n) (i32.const 1)))
        (i32.const 0))"""
    wasm = wat.module(body, imports=("hc_mqtt_publish",), overrides={"receive_event": ""})
    return wat.plugin(publisher, into, DOMAIN, wasm, imports=("hc_mqtt_publish",),
                      permissions=[f"mqtt:subscribe:{DATA_TOPIC}", f"mqtt:publish:{COUNT_TOPIC}",
                                   "state:read:sensor.bench_*"],
                      subscriptions=[DATA_TOPIC], subscribed_state_entities=["sensor.bench_*"])


def _role(role: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.wasm_plugins", "--role", role, *map(str, args)],
                            cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _line(proc: subprocess.Popen, timeout: float) -> str:
    """The next line the process prints (it runs its own timeout; this one is the backstop)."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0].strip() if result else ""


def role_subscriber(port: int, topic: str, timeout: float) -> int:
    """The baseline: a bare paho subscriber (QoS 1, as the bridge subscribes) that counts messages and
    notes when the last one came. Prints `ready` once subscribed, then its figures on the empty message."""
    import paho.mqtt.client as paho
    got = {"count": 0, "first": 0.0, "last": 0.0, "cpu": 0.0}

    def on_message(client, _userdata, msg) -> None:
        if msg.payload:
            now = time.monotonic()
            if not got["count"]:
                got["first"] = now
            got["count"] += 1
            got["last"] = now
        elif got["count"]:
            client.disconnect()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    def on_subscribe(*_) -> None:
        got["cpu"] = time.process_time()
        print("ready", flush=True)

    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    threading.Timer(timeout, client.disconnect).start()
    client.loop_forever()
    got["cpu"] = time.process_time() - got["cpu"]
    print(json.dumps(got), flush=True)
    os._exit(0)


def role_publisher(port: int, topic: str, n: int, qos: int) -> int:
    """Sends n messages as fast as paho can, then one empty message; prints when it began and ended."""
    import paho.mqtt.client as paho
    payloads = burst_payloads(n)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(10):
        return 1
    began = time.monotonic()
    for payload in payloads:
        client.publish(topic, payload, qos)
    client.publish(topic, b"", qos).wait_for_publish(120)
    print(json.dumps({"start": began, "end": time.monotonic()}), flush=True)
    client.disconnect()
    client.loop_stop()
    return 0


class Observer:
    """The bench's own client: the plugin's counts (with when they came), its status, bridge/health."""

    def __init__(self, port: int, base: str) -> None:
        import paho.mqtt.client as paho
        self.counts: list[tuple[float, int]] = []
        self.status: dict = {}
        self.health: dict = {}
        self.health_at = 0.0
        self._base = base
        self._cond = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe([(COUNT_TOPIC, 1), (f"{base}/plugin/{DOMAIN}/status", 1),
                                                            (f"{base}/bridge/health", 0)])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the observer could not subscribe")

    def _on_message(self, _client, _userdata, msg) -> None:
        now = time.monotonic()
        with self._cond:
            if msg.topic == COUNT_TOPIC:
                self.counts.append((now, int.from_bytes(msg.payload[:4], "little")))
            elif msg.topic.endswith("/status") and msg.payload:
                self.status = orjson.loads(msg.payload)
            elif msg.topic.endswith("/bridge/health") and msg.payload:
                self.health, self.health_at = orjson.loads(msg.payload), now
            self._cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def mark(self) -> None:
        """Ask the plugin for its count."""
        self.client.publish(DATA_TOPIC, b"", 1)

    def count_after(self, since: float, timeout: float) -> tuple[float, int] | None:
        """The first count the plugin said after `since`; asks again every 0.5 s after the first
        `timeout` (the burst's own request may have been dropped with it)."""
        def said() -> bool:
            return any(at > since for at, _ in self.counts)
        if not self.wait(said, timeout):
            for _ in range(20):
                self.mark()
                if self.wait(said, 0.5):
                    break
            else:
                return None
        return next((at, n) for at, n in self.counts if at > since)

    def plugin_health(self, after: float, timeout: float = 5.0) -> dict:
        """plugins.<DOMAIN> from a bridge/health published after `after`."""
        self.wait(lambda: self.health_at > after, timeout)
        return ((self.health.get("plugins") or {}).get(DOMAIN)) or {}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has had (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process, by the thread's name (the bridge names its threads)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = "plugin" if name.startswith("plugins-plugin") else name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def e2e_mqtt(args: argparse.Namespace, publisher, plugins: Path, tmp: Path) -> bool:
    """Bursts from a publisher process into a bridge process's plugin, against a bare paho subscriber."""
    from bench.harness import HostSteal, bridge_process, stop
    from tests.brokers import Mosquitto
    broker = Mosquitto().start()
    base = "ruview"
    config = {"mqtt": {"url": broker.url, "base_topic": base},
              "bridge": {"health_interval": 1, "state_dir": str(tmp / "state")},
              "nodes": {"enabled": False}, "homeassistant": {"enabled": False},
              "plugins": {"enabled": True, "dirs": [str(plugins)], "trusted_keys": [publisher.public],
                          "cache_dir": str(tmp / "cache"), "audit_log": str(tmp / "audit.jsonl"),
                          "watch": False}}
    workdir = tmp / "bridge"
    workdir.mkdir()
    bridge = bridge_process(config, str(workdir))
    observer = Observer(broker.port, base)
    steal = HostSteal()
    rounds: list[dict] = []
    ok = True
    try:
        if not observer.wait(lambda: observer.status.get("state") == "running", 30):
            print(f"  FAIL: the plugin did not start in the bridge process: {observer.status}")
            return False
        for _ in range(100):  # the bridge's subscription is live once the plugin answers
            observer.mark()
            if observer.wait(lambda: bool(observer.counts), 0.2):
                break
        else:
            print("  FAIL: the plugin never answered on", COUNT_TOPIC)
            return False
        said = observer.counts[-1][1]
        for _ in range(args.e2e_rounds):
            sub = _role("subscriber", broker.port, DATA_TOPIC, 120)
            if _line(sub, 10) != "ready":
                print("  FAIL: the bare subscriber did not subscribe")
                return False
            cpu, threads = cpu_seconds(bridge.pid), thread_cpu(bridge.pid)
            pub = _role("publisher", broker.port, DATA_TOPIC, args.burst, args.qos)
            sent = json.loads(_line(pub, 180) or "{}")
            bare = json.loads(_line(sub, 180) or "{}")
            stop(pub, sub)
            if not sent or not bare:
                print(f"  FAIL: the publisher or the bare subscriber did not finish: {sent} {bare}")
                return False
            answer = observer.count_after(sent["start"], 30)
            if answer is None:
                print("  FAIL: the plugin did not say its count after the burst")
                return False
            at, count = answer
            cpu = cpu_seconds(bridge.pid) - cpu
            threads = {k: v - threads.get(k, 0.0) for k, v in thread_cpu(bridge.pid).items()}
            got, said = count - said, count
            rounds.append({"bare": bare["count"] / (bare["last"] - sent["start"]),
                           "plugin": got / (at - sent["start"]), "got": got, "bare_got": bare["count"],
                           "published": args.burst / (sent["end"] - sent["start"]),
                           "cpu": cpu / args.burst * 1e6, "bare_cpu": bare["cpu"] / args.burst * 1e6,
                           "threads": {k: v / args.burst * 1e6 for k, v in threads.items() if v >= 0.01}})
            r = rounds[-1]
            print(f"  round {len(rounds)}: publisher {r['published']:9,.0f} msg/s   bare paho {r['bare']:9,.0f} msg/s"
                  f"   plugin {r['plugin']:9,.0f} events/s   ratio {r['plugin'] / r['bare']:.2f}   "
                  f"lost {args.burst - got:,} (bare {args.burst - r['bare_got']:,})   CPU per message: bare "
                  f"{r['bare_cpu']:.0f} µs, bridge {r['cpu']:.0f} µs ("
                  + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["threads"].items(), key=lambda kv: -kv[1])) + ")",
                  flush=True)
        health = observer.plugin_health(time.monotonic())
        answers = len(observer.counts)
    finally:
        observer.close()
        stop(bridge)
        broker.cleanup()
    ratios = sorted(r["plugin"] / r["bare"] for r in rounds)
    lost = sum(args.burst - r["got"] for r in rounds)
    median = ratios[len(ratios) // 2]
    print(f"  median ratio plugin/bare {median:.2f} (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= 0.8); "
          f"lost with the default queue: {lost:,} of {args.burst * len(rounds):,} (target 0)")
    print(f"  bridge/health plugins.{DOMAIN}: events {health.get('events')}, dropped {health.get('dropped')}; "
          f"{steal.line()}")
    if lost or any(r["bare_got"] != args.burst for r in rounds):
        print("  FAIL: events were lost")
        ok = False
    if health.get("events") != said + answers or health.get("dropped"):  # each answer was an event too
        print("  FAIL: bridge/health does not agree with the plugin's own count")
        ok = False
    if median < 0.8:
        print("  FAIL: the plugin receives at under 0.8 of a bare paho subscriber's rate")
        ok = False
    return ok


def state_changes(args: argparse.Namespace, publisher, plugins: Path, tmp: Path) -> bool:
    """`bridge.states.set` in a loop, in process, into the counting plugin (default queue)."""
    from bridge.app import build_bridge
    from bridge.catalog import validate_config
    from bridge.cli import SWITCH_INTERVAL
    from bridge.plugins.extension import PluginsExtension
    from tests.brokers import Mosquitto
    sys.setswitchinterval(SWITCH_INTERVAL)  # as `ruview-bridge run` sets it
    broker = Mosquitto().start()
    config = validate_config({
        "mqtt": {"url": broker.url, "outbox_size": args.burst * 2},
        "bridge": {"health_interval": 3600, "state_dir": str(tmp / "state-inproc")},
        "plugins": {"enabled": True, "dirs": [str(plugins)], "trusted_keys": [publisher.public],
                    "cache_dir": str(tmp / "cache"), "audit_log": str(tmp / "audit-inproc.jsonl"), "watch": False}},
        env={})
    bridge = build_bridge(config, extensions=[PluginsExtension()])
    bridge.start()
    rates, lost = [], 0
    try:
        if not bridge.mqtt.wait_connected(10):
            print("  FAIL: the bridge did not connect")
            return False
        plugin = bridge.extension("plugins").plugins[DOMAIN]
        deadline = time.monotonic() + 10
        while plugin.state != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        attributes = {"unit_of_measurement": "W", "device_class": "power", "state_class": "measurement"}
        n = args.burst
        for r in range(args.e2e_rounds):
            gc.collect()  # what setting up (or the round before) left is not this round's cost
            before = plugin.counters.events
            threads = thread_cpu(os.getpid())
            began = time.monotonic()
            for i in range(n):
                bridge.states.set(f"sensor.bench_{i % ENTITIES}", r * n + i, attributes)
            # behind the last change in the plugin's queue: set once the worker has taken them all
            # (waiting on it costs the worker nothing, where polling took the GIL every 0.5 ms)
            reached = threading.Event()
            if plugin.inbox.put(reached.set):
                reached.wait(30)
            last, last_at = -1, time.monotonic()
            while plugin.counters.events - before < n and time.monotonic() - last_at < 2:
                if plugin.counters.events != last:
                    last, last_at = plugin.counters.events, time.monotonic()
                time.sleep(0.0005)
            done = time.monotonic()
            got = plugin.counters.events - before
            lost += n - got
            rates.append(got / (done - began))
            used = {k: (v - threads.get(k, 0.0)) / n * 1e6 for k, v in thread_cpu(os.getpid()).items()}
            print(f"  round {r + 1}: {rates[-1]:9,.0f} state changes/s into the plugin   lost {n - got:,}   CPU per "
                  "change: " + ", ".join(f"{k} {v:.1f} µs" for k, v in sorted(used.items(), key=lambda kv: -kv[1])
                                         if v >= 0.5), flush=True)
        dropped = bridge.extension("plugins").health_of(plugin)["dropped"]
        per_plugin = memory_per_plugin(bridge, publisher, tmp / "plugins-more", max(1, args.instances // 2))
    finally:
        bridge.stop()
        broker.cleanup()
    rates.sort()
    median = rates[len(rates) // 2]
    print(f"  median {median:,.0f}/s (rounds {rates[0]:,.0f}-{rates[-1]:,.0f}; target >= 40,000/s); "
          f"lost {lost:,} of {args.burst * len(rates):,} (dropped {dropped}; target 0)")
    print(f"  memory per plugin loaded in a running bridge, its worker thread and queue included: "
          f"{per_plugin:,.0f} KiB RSS ({max(1, args.instances // 2)} loaded)")
    ok = True
    if lost:
        print("  FAIL: state changes were lost")
        ok = False
    if median < 40_000:
        print("  FAIL: under 40,000 state changes/s")
        ok = False
    return ok


def memory_per_plugin(bridge, publisher, into: Path, n: int) -> float:
    """KiB of RSS each of n more plugins adds to a running bridge: its instance, its compiled
    module, its worker thread and queue (loaded as plugin/load does, through the loader)."""
    from tests.plugins import wat
    extension = bridge.extension("plugins")
    directories = [wat.plugin(publisher, into, f"bench_more_{k}", wat.module()) for k in range(n)]
    before = rss_kib()
    loading = [extension.load_later(d) for d in directories]
    loaded = [f.result(60) for f in loading]
    deadline = time.monotonic() + 30
    while any(p.state != "running" for p in loaded) and time.monotonic() < deadline:
        time.sleep(0.01)
    return (rss_kib() - before) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instances", type=int, default=50, help="plugins loaded for the memory figure")
    parser.add_argument("--burst", type=int, default=20_000, help="messages (state changes) per end-to-end round")
    parser.add_argument("--e2e-rounds", type=int, default=3)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1, help="the publisher's QoS")
    parser.add_argument("--only", choices=("in_process", "e2e", "states"))
    parser.add_argument("--role", choices=("subscriber", "publisher"), help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role == "subscriber":
        return role_subscriber(int(rest[0]), rest[1], float(rest[2]))
    if args.role == "publisher":
        return role_publisher(int(rest[0]), rest[1], int(rest[2]), int(rest[3]))
    ok = True
    if args.only in (None, "in_process"):
        ok = in_process(args) and ok
    if args.only in (None, "e2e", "states"):
        from tests.plugins.helpers import Publisher
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            publisher = Publisher(tmp)
            plugins = tmp / "plugins"
            counting_plugin(publisher, plugins)
            if args.only in (None, "e2e"):
                print(f"End to end over MQTT: bridge process (python -m bridge run), Mosquitto, a publisher process "
                      f"sending {args.burst:,} {MESSAGE_BYTES}-byte JSON messages at QoS {args.qos} per round, a bare "
                      f"paho subscriber process on the same topic:", flush=True)
                ok = e2e_mqtt(args, publisher, plugins, tmp) and ok
            if args.only in (None, "states"):
                print(f"State changes into a plugin, in process (build_bridge + plugins, Mosquitto), "
                      f"{args.burst:,} bridge.states.set per round:", flush=True)
                ok = state_changes(args, publisher, plugins, tmp) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

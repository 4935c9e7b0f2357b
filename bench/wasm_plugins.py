"""WASM plugins: event delivery into receive_event, start from the compile cache, first compile, memory.

    python -m bench.wasm_plugins [--events 50000] [--rounds 5]

Event delivery is what the plugin host does per event (bridge/plugins/runtime.py Instance.call_with):
alloc and copy the event type and a ~250-byte state_changed JSON into the plugin, call
receive_event, dealloc both. The plugin is plugins/threshold-alert, which parses the JSON to find
the entity id. Baselines in the same run: a bare no-op export call (dealloc) on the same fast
path, and the same delivery through wasmtime-py's public API. Target: >= 40,000 events/s.

Exits 1 if the plugin did not do the work: every event must burn guest fuel, and a last event for
the configured sensor must make the one hc_state_set call it should.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instances", type=int, default=50, help="plugins loaded for the memory figure")
    args = parser.parse_args()
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
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())

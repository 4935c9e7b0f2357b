"""The same plugin in C, Rust and AssemblyScript: what each PDK costs per event and per start.

    python -m bench.plugin_languages [--events 20000] [--rounds 5]

For plugins/threshold-alert, threshold-alert-rust and threshold-alert-as: the module's size, events/s
into receive_event on the host's own path (bridge/plugins/runtime.py Instance.call_with: a ~300-byte
state_changed JSON the plugin parses to find the entity id, as bench/wasm_plugins.py's in-process
figure for C), the fuel one such event burns, and a start from the compile cache (deserialize,
instantiate, _initialize when exported, setup_entry; median of 20). Exits 1 unless every plugin
turned its alert on for an event above `high` (the work was done).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bridge.plugins.runtime import Instance, Runtime, check_module
from bridge.plugins.trust import digest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PORTS = {"C": "threshold-alert", "Rust": "threshold-alert-rust", "AssemblyScript": "threshold-alert-as"}
EVENT = orjson.dumps({"entity_id": "sensor.living_room_temperature",
                      "old_state": {"state": "21.4", "attributes": {"unit_of_measurement": "°C"}},
                      "new_state": {"state": "21.5", "attributes": {"unit_of_measurement": "°C",
                                                                    "device_class": "temperature",
                                                                    "friendly_name": "Living room"},
                                    "last_changed": "2026-12-02T01:00:00.000000+00:00"}})
HOT = orjson.dumps({"entity_id": "sensor.hall_temperature", "old_state": None,
                    "new_state": {"state": "30.5", "attributes": {}}})
ENTRY = orjson.dumps({"entry_id": "bench", "domain": "threshold_alert", "title": "bench", "version": 1,
                      "options": {}, "data": {"sensor": "sensor.hall_temperature", "high": 26, "low": 24,
                                              "alert": "binary_sensor.hall_too_warm"}})


def best(fn, n: int, rounds: int) -> float:
    fastest = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        fn(n)
        fastest = min(fastest, time.perf_counter() - began)
    return n / fastest


def measure(language: str, directory: Path, args: argparse.Namespace, runtime: Runtime) -> bool:
    module_bytes = (directory / "plugin.wasm").read_bytes()
    module, _ = runtime.compile(module_bytes, digest(module_bytes))
    check_module(module, ["hc_log", "hc_state_set", "hc_entity_register"])
    writes: list[tuple] = []
    imports = {"hc_log": lambda *a: 0, "hc_state_set": lambda *a: writes.append(a) or 0,
               "hc_entity_register": lambda *a: 0}

    def instance() -> Instance:
        return Instance(runtime, module, imports, memory_bytes=2 << 20, table_elements=1000, fuel=2_000_000,
                        time_ms=50)

    plugin = instance()
    if plugin.call_with("setup_entry", ENTRY) != 0:
        print(f"{language}: setup_entry failed")
        return False
    etype = b"state_changed"

    def deliver(n: int) -> None:
        for _ in range(n):
            plugin.call_with("receive_event", etype, EVENT)

    rate = best(deliver, args.events, args.rounds)
    plugin.call_with("receive_event", etype, EVENT)
    fuel = plugin.fuel_used()
    plugin.call_with("receive_event", etype, HOT)
    did_work = len(writes) == 1
    starts = []
    for _ in range(20):
        began = time.perf_counter()
        cached, _ = runtime.compile(module_bytes, digest(module_bytes))
        instance_of = Instance(runtime, cached, imports, memory_bytes=2 << 20, table_elements=1000,
                               fuel=2_000_000, time_ms=50)
        instance_of.call_with("setup_entry", ENTRY)
        starts.append((time.perf_counter() - began) * 1000)
    print(f"{language:15s} {len(module_bytes):7,d} B  {rate:9,.0f} events/s  {fuel:6,d} fuel/event  "
          f"start {statistics.median(starts):.2f} ms  {'ok' if did_work else 'THE ALERT DID NOT TURN ON'}")
    return did_work


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as cache:
        runtime = Runtime(cache)
        runtime.start_clock()
        print(f"threshold-alert, {len(EVENT)}-byte state_changed into receive_event, best of {args.rounds} x "
              f"{args.events:,}")
        try:
            for language, name in PORTS.items():
                ok = measure(language, PLUGINS / name, args, runtime) and ok
        finally:
            runtime.stop_clock()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""HomeKit sessions in a private network namespace, as Apple Home meets the bridge: a bridge fed
real UDP frames on a real Mosquitto, and aiohomekit (the controller library Home Assistant pairs
with) discovering it over mDNS and pairing with the setup code.

A scenario is an `async def scenario(s: Session) -> dict` in a module; `run_scenario` (the test
side) runs one as

    unshare -n python -m tests.homekit.session MODULE SCENARIO STATE_DIR

and returns the JSON object it printed, which the test then judges. Each scenario gets a
namespace of its own (loopback with multicast, so mDNS works and nothing leaves the host), so
they run in parallel and one that fails cannot disturb another.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parents[2]
HAP = "-0000-1000-8000-0026BB765291"


def hap(short: int) -> str:
    return f"{short:08X}{HAP}"


# characteristics
NAME, MOTION, OCCUPANCY, ACTIVE, FAULT, SWITCH_EVENT, FIRMWARE, LABEL_INDEX = (
    hap(t) for t in (0x23, 0x22, 0x71, 0x75, 0x77, 0x73, 0x52, 0xCB))
PRIVACY = "8B0E1C00-0001-4B0E-9C00-1234567890AB"
# services
INFO, PROTOCOL, MOTION_SENSOR, OCCUPANCY_SENSOR, SWITCH, LABEL = (hap(t) for t in (0x3E, 0xA2, 0x85, 0x86, 0x89, 0xCC))
COMMUNICATION_FAILURE = -70402  # what a read of an unavailable accessory answers: "No Response"


# ------------------------------------------------------------ the test side

def can_unshare() -> bool:
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def run_scenario(module: str, scenario: str, state_dir: Path, timeout: float = 150) -> dict[str, Any]:
    """Run one scenario in a private network namespace; its result, or a failure with its output."""
    import pytest
    if not can_unshare():
        pytest.skip("needs `unshare -n` (root or user namespaces) for a private network with multicast")
    run = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.homekit.session", module, scenario,
                          str(state_dir)], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-4000:] + run.stderr[-6000:]
    result = json.loads(lines[-1][7:])
    result["_log"] = run.stderr
    return result


# ------------------------------------------------------------ the namespace side

def network() -> None:
    for command in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "lo", "multicast", "on"],
                    ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"]):
        subprocess.run(command, check=True)


def accessories(listed: list[dict]) -> dict[str, dict]:
    """Accessory name -> {"aid", "services": [{"type", "name", "chars": {type: {"iid", "value"}}}]}."""
    out = {}
    for acc in listed:
        services, name = [], None
        for service in acc["services"]:
            chars = {ch["type"]: {"iid": ch["iid"], "value": ch.get("value")} for ch in service["characteristics"]}
            services.append({"type": service["type"], "iid": service["iid"], "name": chars.get(NAME, {}).get("value"),
                             "chars": chars, "linked": service.get("linked", [])})
            if service["type"] == INFO:
                name = chars[NAME]["value"]
        out[name] = {"aid": acc["aid"], "services": services}
    return out


def ref(room: dict, char: str, service: str | None = None, name: str | None = None) -> tuple[int, int]:
    """(aid, iid) of `char` in `room`, in the service of type `service` (and Name `name`)."""
    for s in room["services"]:
        if (service is None or s["type"] == service) and (name is None or s["name"] == name) and char in s["chars"]:
            return room["aid"], s["chars"][char]["iid"]
    raise KeyError(f"no {char} in {service or 'any service'} {name or ''} of accessory {room['aid']}")


class Session:
    """One bridge (restartable) and one controller, in this namespace."""

    def __init__(self, state_dir: str, broker) -> None:
        from tests.brokers import free_port, free_port_udp
        self.state_dir = state_dir
        self.broker = broker
        self.udp = free_port_udp()
        self.hap_port = free_port()
        self.bridge = None
        self.config: dict[str, Any] = {}
        self.events: list[tuple[float, dict]] = []
        self.zc = None
        self.controller = None
        self.found: list = []
        self._seq = 0

    # the bridge

    def start_bridge(self, devices: dict[int, dict] | None = None, homekit: dict | None = None,
                     nodes: dict | None = None) -> Any:
        from bridge.app import build_bridge
        from bridge.catalog import validate_config
        from bridge.homekit.extension import HomeKitExtension
        from bridge.nodes.extension import NodesExtension
        if devices is not None or homekit is not None or nodes is not None or not self.config:
            self.config = {
                "mqtt": {"url": self.broker.url}, "bridge": {"state_dir": self.state_dir},
                "nodes": {"publish_interval": 0.2, "offline_after": 3,
                          "udp": {"bind": "127.0.0.1", "port": self.udp}, "devices": devices or {}, **(nodes or {})},
                "homekit": {"enabled": True, "port": self.hap_port, "address": "127.0.0.1",
                            "interfaces": ["127.0.0.1"], **(homekit or {})}}
        config = validate_config(self.config, "scenario", env={})
        self.bridge = build_bridge(config, extensions=[NodesExtension(), HomeKitExtension()])
        self.bridge.start()
        state = self.bridge.extension_state["homekit"]
        assert state["state"] == "running", state
        return self.bridge

    def info(self) -> dict:
        return self.bridge.info()["homekit"]

    def health(self) -> dict:
        return self.bridge.health()["homekit"]

    def send(self, *packets: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for packet in packets:
                s.sendto(packet, ("127.0.0.1", self.udp))

    def heartbeat(self, *node_ids: int) -> None:
        """One quiet frame from each node: it is heard (online), nobody is there."""
        from bridge.nodes import codec as c
        self._seq += 1
        self.send(*(c.encode_feature_state(c.FeatureState(n, 0, self._seq, self._seq * 200_000, 0.0, 0.0, 0.0, 0.0,
                                                          0.0, 0.0, 0.0, 0.0, 1.0, 0x01, -55)) for n in node_ids))

    def fall(self, node_id: int) -> None:
        """A mesh anomaly alert of reason 4: the node's `fall_detected` event."""
        from bridge.nodes import codec as c
        self._seq += 1
        self.send(c.encode_mesh_anomaly(c.MeshAnomaly(node_id, 1, self._seq * 200_000, 2, 4, 0.9, 0.4)))

    def request(self, verb: str, body: dict, timeout: float = 5.0) -> dict:
        """A request verb over MQTT, as an operator sends it; the bridge's answer."""
        from tests.mqtt_probe import Probe
        probe = Probe(self.broker.port).subscribe(f"ruview/bridge/response/{verb}")
        try:
            tx = int(time.monotonic() * 1000)
            probe.publish(f"ruview/bridge/request/{verb}", {**body, "transaction": tx})
            return probe.wait_topic(f"ruview/bridge/response/{verb}", timeout,
                                    match=lambda m: m.json().get("transaction") == tx).json()
        finally:
            probe.close()

    # the controller

    async def discover(self) -> list:
        from aiohomekit import Controller
        from aiohomekit.characteristic_cache import CharacteristicCacheMemory
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf
        if self.controller is None:
            self.zc = AsyncZeroconf(interfaces=["127.0.0.1"])
            AsyncServiceBrowser(self.zc.zeroconf, ["_hap._tcp.local.", "_hap._udp.local."],
                                handlers=[lambda **kw: None])
            self.controller = Controller(async_zeroconf_instance=self.zc, char_cache=CharacteristicCacheMemory())
            await self.controller.async_start()
        for _ in range(100):
            self.found = [d async for d in self.controller.async_discover()]
            if self.found:
                return self.found
            await asyncio.sleep(0.1)
        raise AssertionError("the bridge was not discovered over mDNS within 10 s")

    def setup_code(self) -> str:
        from bridge.homekit.pairing import PairingFiles
        return PairingFiles(Path(self.state_dir)).setup().pincode

    async def pair(self, alias: str = "home"):
        found = self.found or await self.discover()
        pairing = await (await found[0].async_start_pairing(alias))(self.setup_code())
        pairing.dispatcher_connect(lambda ev: self.events.append((time.monotonic(), ev)))
        return pairing

    async def close(self) -> None:
        if self.controller is not None:
            for pairing in list(self.controller.pairings.values()):
                try:  # a removed pairing's reconnect attempt ends in the error it met
                    await pairing.close()
                except Exception:
                    pass
            try:
                await self.controller.async_stop()
            except Exception:
                pass
        if self.zc is not None:
            await self.zc.async_close()
        if self.bridge is not None:
            self.bridge.stop()

    def events_of(self, key: tuple[int, int], since: float = 0.0) -> list[tuple[float, Any]]:
        return [(t, ev[key].get("value")) for t, ev in self.events if t >= since and key in ev]


async def until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> bool:
    """tests/polling.py's wait_until, for a scenario's event loop (the controller runs on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


async def retrying(call: Callable[[], Awaitable[Any]], timeout: float) -> Any:
    """A controller call, again until it works (a bridge that restarts is found again): its result."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def main() -> int:
    module, scenario, state_dir = sys.argv[1:4]
    network()
    os.environ.setdefault("RUVIEW_CHECK_THREADS", "1")
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bridge.core import inbox as inbox_rule
    from tests.brokers import Mosquitto
    fn = getattr(importlib.import_module(f"tests.homekit.{module}"), scenario)
    broker = Mosquitto().start()
    session = Session(state_dir, broker)

    async def go() -> dict:
        try:
            return await fn(session)
        finally:
            await session.close()

    try:
        result = asyncio.run(go())
    except Exception:
        result = {"error": traceback.format_exc()}
    finally:
        broker.cleanup()
    result["off_inbox"] = list(inbox_rule.violations)
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

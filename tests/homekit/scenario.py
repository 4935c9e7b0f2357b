"""A HomeKit session, run in a private network namespace (mDNS needs multicast, and nothing may
leave the host): a bridge fed real UDP frames on a real Mosquitto, and aiohomekit as the
controller. Prints one JSON object of what the controller saw; tests/homekit/test_homekit.py judges it.

    unshare -n python -m tests.homekit.scenario STATE_DIR
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

HAP = "-0000-1000-8000-0026BB765291"
NAME, OCCUPANCY, MOTION, ACTIVE, FAULT, SWITCH_EVENT = (f"{t:08X}{HAP}" for t in (0x23, 0x71, 0x22, 0x75, 0x77, 0x73))
PRIVACY = "8B0E1C00-0001-4B0E-9C00-1234567890AB"


def network() -> None:
    for command in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "lo", "multicast", "on"],
                    ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"]):
        subprocess.run(command, check=True)


def start_bridge(broker, state_dir: str, udp: int, hap_port: int):
    from bridge.app import build_bridge
    from bridge.catalog import validate_config
    from bridge.homekit.extension import HomeKitExtension
    from bridge.nodes.extension import NodesExtension
    config = validate_config({
        "mqtt": {"url": broker.url}, "bridge": {"state_dir": state_dir},
        "nodes": {"publish_interval": 0.2, "offline_after": 3, "udp": {"bind": "127.0.0.1", "port": udp},
                  "devices": {1: {"name": "kitchen-node", "room": "Kitchen"},
                              2: {"name": "bedroom-node", "room": "Bedroom", "privacy_class": "restricted"}}},
        "homekit": {"enabled": True, "port": hap_port, "address": "127.0.0.1", "interfaces": ["127.0.0.1"]}},
        "scenario", env={})
    bridge = build_bridge(config, extensions=[NodesExtension(), HomeKitExtension()])
    bridge.start()
    assert bridge.extension_state["homekit"]["state"] == "running", bridge.extension_state
    return bridge


def chars_by_room(accessories: list[dict]) -> dict[str, dict]:
    """room name -> {"aid", "services": [service types], char type -> iid}"""
    out = {}
    for acc in accessories:
        chars, services, name = {}, [], None
        for service in acc["services"]:
            services.append(service["type"])
            for ch in service["characteristics"]:
                chars.setdefault(ch["type"], ch["iid"])
                if ch["type"] == NAME and name is None:
                    name = ch.get("value")
        out[name] = {"aid": acc["aid"], "services": services, **chars}
    return out


async def controller_session(state_dir: str, udp: int, hap_port: int, broker) -> dict:
    from aiohomekit import Controller
    from aiohomekit.characteristic_cache import CharacteristicCacheMemory
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    from bridge.homekit.pairing import PairingFiles
    from firmware_tools.simulate import generate, make_nodes, send_udp
    from bridge.nodes import codec

    result: dict = {}
    bridge = start_bridge(broker, state_dir, udp, hap_port)
    zc = AsyncZeroconf(interfaces=["127.0.0.1"])
    AsyncServiceBrowser(zc.zeroconf, ["_hap._tcp.local.", "_hap._udp.local."], handlers=[lambda **kw: None])
    controller = Controller(async_zeroconf_instance=zc, char_cache=CharacteristicCacheMemory())
    await controller.async_start()
    found = []
    for _ in range(100):
        found = [d async for d in controller.async_discover()]
        if found:
            break
        await asyncio.sleep(0.1)
    result["discovered"] = [d.description.name for d in found]
    code = PairingFiles(__import__("pathlib").Path(state_dir)).setup().pincode
    pairing = await (await found[0].async_start_pairing("home"))(code)
    result["paired_clients"] = bridge.info()["homekit"]["paired_clients"]
    rooms = chars_by_room(await pairing.list_accessories_and_characteristics())
    result["rooms"] = sorted(r for r in rooms if r)
    result["services"] = {r: v["services"] for r, v in rooms.items()}
    kitchen, bedroom = rooms["Kitchen"], rooms["Bedroom"]

    def ref(room, char):
        return (room["aid"], room[char])

    values = await pairing.get_characteristics([ref(kitchen, ACTIVE), ref(kitchen, OCCUPANCY),
                                                ref(kitchen, PRIVACY), ref(bedroom, PRIVACY)])
    result["before"] = {"kitchen_active": values[ref(kitchen, ACTIVE)]["value"],
                        "kitchen_occupied": values[ref(kitchen, OCCUPANCY)]["value"],
                        "kitchen_privacy": values[ref(kitchen, PRIVACY)]["value"],
                        "bedroom_privacy": values[ref(bedroom, PRIVACY)]["value"]}

    events: list = []
    pairing.dispatcher_connect(lambda ev: events.append((time.monotonic(), ev)))
    await pairing.subscribe([ref(kitchen, OCCUPANCY), ref(kitchen, ACTIVE), ref(bedroom, SWITCH_EVENT)])

    frames = list(generate(make_nodes(2, "visit", 60), 60))
    send_udp([f for f in frames if f[0] < 30], "127.0.0.1", udp, speed=0)  # someone is in from 18 s
    occupied_at = None
    for _ in range(200):
        node = bridge.directory.get(1)
        if node and node.state and node.state.get("occupancy"):
            occupied_at = time.monotonic()
            break
        await asyncio.sleep(0.01)
    for _ in range(200):
        hit = [t for t, ev in events if ev.get(ref(kitchen, OCCUPANCY), {}).get("value") == 1]
        if hit:
            result["occupancy_event_after_s"] = round(hit[0] - occupied_at, 3) if occupied_at else None
            break
        await asyncio.sleep(0.01)
    values = await pairing.get_characteristics([ref(kitchen, OCCUPANCY), ref(kitchen, ACTIVE)])
    result["during"] = {"kitchen_occupied": values[ref(kitchen, OCCUPANCY)]["value"],
                        "kitchen_active": values[ref(kitchen, ACTIVE)]["value"]}

    # the Restricted bedroom's activity switch, on an anomaly the node reports
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(codec.encode_mesh_anomaly(codec.MeshAnomaly(2, 1, 2_800_000, 2, 1, 0.93, 0.4)), ("127.0.0.1", udp))
    for _ in range(200):
        if any(ref(bedroom, SWITCH_EVENT) in ev for _, ev in events):
            break
        await asyncio.sleep(0.01)
    result["switch_events"] = [ev[ref(bedroom, SWITCH_EVENT)]["value"] for _, ev in events
                               if ref(bedroom, SWITCH_EVENT) in ev]

    # silence: after nodes.offline_after the room is "not responding", not "unoccupied"
    for _ in range(100):
        values = await pairing.get_characteristics([ref(kitchen, ACTIVE), ref(kitchen, FAULT)])
        if values[ref(kitchen, ACTIVE)]["value"] in (False, 0):
            break
        await asyncio.sleep(0.1)
    result["silent"] = {"kitchen_active": values[ref(kitchen, ACTIVE)]["value"],
                        "kitchen_fault": values[ref(kitchen, FAULT)]["value"]}
    pairing_data = dict(pairing.pairing_data)
    await pairing.close()

    # a restart: the same controller, the same pairing, the same accessories
    bridge.stop()
    bridge = start_bridge(broker, state_dir, udp, hap_port)
    again = controller.load_pairing("home-again", pairing_data)
    for _ in range(100):
        try:
            rooms_again = chars_by_room(await again.list_accessories_and_characteristics())
            break
        except Exception as exc:  # the connection comes up once the bridge is found again
            result["restart_retry"] = type(exc).__name__
            await asyncio.sleep(0.1)
    result["after_restart"] = {r: v["aid"] for r, v in rooms_again.items() if r}
    result["before_restart"] = {r: v["aid"] for r, v in rooms.items() if r}

    # a node in a room HomeKit has not seen: the database changes, the pairing holds
    config_before = bridge.info()["homekit"]["config_number"]
    from bridge.nodes import codec as c
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(c.encode_feature_state(c.FeatureState(3, 0, 1, 1_000_000, 1.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0,
                                                       0.0, 1.0, 0x01, -55)), ("127.0.0.1", udp))
    for _ in range(100):
        rooms_now = chars_by_room(await again.list_accessories_and_characteristics())
        if "node_3" in rooms_now:
            break
        await asyncio.sleep(0.1)
    result["room_added"] = sorted(r for r in rooms_now if r)
    result["config_number"] = [config_before, bridge.info()["homekit"]["config_number"]]
    await again.close()
    await controller.async_stop()
    await zc.async_close()
    bridge.stop()
    return result


def main() -> int:
    network()
    from tests.brokers import Mosquitto, free_port, free_port_udp
    broker = Mosquitto().start()
    try:
        result = asyncio.run(controller_session(sys.argv[1], free_port_udp(), free_port(), broker))
    finally:
        broker.cleanup()
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A HomeKit session from pairing to restart, as tests/homekit/test_homekit.py judges it: a bridge fed
real UDP frames on a real Mosquitto, and aiohomekit as the controller, in a private network
namespace (tests/homekit/session.py):

    unshare -n python -m tests.homekit.session scenario session STATE_DIR
"""

from __future__ import annotations

import asyncio
import socket
import time

from tests.homekit.session import (ACTIVE, FAULT, OCCUPANCY, OCCUPANCY_SENSOR, PRIVACY, SWITCH, SWITCH_EVENT, Session,
                                   accessories, ref, retrying, until)


def _read(values: dict, key: tuple[int, int]) -> dict:
    got = values.get(key, {})
    return {"value": got["value"]} if "value" in got else {"status": got.get("status")}


async def session(s: Session) -> dict:
    from bridge.nodes import codec
    from firmware_tools.simulate import generate, make_nodes, send_udp

    result: dict = {}
    bridge = s.start_bridge(devices={1: {"name": "kitchen-node", "room": "Kitchen"},
                                     2: {"name": "bedroom-node", "room": "Bedroom", "privacy_class": "restricted"}})
    result["discovered"] = [d.description.name for d in await s.discover()]
    pairing = await s.pair()
    result["paired_clients"] = bridge.info()["homekit"]["paired_clients"]
    rooms = accessories(await pairing.list_accessories_and_characteristics())
    result["rooms"] = sorted(rooms)
    result["services"] = {name: [sv["type"] for sv in room["services"]] for name, room in rooms.items()}
    result["switches"] = {name: sorted(sv["name"] for sv in room["services"] if sv["type"] == SWITCH)
                          for name, room in rooms.items()}
    kitchen, bedroom = rooms["Kitchen"], rooms["Bedroom"]
    occupancy, active = ref(kitchen, OCCUPANCY), ref(kitchen, ACTIVE, OCCUPANCY_SENSOR)
    fault = ref(kitchen, FAULT, OCCUPANCY_SENSOR)
    k_privacy, b_privacy = ref(kitchen, PRIVACY), ref(bedroom, PRIVACY)
    activity = ref(bedroom, SWITCH_EVENT, SWITCH, "Unrecognized Activity Pattern")

    # before any node is heard the rooms are "No Response"
    values = await pairing.get_characteristics([active, occupancy])
    result["before"] = {"kitchen_active": _read(values, active), "kitchen_occupied": _read(values, occupancy)}

    await pairing.subscribe([occupancy, active, activity])
    frames = list(generate(make_nodes(2, "visit", 60), 60))
    send_udp([f for f in frames if f[0] < 30], "127.0.0.1", s.udp, speed=0)  # someone is in from 18 s
    occupied_at = None
    if await until(lambda: (bridge.directory.get(1) and bridge.directory.get(1).state or {}).get("occupancy"), 2):
        occupied_at = time.monotonic()
    if await until(lambda: any(v == 1 for _, v in s.events_of(occupancy)), 2):
        first = next(t for t, v in s.events_of(occupancy) if v == 1)
        result["occupancy_event_after_s"] = round(first - occupied_at, 3) if occupied_at else None
    values = await pairing.get_characteristics([occupancy, active, k_privacy, b_privacy])
    result["during"] = {"kitchen_occupied": _read(values, occupancy), "kitchen_active": _read(values, active)}
    result["privacy"] = {"kitchen": _read(values, k_privacy), "bedroom": _read(values, b_privacy)}

    # the Restricted bedroom's activity switch, on an anomaly the node reports
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(codec.encode_mesh_anomaly(codec.MeshAnomaly(2, 1, 2_800_000, 2, 1, 0.93, 0.4)),
                    ("127.0.0.1", s.udp))
    await until(lambda: s.events_of(activity), 2)
    result["switch_events"] = [v for _, v in s.events_of(activity)]

    # silence: after nodes.offline_after the room is "No Response", not "unoccupied"
    assert await until(lambda: bridge.directory.get(1).online is False, 10)

    async def unavailable() -> bool:
        return "value" not in (await pairing.get_characteristics([active])).get(active, {})

    await until(unavailable, 3, interval=0.1)
    values = await pairing.get_characteristics([active, fault, occupancy])
    result["silent"] = {"kitchen_active": _read(values, active), "kitchen_fault": _read(values, fault),
                        "kitchen_occupied": _read(values, occupancy)}
    pairing_data = dict(pairing.pairing_data)
    await pairing.close()

    # a restart: the same controller, the same pairing, the same accessories
    bridge.stop()
    bridge = s.start_bridge()
    again = s.controller.load_pairing("home-again", pairing_data)
    rooms_again = accessories(await retrying(again.list_accessories_and_characteristics, 15))
    result["after_restart"] = {name: room["aid"] for name, room in rooms_again.items()}
    result["before_restart"] = {name: room["aid"] for name, room in rooms.items()}

    # a node nobody configured is no room; once an operator names its room it is one, and the
    # accessory database changes with the pairing intact
    config_before = bridge.info()["homekit"]["config_number"]
    s.heartbeat(3)
    assert await until(lambda: bridge.directory.get(3) is not None, 5)
    answer = await asyncio.to_thread(s.request, "node/register", {"node_id": 3, "room": "Office"})
    result["register"] = answer.get("status")
    assert await until(lambda: bridge.info()["homekit"]["config_number"] > config_before, 5)
    result["room_added"] = sorted(accessories(await again.list_accessories_and_characteristics()))
    result["config_number"] = [config_before, bridge.info()["homekit"]["config_number"]]
    return result

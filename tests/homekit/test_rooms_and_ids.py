"""The pure parts of the HomeKit bridge, in process: names Apple Home accepts, which nodes are
shown, the accessory ids kept in `homekit.accessories`, instance ids that stay put, and the
`homekit.expose` section's words."""

from __future__ import annotations

import stat
import zlib

import orjson
import pytest
from pyhap.accessory import Accessory
from pyhap.accessory_driver import AccessoryDriver

from bridge.catalog import validate_config
from bridge.config.loader import ConfigError
from bridge.core.directory import NodeInfo
from bridge.homekit.accessories import (Exposure, RoomAccessory, RoomPlan, group_rooms, homekit_name, make_loader,
                                        room_key)
from bridge.homekit.pairing import AccessoryIds, IdentityError, legacy_aid
from bridge.privacy import PrivacyClass

A = PrivacyClass.ANONYMOUS


def node(node_id: int, name: str | None = None, room: str | None = None, online: bool = True,
         cls: PrivacyClass = A) -> NodeInfo:
    return NodeInfo(node_id, name or f"node_{node_id}", room, cls, online=online)


# ------------------------------------------------------------ names

@pytest.mark.parametrize("given, shown", [
    ("node_4", "node 4"),  # HA: "_" is a space
    ("Küche/Essen (oben)", "Küche-Essen -oben"),  # HA's hyphens; and a name ends with a letter or digit
    ("  _Kid's_Room #2 🎉 ", "Kid's Room 2"),  # what HA leaves but Apple refuses: "#", emoji
    ("Living  room\n", "Living room"),
    ("Büro 2.OG, links", "Büro 2.OG, links"),  # letters of any language, digits, "." and "," stay
    ("'Quoted'", "Quoted"),
    ("-=Hall=-", "Hall"),
    ("A" * 70 + " B", "A" * 64),
    ("x" * 63 + " -y", "x" * 63),  # cut at 64, then the end is a letter again
])
def test_names_are_cleaned_as_home_assistant_does_and_start_and_end_with_a_letter_or_digit(given, shown):
    assert homekit_name(given, "fallback") == shown


def test_a_name_with_nothing_left_takes_the_fallback():
    assert homekit_name("🎉🎉", "Room 5") == "Room 5" and homekit_name("---", "Node 3") == "Node 3"


# ------------------------------------------------------------ which nodes are shown

def test_by_default_configured_nodes_are_shown_and_an_id_nobody_configured_is_not():
    everyone = Exposure.of()
    assert everyone.exposes(node(1, "kitchen-node", "Kitchen"))
    assert everyone.exposes(node(2, "garage-node"))  # a name of its own is configuration
    assert everyone.exposes(node(3, None, "Hall"))  # so is a room
    assert not everyone.exposes(node(4))  # node_4, no room: any host could have sent it


def test_exclusions_win_include_rooms_narrows_and_include_nodes_adds():
    policy = Exposure.of(include_rooms=["Kitchen"], include_nodes=[7], exclude_rooms=["  BEDROOM "],
                         exclude_nodes=[2])
    assert policy.exposes(node(1, room="kitchen"))  # rooms without regard to case
    assert not policy.exposes(node(2, room="Kitchen"))  # excluded by id, whatever its room
    assert policy.exposes(node(7)) and not policy.exposes(node(8, "named-node"))  # not in an included room
    assert not policy.exposes(node(9, "x", "Bedroom"))
    adding = Exposure.of(include_nodes=[7])  # the default set, and node 7 besides
    assert adding.exposes(node(7)) and adding.exposes(node(8, "named-node")) and not adding.exposes(node(9))
    assert not Exposure.of(exclude_rooms=["bedroom"]).exposes(node(5, "x", "Bedroom"))
    assert not Exposure.of(include_nodes=[6], exclude_nodes=[6]).exposes(node(6))


def test_rooms_group_by_room_and_a_node_without_one_is_its_own_whatever_its_name():
    groups = group_rooms([node(1, "a", "Kitchen"), node(2, "b", "Kitchen ", online=False), node(3, "kitchen"),
                          node(9)], Exposure.of())
    assert set(groups) == {("room", "Kitchen"), ("node", 3)}  # node 9 is not configured
    kitchen = groups[("room", "Kitchen")]
    assert kitchen.node_ids == (1, 2) and kitchen.view.online and kitchen.label == "Kitchen"
    assert room_key(node(3, "kitchen")) == ("node", 3)  # not merged into "Kitchen" by its name
    plan = RoomPlan(5, "Kitchen", kitchen)
    assert plan.available and plan.fault  # one node silent: available, and a fault to see
    silent = group_rooms([node(1, "a", "Kitchen", online=False)], Exposure.of())[("room", "Kitchen")]
    assert not RoomPlan(5, "Kitchen", silent).available


# ------------------------------------------------------------ accessory ids

def groups(**rooms: tuple[int, ...]) -> dict:
    return {("room", name): (ids, name) for name, ids in rooms.items()}


def test_the_first_start_keeps_the_ids_the_bridge_gave_before_they_were_kept(tmp_path):
    ids = AccessoryIds(tmp_path)
    got = ids.assign({**groups(Kitchen=(1,)), ("node", 5): ((5,), "garage-node")}, 149)
    old = {name: 2 + zlib.crc32(name.encode()) % 2_000_000_000 for name in ("Kitchen", "garage-node")}
    assert got.aids == {("room", "Kitchen"): old["Kitchen"], ("node", 5): old["garage-node"]}
    assert legacy_aid("Kitchen") == old["Kitchen"]


def test_a_room_keeps_its_id_through_a_rename_a_move_and_a_restart(tmp_path):
    ids = AccessoryIds(tmp_path)
    first = ids.assign({**groups(Kitchen=(1, 2)), ("node", 5): ((5,), "garage-node")}, 149).aids
    kitchen, garage = first[("room", "Kitchen")], first[("node", 5)]
    # the room renamed (all its nodes at once) and the roomless node given a room
    second = AccessoryIds(tmp_path).assign({**groups(Cuisine=(1, 2)), **groups(Shed=(5,))}, 149)
    assert second.aids == {("room", "Cuisine"): kitchen, ("room", "Shed"): garage} and second.error is None
    # a node leaves for a new room: the room keeps its id, the new one gets a new one
    third = AccessoryIds(tmp_path).assign(groups(Cuisine=(1,), Pantry=(2,), Shed=(5,)), 149).aids
    assert third[("room", "Cuisine")] == kitchen and third[("room", "Pantry")] not in (kitchen, garage)
    saved = orjson.loads((tmp_path / "homekit.accessories").read_bytes())
    assert {e["room"] for e in saved["accessories"]} == {"Cuisine", "Pantry", "Shed"}
    assert stat.S_IMODE((tmp_path / "homekit.accessories").stat().st_mode) == 0o600


def test_an_id_is_never_given_to_another_room_while_its_room_is_remembered(tmp_path):
    ids = AccessoryIds(tmp_path)
    kitchen = ids.assign(groups(Kitchen=(1,)), 149).aids[("room", "Kitchen")]
    ids.assign(groups(Hall=(2,)), 149)  # the kitchen is gone for now (its node excluded, say)
    # a room whose name would give it the kitchen's id gets another
    clash = {("room", "Other"): ((3,), "Kitchen")}
    assert ids.assign(clash, 149).aids[("room", "Other")] != kitchen
    assert ids.assign(groups(Kitchen=(1,)), 149).aids[("room", "Kitchen")] == kitchen


def test_over_the_limit_the_rooms_that_had_an_id_stay_and_new_ones_wait(tmp_path):
    ids = AccessoryIds(tmp_path)
    ids.assign(groups(B=(9,)), 2)
    got = ids.assign(groups(A=(1,), B=(9,), C=(3,)), 2)
    assert list(got.aids) == [("room", "B"), ("room", "A")] and got.left_out == (("room", "C"),)
    assert [e["room"] for e in ids.entries] == ["B", "A"]  # nothing taken on for the room left out


def test_a_write_that_fails_changes_nothing_and_says_which_file_and_why(tmp_path):
    ids = AccessoryIds(tmp_path)
    ids.assign(groups(Kitchen=(1,)), 149)
    before = (tmp_path / "homekit.accessories").read_bytes()
    (tmp_path / ".homekit.accessories.tmp").mkdir()  # in the way of the atomic write
    got = ids.assign(groups(Kitchen=(1,), Office=(2,)), 149)
    assert got.error and "cannot save the HomeKit accessory ids" in got.error and "Is a directory" in got.error
    assert [e["room"] for e in ids.entries] == ["Kitchen"]
    assert (tmp_path / "homekit.accessories").read_bytes() == before
    (tmp_path / ".homekit.accessories.tmp").rmdir()
    again = ids.assign(groups(Kitchen=(1,), Office=(2,)), 149)
    assert again.error is None and again.aids[("room", "Office")] == got.aids[("room", "Office")]
    assert not (tmp_path / ".homekit.accessories.tmp").exists()


def test_an_unreadable_ids_file_stops_the_start_with_what_to_do(tmp_path):
    (tmp_path / "homekit.accessories").write_bytes(b'{"accessories": [{"aid": "x"}]}')
    with pytest.raises(IdentityError, match="restore the file from a backup, or remove it"):
        AccessoryIds(tmp_path)


# ------------------------------------------------------------ instance ids

def _driver(tmp_path) -> AccessoryDriver:
    return AccessoryDriver(port=0, address="127.0.0.1", persist_file=str(tmp_path / "s"), loader=make_loader(),
                           pincode=b"031-45-154", advertise=False)


def _iids(accessory: Accessory) -> dict[tuple[str, str, str], int]:
    """(service, its Name, characteristic) -> iid"""
    out = {}
    for service in accessory.services:
        label = next((c.value for c in service.characteristics if c.display_name == "Name"), "")
        for char in service.characteristics:
            out[(service.display_name, label, char.display_name)] = accessory.iid_manager.get_iid(char)
    return out


def test_instance_ids_stay_put_when_a_room_gains_a_restricted_node_and_match_the_seeds_layout(tmp_path):
    driver = _driver(tmp_path)
    try:
        plain = group_rooms([node(1, "a", "Kitchen")], Exposure.of())[("room", "Kitchen")]
        restricted = group_rooms([node(1, "a", "Kitchen", cls=PrivacyClass.RESTRICTED)], Exposure.of())[("room", "Kitchen")]
        before = _iids(RoomAccessory(driver, RoomPlan(5, "Kitchen", plain), "0.1.0"))
        after = _iids(RoomAccessory(driver, RoomPlan(5, "Kitchen", restricted), "0.1.0"))
        assert {k: v for k, v in after.items() if k in before} == before
        # the seed's accessory (before issue 31): the same iids for what it had
        seed = Accessory(driver, "Kitchen", aid=5)
        seed.add_preload_service("MotionSensor", chars=["StatusActive", "StatusFault", "BFLD Privacy Class"])
        seed.add_preload_service("OccupancySensor", chars=["StatusActive", "StatusFault"])
        seed.add_preload_service("StatelessProgrammableSwitch", chars=["Name"]).configure_char(
            "Name", value="Unrecognized Activity Pattern")
        old = _iids(seed)
        assert {k: after.get(k) for k in old} == old
    finally:
        driver.loop.close()
        if driver.executor is not None:
            driver.executor.shutdown(wait=False)


# ------------------------------------------------------------ the section's words

def test_expose_takes_node_ids_not_names_and_says_when_a_node_is_both_included_and_excluded():
    with pytest.raises(ConfigError) as caught:
        validate_config({"homekit": {"expose": {"include_nodes": ["kitchen-node"], "exclude_rooms": [""]}}}, "t",
                        env={})
    text = str(caught.value)
    assert "homekit.expose.include_nodes: expected a list of node ids" in text and "not names" in text
    assert "homekit.expose.exclude_rooms: expected a list of room names" in text
    with pytest.raises(ConfigError, match=r"homekit\.expose\.include_nodes: node\(s\) 4 also in exclude_nodes"):
        validate_config({"homekit": {"expose": {"include_nodes": [4], "exclude_nodes": [4]}}}, "t", env={})
    ok = validate_config({"homekit": {"expose": {"exclude_rooms": ["Bedroom"], "include_nodes": [7]}}}, "t", env={})
    assert ok.homekit.expose.exclude_rooms == ["Bedroom"] and ok.homekit.expose.include_nodes == [7]

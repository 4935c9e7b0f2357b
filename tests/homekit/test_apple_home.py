"""Issue 31, "HomeKit as Apple Home users expect": each finding as a controller meets it. The
scenarios (tests/homekit/apple_home.py) run in a private network namespace with aiohomekit as
the controller; these tests judge what it saw."""

from __future__ import annotations

import re

import pytest

from tests.homekit.session import COMMUNICATION_FAILURE, run_scenario

# Apple's naming guidance: letters, digits, spaces, apostrophes, hyphens, periods, commas; a letter
# or digit first and last; at most 64 characters
APPLE_NAME = re.compile(r"[^\W_](?:[\w '\u2019.,-]*[^\W_])?")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """A scenario's result, run once for the tests that judge it (each in a namespace of its own)."""
    done: dict[str, dict] = {}

    def run(name: str) -> dict:
        if name not in done:
            done[name] = run_scenario("apple_home", name, tmp_path_factory.mktemp(name))
        result = done[name]
        assert "error" not in result, result["error"]
        assert result["off_inbox"] == [], result["off_inbox"]
        return result

    return run


# ------------------------------------------------------------ 1. a silent node is "No Response"

def test_a_silent_node_makes_its_room_no_response_not_unoccupied(scenario):
    result = scenario("silent_node")
    assert result["occupied"] == {"occupancy": {"value": 1}, "active": {"value": True}}
    # silence is told as a fault, never as "unoccupied": no occupancy 1 -> 0, no motion change
    assert result["fault_event"] is True
    assert result["after_silence"]["occupancy"] == [] and result["after_silence"]["motion"] == []
    # every read of the room fails as Apple Home's "No Response" does (HAP-python's `available`)
    for char in ("occupancy", "motion", "fault"):
        assert result["silent_read"][char] == {"status": COMMUNICATION_FAILURE}, result["silent_read"]


def test_a_room_with_one_silent_node_stays_available_flags_a_fault_and_info_names_the_node(scenario):
    result = scenario("silent_node")
    assert result["hall_available"] is True
    assert result["hall"]["active"] == {"value": True} and result["hall"]["fault"] == {"value": 1}
    info = result["hall"]["info"]
    assert info["available"] is True and info["fault"] is True, info
    assert {n["name"]: n["online"] for n in info["nodes"]} == {"hall-a": False, "hall-b": True}


# ------------------------------------------------------------ 2. a removed controller loses access at once

def test_removing_a_pairing_closes_that_controllers_open_session_within_a_second(scenario):
    result = scenario("removed_pairing")
    assert result["guest_before"] == {"value": "RuView Sensing"} and result["guest_connected_before"] is True
    assert result["guest_closed_after_s"] is not None and result["guest_closed_after_s"] < 1.0, result
    assert result["guest_after"] == "AuthenticationError", result["guest_after"]  # and cannot come back
    assert result["admin_after"] == {"value": "RuView Sensing"}  # the admin's own session is untouched
    assert result["pairings"] == [result["admin_id"]]
    assert result["health"]["sessions_closed_on_unpair"] == 1


# ------------------------------------------------------------ 3. a fast stop

def test_stopping_with_a_controller_connected_takes_under_a_second_and_a_restart_is_back_at_once(scenario):
    result = scenario("fast_stop")
    assert result["stop_s"] < 1.0, result
    assert result["homekit_threads_left"] == []
    assert result["back_after_s"] < 3.0 and result["read_after_restart"] == {"value": "RuView Sensing"}, result


def test_an_mqtt_restart_leaves_homekit_away_for_under_two_seconds_and_ctrl_c_ends_within_two(scenario):
    result = scenario("mqtt_restart")
    assert result["answered"] == "ok" and result["went_down"] is True, result
    assert result["down_s"] is not None and result["down_s"] < 2.0, result
    assert result["exit_code"] == 0 and result["exit_s"] < 2.0, result
    assert "Traceback" not in result["output"] and " ERROR " not in result["output"], result["output"]


# ------------------------------------------------------------ 4. bounded and chosen

def test_node_ids_nobody_configured_add_no_accessory_until_an_operator_configures_one(scenario):
    result = scenario("unknown_node_ids")
    assert result["after_unknown"] == ["Kitchen", "RuView Sensing"]
    assert result["config_number_unchanged"] is True
    assert result["register"]["status"] == "ok"
    assert result["after_register"] == ["Kitchen", "Office", "RuView Sensing"]


def test_at_most_150_accessories_with_a_log_line_and_a_health_figure_when_rooms_are_left_out(scenario):
    result = scenario("capacity")
    assert result["accessories"] == 150 and result["aids_unique"] is True
    assert result["health"]["at_capacity"] is True and result["health"]["rooms_left_out"] == 11
    assert result["left_out"] == [f"Room {i}" for i in range(150, 161)]  # the first 149 by node id are shown
    assert "Room 149" in result["shown"] and "Room 150" not in result["shown"]
    said = [line for line in result["_log"].splitlines() if "HomeKit takes at most 150 accessories" in line]
    assert len(said) == 1 and "11 room(s) left out" in said[0] and "homekit.expose" in said[0], said


def test_homekit_expose_excludes_rooms_and_nodes_narrows_to_rooms_and_adds_node_ids(scenario):
    result = scenario("expose_policy")
    assert result["excluding"] == ["Kitchen", "RuView Sensing"]  # "bedroom" keeps Bedroom out, node 3 out
    assert result["health"]["nodes_not_shown"] == 2
    assert result["including"] == ["Hall", "RuView Sensing", "node 50"]


# ------------------------------------------------------------ 5. pair setup cannot be taken over

def test_a_second_pair_setup_while_one_is_in_progress_is_answered_busy_and_the_first_pairs(scenario):
    result = scenario("concurrent_pair_setup")
    assert result["owner_started"] is True  # one that began and went away held nothing
    assert result["intruder"] == "BusyError"
    assert result["owner"] == "paired" and result["paired_clients"] == 1
    assert result["rooms"] == ["Kitchen", "RuView Sensing"]
    assert result["health"]["pair_setups_refused_busy"] == 1


# ------------------------------------------------------------ 6. names

def test_every_name_is_one_apple_home_accepts(scenario):
    result = scenario("names")
    assert result["names"] == sorted(["RuView Sensing", "Küche-Essen -oben", "garage node", "Kid's Room 2",
                                      "Room 5"]), result["names"]
    for name in result["names"] + result["switch_names"]:
        assert APPLE_NAME.fullmatch(name) and len(name) <= 64, name


# ------------------------------------------------------------ 7. identity

def test_accessory_ids_outlive_renames_moves_and_restarts(scenario):
    result = scenario("identity")
    start = result["start"]
    kitchen, garage = start["Kitchen"], start["garage-node"]
    assert result["rename"]["status"] == "ok" and result["renamed"]["shed-node"] == garage
    assert result["move"]["status"] == "ok" and result["moved"]["Shed"] == garage
    assert result["restarted"] == {"RuView Sensing": 1, "Cuisine": kitchen, "Shed": garage}
    assert result["file_mode"] == "0o600"


def test_a_failed_write_of_the_ids_refuses_the_new_room_loudly_and_it_comes_once_saved(scenario):
    result = scenario("identity")
    assert result["refused"] is True and result["cuisine_live"] is True
    unsaved = result["while_unsaved"]
    assert unsaved["rooms"] == ["Cuisine", "RuView Sensing", "Shed"] and unsaved["config_number_unchanged"]
    assert "cannot save the HomeKit accessory ids" in unsaved["info"] and "Is a directory" in unsaved["info"]
    said = [line for line in result["_log"].splitlines() if "cannot save the HomeKit accessory ids" in line]
    assert len(said) == 1 and "ERROR" in said[0] and ".homekit.accessories.tmp" in said[0], said
    assert result["after_saved"] == ["Cuisine", "Office", "RuView Sensing", "Shed"]
    assert result["health"]["accessory_ids_unsaved"] is False


# ------------------------------------------------------------ 8. firmware and falls

def test_firmware_revision_is_the_bridges_version_on_the_bridge_and_every_room(scenario):
    result = scenario("firmware_and_falls")
    assert result["firmware"] == {"RuView Sensing": result["version"], "Kitchen": result["version"],
                                  "Bedroom": result["version"]}


def test_a_fall_presses_the_rooms_fall_switch_in_both_classes_and_nothing_else(scenario):
    result = scenario("firmware_and_falls")
    assert "missing" not in result, result
    assert result["switches"] == {"RuView Sensing": [], "Kitchen": ["Fall Detected"],
                                  "Bedroom": ["Fall Detected", "Unrecognized Activity Pattern"]}
    assert result["labelled"] == {"RuView Sensing": False, "Kitchen": True, "Bedroom": True}
    assert result["fall_events"] is True and result["presses"] == {"Kitchen": [0], "Bedroom": [0]}
    assert result["activity_presses"] == []  # a fall is not an "unrecognized activity pattern"


# ------------------------------------------------------------ 9. a pairing is saved before it is confirmed

def test_a_pairing_that_cannot_be_saved_is_refused_and_one_that_can_survives_restarts(scenario):
    result = scenario("unsaved_pairing")
    assert result["first"] != "paired" and result["paired_while_blocked"] is False
    said = [line for line in result["_log"].splitlines() if "pairing refused: it cannot be saved" in line]
    assert len(said) == 1 and "ERROR" in said[0] and "homekit.state" in said[0], said
    assert result["paired_after_restart"] is False, "nothing was acknowledged, so nothing is half-paired"
    assert result["second"] and result["paired_after_second_restart"] is True
    assert result["leftovers"] == [], "no partial files"


def test_one_controller_removed_by_request_loses_its_session_and_stays_removed(scenario):
    result = scenario("unpair_by_request")
    assert result["before"] == 1
    assert result["wrong"]["status"] == "error" and "no paired controller" in result["wrong"]["error"]
    assert result["garbage"]["status"] == "error" and "give a paired controller's id" in result["garbage"]["error"]
    assert result["still"] == 1, "a refused request changes nothing"
    assert result["removed"]["status"] == "ok" and result["removed"]["data"]["paired_clients"] == 0, result["removed"]
    assert result["closed"] is True and result["after"] != "answered"
    assert result["after_restart"] == 0


def test_a_removal_in_the_home_app_that_cannot_be_saved_is_refused_and_sticks_once_it_can(scenario):
    result = scenario("removal_not_saved")
    assert result["before"] == 2
    assert result["blocked_answer"] != "removed"
    assert result["guest_id"].upper() in [p.upper() for p in result["listed_while_blocked"]], "nothing changed"
    assert result["guest_id"].upper() not in [p.upper() for p in result["listed_after"]]
    assert result["after_restart"] == 1
    said = [line for line in result["_log"].splitlines() if "removing pairing" in line and "refused" in line]
    assert len(said) == 1 and "ERROR" in said[0], said

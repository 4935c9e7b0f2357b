"""HomeKit with a real controller (aiohomekit) in a private network namespace: discovery over
mDNS, pairing with the setup code, a room per accessory, occupancy as an event, the privacy class
characteristic, "No Response" for a room whose node is silent, the switches of a room, a restart
that keeps the pairing, and a room that appears once an operator configures its node."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest

from tests.homekit.session import COMMUNICATION_FAILURE, ROOT, hap, run_scenario

MOTION, OCCUPANCY, SWITCH, LABEL = (hap(t) for t in (0x85, 0x86, 0x89, 0xCC))
ALLOWED_SERVICES = {hap(t) for t in (0x3E, 0xA2, 0x85, 0x86, 0x89, 0xCC)}  # info, protocol, sensors, switches, label


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    state = tmp_path_factory.mktemp("homekit-state")
    result = run_scenario("scenario", "session", state, timeout=240)
    assert "error" not in result, result["error"]
    assert result["off_inbox"] == [], result["off_inbox"]
    return result, state


def test_a_controller_discovers_pairs_and_sees_one_accessory_per_room(session):
    result, state = session
    assert result["discovered"] and result["discovered"][0].startswith("RuView Sensing")
    assert result["paired_clients"] == 1
    assert result["rooms"] == ["Bedroom", "Kitchen", "RuView Sensing"]
    for room in ("Kitchen", "Bedroom"):
        assert MOTION in result["services"][room] and OCCUPANCY in result["services"][room]
    for services in result["services"].values():  # presence, motion, availability, ambient events: no vitals
        assert set(services) <= ALLOWED_SERVICES
    for name in ("homekit.state", "homekit.setup", "homekit.accessories"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name


def test_occupancy_arrives_as_an_event_within_a_second_and_silence_is_no_response(session):
    result, _ = session
    failure = {"status": COMMUNICATION_FAILURE}
    assert result["before"] == {"kitchen_active": failure, "kitchen_occupied": failure}  # never heard yet
    assert result["during"] == {"kitchen_occupied": {"value": 1}, "kitchen_active": {"value": True}}
    assert result["occupancy_event_after_s"] is not None and result["occupancy_event_after_s"] <= 1.0
    assert result["silent"] == {"kitchen_active": failure, "kitchen_fault": failure, "kitchen_occupied": failure}


def test_the_privacy_class_characteristic_and_the_rooms_switches(session):
    result, _ = session
    assert result["privacy"] == {"kitchen": {"value": 2}, "bedroom": {"value": 3}}
    assert result["switches"]["Kitchen"] == ["Fall Detected"]
    assert result["switches"]["Bedroom"] == ["Fall Detected", "Unrecognized Activity Pattern"]
    assert result["switch_events"] == [0]  # single press, on the unrecognized activity pattern


def test_a_restart_keeps_the_pairing_and_a_configured_room_bumps_the_config_number(session):
    result, _ = session
    assert result["after_restart"] == result["before_restart"]
    assert result["register"] == "ok" and "Office" in result["room_added"]
    before, after = result["config_number"]
    assert after > before


def test_pair_info_prints_the_code_and_reset_unpairs(session, tmp_path):
    _, state = session
    config = tmp_path / "config.yaml"
    copy = tmp_path / "state"
    import shutil
    shutil.copytree(state, copy)
    config.write_text(f"bridge:\n  state_dir: {copy}\nhomekit:\n  enabled: true\n")
    info = subprocess.run([sys.executable, "-m", "bridge", "homekit", "pair-info", "-c", str(config)],
                          capture_output=True, text=True, cwd=ROOT)
    code = json.loads((copy / "homekit.setup").read_text())["pincode"]
    assert info.returncode == 0 and f"Setup code: {code}" in info.stdout and "Paired controllers: 1" in info.stdout
    assert "\u2588" in info.stdout  # the QR code
    reset = subprocess.run([sys.executable, "-m", "bridge", "homekit", "reset", "-c", str(config)],
                           capture_output=True, text=True, cwd=ROOT)
    assert reset.returncode == 0 and not (copy / "homekit.state").exists()
    again = subprocess.run([sys.executable, "-m", "bridge", "homekit", "pair-info", "-c", str(config)],
                           capture_output=True, text=True, cwd=ROOT)
    assert "Paired controllers: 0" in again.stdout and f"Setup code: {code}" not in again.stdout

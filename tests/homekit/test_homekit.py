"""HomeKit with a real controller (aiohomekit) in a private network namespace: discovery over
mDNS, pairing with the setup code, a room per accessory, occupancy as an event, the privacy class
characteristic, "not responding" for a silent node, the activity switch of a Restricted room,
a restart that keeps the pairing, and a room that appears later."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HAP = "-0000-1000-8000-0026BB765291"
MOTION, OCCUPANCY, SWITCH = (f"{t:08X}{HAP}" for t in (0x85, 0x86, 0x89))
ALLOWED_SERVICES = {f"{t:08X}{HAP}" for t in (0x3E, 0xA2, 0x85, 0x86, 0x89)}  # info, protocol, the three


def can_unshare() -> bool:
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    if not can_unshare():
        pytest.skip("needs `unshare -n` (root or user namespaces) for a private network with multicast")
    state = tmp_path_factory.mktemp("homekit-state")
    run = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.homekit.scenario", str(state)],
                         capture_output=True, text=True, cwd=ROOT, timeout=240,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(lines[-1][7:]), state, run


def test_a_controller_discovers_pairs_and_sees_one_accessory_per_room(session):
    result, state, _ = session
    assert result["discovered"] and result["discovered"][0].startswith("RuView Sensing")
    assert result["paired_clients"] == 1
    assert result["rooms"] == ["Bedroom", "Kitchen", "RuView Sensing"]
    for room in ("Kitchen", "Bedroom"):
        assert MOTION in result["services"][room] and OCCUPANCY in result["services"][room]
    for services in result["services"].values():  # presence, motion, availability: never a vitals value
        assert set(services) <= ALLOWED_SERVICES
    for name in ("homekit.state", "homekit.setup"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name


def test_occupancy_arrives_as_an_event_within_a_second_and_silence_is_not_responding(session):
    result, _, _ = session
    assert result["before"]["kitchen_occupied"] == 0 and result["before"]["kitchen_active"] is False
    assert result["during"] == {"kitchen_occupied": 1, "kitchen_active": True}
    assert result["occupancy_event_after_s"] is not None and result["occupancy_event_after_s"] <= 1.0
    assert result["silent"] == {"kitchen_active": False, "kitchen_fault": 1}


def test_the_privacy_class_characteristic_and_the_restricted_rooms_switch(session):
    result, _, _ = session
    assert result["before"]["kitchen_privacy"] == 2 and result["before"]["bedroom_privacy"] == 3
    assert SWITCH in result["services"]["Bedroom"] and SWITCH not in result["services"]["Kitchen"]
    assert result["switch_events"] == [0]  # single press, on the unrecognized activity pattern


def test_a_restart_keeps_the_pairing_and_a_new_room_bumps_the_config_number(session):
    result, _, _ = session
    assert result["after_restart"] == result["before_restart"]
    assert "node_3" in result["room_added"]
    before, after = result["config_number"]
    assert after > before


def test_pair_info_prints_the_code_and_reset_unpairs(session, tmp_path):
    _, state, _ = session
    config = tmp_path / "config.yaml"
    copy = tmp_path / "state"
    import shutil
    shutil.copytree(state, copy)
    config.write_text(f"bridge:\n  state_dir: {copy}\n")
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

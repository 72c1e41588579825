"""Scenario files: the shipped ones load, and broken ones say what and where."""

from pathlib import Path

import pytest

from load_tests.scenario import (
    ClinicDay,
    CrowdedRoom,
    ScenarioError,
    assign_roles,
    available,
    consultation_rooms,
    load_scenario,
)
from metaworld.layout import load_layout

LAYOUT = load_layout()

CROWD = """
kind = "crowded-room"
name = "t"
[[roles]]
role = "trainee"
[crowd]
center = [24.0, 54.0]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def test_the_shipped_scenarios_load_and_check_against_the_clinic():
    assert {"crowded-room", "clinic-day"} <= set(available())
    crowded = load_scenario("crowded-room", LAYOUT)
    clinic = load_scenario("clinic-day", LAYOUT)
    assert isinstance(crowded, CrowdedRoom) and crowded.crowd.room == "training"
    assert isinstance(clinic, ClinicDay)
    assert len(consultation_rooms(clinic, LAYOUT)) >= 4
    # Dense enough that a crowd of 50 fits within one view radius of its centre.
    assert crowded.radius_m(50) < 12.0


def test_a_minimal_file_gets_the_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, CROWD), LAYOUT)
    assert scenario.motion.speed_mps == (0.6, 1.4)
    assert scenario.connect_per_s > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('kind = "stampede"\nname = "x"\nroles = []', "Invalid value 'stampede' - at `$.kind`"),
        (CROWD + "colour = 'red'\n", "unknown field `colour`"),
        (CROWD.replace("[24.0, 54.0]", '"middle"'), "at `$.crowd.center`"),
        (CROWD.replace('role = "trainee"', 'role = "king"'), "at `$.roles[0].role`"),
        (CROWD + "[motion]\nspeed_mps = [1.0, -2.0]\n", "at `$.motion.speed_mps[1]`"),
        (CROWD + "[motion]\nspeed_mps = [1.4, 0.6]\n", "$.motion.speed_mps: low 1.4 is above"),
        (CROWD + "[motion]\nspeed_mps = [0.5, 4.0]\n", "faster than the server allows"),
        (CROWD.replace("[crowd]", '[crowd]\nroom = "attic"'), "$.crowd.room: no room 'attic'"),
        (CROWD.replace("[24.0, 54.0]", "[24.0, 5.0]"), "$.crowd.center: (24.0, 5.0) is not"),
        (CROWD.replace("[crowd]\ncenter = [24.0, 54.0]\n", ""), "missing required field `crowd`"),
        ("kind = [", "Invalid value (at end of document)"),
    ],
    ids=[
        "unknown kind",
        "unknown field",
        "wrong type",
        "unknown role",
        "negative speed",
        "speeds reversed",
        "too fast for the server",
        "unknown room",
        "centre outside the room",
        "missing section",
        "not TOML",
    ],
)
def test_broken_files_name_the_file_and_the_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, LAYOUT)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_clinic_day_needs_patients_staff_and_a_door_to_the_waiting_room(tmp_path):
    text = """
kind = "clinic-day"
name = "c"
[[roles]]
role = "trainee"
[clinic]
door = "lobby-training"
rooms = ["staff"]
"""
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text), LAYOUT)
    message = str(info.value)
    assert "a clinic day needs patients" in message
    assert "a clinic day needs staff" in message
    assert "$.clinic.door: 'lobby-training' must lead from 'lobby'" in message
    assert "$.clinic.rooms[0]: 'staff' takes no appointments" in message


def test_an_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match="crowded-room"):
        load_scenario("no-such-scenario")


@pytest.mark.parametrize("count", [1, 2, 7, 10, 101])
def test_roles_follow_the_shares_and_interleave(count):
    scenario = load_scenario("clinic-day", LAYOUT)
    roles = assign_roles(scenario, count)
    assert len(roles) == count
    assert abs(roles.count("clinician") - 0.2 * count) <= 1
    if count >= 10:
        # Any stride of slots (one worker process's share) gets both roles.
        assert {"patient", "clinician"} <= set(roles[::2])

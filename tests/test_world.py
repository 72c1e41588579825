import numpy as np
import pytest

from metaworld import quant
from metaworld.layout import load_layout
from metaworld.world import World, WorldError, standing_pose


@pytest.fixture
def world():
    return World(load_layout(), b"secret")


def body(world, avatar_id, pose):
    local = pose[None].copy()
    local[:, :, :3] -= world.room_min[avatar_id]
    return quant.encode_bodies(local).tobytes()


def test_patients_get_a_stable_pseudonym_and_staff_their_name(world):
    p = world.spawn("patient-7", "patient", "Jane Roe", 0.0)
    c = world.spawn("dr-1", "clinician", "Dr Who", 0.0)
    assert p.label.startswith("Patient ") and "Jane" not in p.label
    assert World(load_layout(), b"secret").spawn("patient-7", "patient", None, 0).label == p.label
    assert c.label == "Dr Who"


def test_walking_at_a_human_pace_is_accepted(world):
    a = world.spawn("a", "clinician", None, 0.0)
    pose = world.poses[a.id].copy()
    pose[:, 0] += 0.1  # 10 cm in 50 ms = 2 m/s
    assert world.apply_pose(a.id, a.epoch, body(world, a.id, pose), 0.05) is None
    assert abs(world.poses[a.id, 0, 0] - pose[0, 0]) < 0.001
    assert world.body_of(a.id) == body(world, a.id, pose)  # forwarded byte for byte


@pytest.mark.parametrize(
    ("shift", "reason"),
    [((3.0, 0.0, 0.0), "speed"), ((0.0, 0.0, -50.0), "wall"), ((0.0, 5.0, 0.0), "height")],
)
def test_impossible_moves_are_corrected(world, shift, reason):
    a = world.spawn("a", "clinician", None, 0.0)
    before = world.poses[a.id].copy()
    pose = before.copy()
    pose[:, :3] += shift
    correction = world.apply_pose(a.id, a.epoch, body(world, a.id, pose), 0.05)
    assert correction is not None and not correction.accepted and correction.reason == reason
    assert np.array_equal(world.poses[a.id], before)  # stays where the server says
    assert correction.epoch == a.epoch


def test_hands_must_stay_within_reach(world):
    a = world.spawn("a", "clinician", None, 0.0)
    pose = world.poses[a.id].copy()
    pose[1, :3] += (2.0, 0.0, 0.0)
    correction = world.apply_pose(a.id, a.epoch, body(world, a.id, pose), 0.05)
    assert correction is not None and correction.reason == "reach"


def test_poses_from_an_old_epoch_are_ignored(world):
    a = world.spawn("a", "clinician", None, 0.0)
    pose = world.poses[a.id].copy()
    pose[:, 0] += 5.0
    assert world.apply_pose(a.id, a.epoch - 1, body(world, a.id, pose), 1.0) is None
    assert world.poses[a.id, 0, 0] != pose[0, 0]


def test_bad_pose_body(world):
    a = world.spawn("a", "clinician", None, 0.0)
    with pytest.raises(WorldError, match="bad_pose"):
        world.apply_pose(a.id, a.epoch, b"short", 1.0)


def test_obstacles_block_standing_and_teleporting(world):
    a = world.spawn("a", "clinician", None, 0.0)
    with pytest.raises(WorldError, match="bad_target"):
        world.move_to(a.id, 16.0, 11.0, 1.0)  # the lobby desk
    with pytest.raises(WorldError, match="bad_target"):
        world.move_to(a.id, -3.0, 5.0, 1.0)
    placed = world.move_to(a.id, 6.0, 6.0, 1.0)
    assert placed.accepted and placed.reason == "teleport"


def test_doors_need_you_nearby_and_lead_to_the_other_room(world):
    a = world.spawn("a", "clinician", None, 0.0)
    with pytest.raises(WorldError, match="too_far"):
        world.use_door(a.id, "lobby-waiting", 1.0)
    world.move_to(a.id, 10.0, 6.0, 1.0)
    world.move_to(a.id, 18.5, 6.0, 1.5)
    placed = world.use_door(a.id, "lobby-waiting", 2.0)
    assert placed.room == "waiting" and placed.previous_room == "lobby"
    assert a.id in world.occupants["waiting"] and a.id not in world.occupants["lobby"]
    with pytest.raises(WorldError, match="unknown_door"):
        world.use_door(a.id, "lobby-staff", 3.0)


def test_a_patient_cannot_enter_another_patients_consultation(world):
    mine = world.spawn("demo-patient", "patient", None, 0.0)  # has the consult-1 appointment
    other = world.spawn("someone-else", "patient", None, 0.0)
    assert world.join_room(mine.id, "consult-1", 1.0).room == "consult-1"
    with pytest.raises(WorldError, match="no_appointment"):
        world.join_room(other.id, "consult-1", 1.0)
    assert other.room == "lobby"


def test_staff_admit_patients_to_their_room(world):
    doc = world.spawn("dr", "clinician", None, 0.0)
    pat = world.spawn("p2", "patient", None, 0.0)
    world.join_room(doc.id, "consult-2", 1.0)
    with pytest.raises(WorldError, match="not_staff"):
        world.admit(pat.id, doc.id)
    assert world.admit(doc.id, pat.id) == "consult-2"
    assert world.join_room(pat.id, "consult-2", 2.0).room == "consult-2"


def test_roles_and_capacity(world):
    pat = world.spawn("p", "patient", None, 0.0)
    with pytest.raises(WorldError, match="not_allowed"):
        world.join_room(pat.id, "staff", 1.0)
    with pytest.raises(WorldError, match="unknown_room"):
        world.join_room(pat.id, "attic", 1.0)
    cap = world.rooms["consult-3"].capacity
    staff = [world.spawn(f"s{i}", "clinician", None, 0.0) for i in range(cap + 1)]
    for s in staff[:cap]:
        world.join_room(s.id, "consult-3", 1.0)
    with pytest.raises(WorldError, match="room_full"):
        world.join_room(staff[cap].id, "consult-3", 1.0)


def test_standing_pose_is_level():
    pose = standing_pose(1.0, 2.0, 0.0)
    assert pose[0, 1] == pytest.approx(1.6)
    assert np.allclose(np.linalg.norm(pose[:, 3:], axis=1), 1.0)


def test_a_body_with_bits_above_a_hand_index_is_malformed_not_a_crash(world):
    a = world.spawn("a", "clinician", None, 0.0)
    body = bytearray(world.body_of(a.id))
    for offset in (18, 27):  # the top byte of each hand's 24-bit orientation
        evil = bytearray(body)
        evil[offset] |= 0x80
        corrections, malformed = world.apply_poses([(a.id, a.epoch, bytes(evil))], 0.1)
        assert malformed == [a.id] and not corrections
    rng = np.random.default_rng(5)
    for _ in range(2000):  # any 28 bytes are either a pose or malformed, never an error
        world.apply_poses([(a.id, a.epoch, rng.bytes(28))], 0.1)


def test_an_admission_is_for_one_visit(world):
    doc = world.spawn("dr", "clinician", None, 0.0)
    alice = world.spawn("alice", "patient", None, 0.0)
    bob = world.spawn("bob", "patient", None, 0.0)
    world.join_room(doc.id, "consult-2", 1.0)
    world.admit(doc.id, alice.id)
    world.join_room(alice.id, "consult-2", 2.0)
    world.join_room(alice.id, "lobby", 3.0)  # the visit is over
    world.admit(doc.id, bob.id)  # the next patient's consultation
    with pytest.raises(WorldError, match="no_appointment"):
        world.join_room(alice.id, "consult-2", 4.0)
    assert world.join_room(bob.id, "consult-2", 4.0).room == "consult-2"
    world.remove(bob.id)  # leaving the world ends the visit too
    assert "bob" not in world.admitted["consult-2"]
    assert world.admissions_changed == {"consult-2"}
    # Standing appointments from the layout stay.
    demo = world.spawn("demo-patient", "patient", None, 0.0)
    for t in (5.0, 7.0):
        world.join_room(demo.id, "consult-1", t)
        world.join_room(demo.id, "lobby", t + 1)


def test_standing_still_saves_up_no_more_than_a_second_of_walking(world):
    a = world.spawn("a", "clinician", None, 0.0)
    pose = world.poses[a.id].copy()
    pose[:, 0] += 8.0  # after a 6 s pause: 18 m of credit if pauses counted in full
    correction = world.apply_pose(a.id, a.epoch, body(world, a.id, pose), 6.0)
    assert correction is not None and correction.reason == "speed"

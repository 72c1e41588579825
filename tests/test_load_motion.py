"""Bot motion: never faster than allowed, always inside the room, and well-formed poses."""

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from load_tests.motion import (
    Disc,
    Walker,
    encode_body,
    random_point,
    route,
    segment_clear,
    standable,
)
from load_tests.scenario import Motion
from metaworld import quant
from metaworld.layout import load_layout
from metaworld.world import HAND_REACH_M, WALL_MARGIN_M

LAYOUT = load_layout()
ROOMS = {room.id: room for room in LAYOUT.rooms}

motions = st.builds(
    lambda low, spread, pause, margin: Motion(
        speed_mps=(low, min(low + spread, LAYOUT.max_speed_mps)),
        pause_s=(0.0, pause),
        wall_margin_m=margin,
    ),
    st.floats(0.2, 1.5),
    st.floats(0.0, 1.5),
    st.floats(0.0, 2.0),
    st.floats(0.2, 1.0),
)
steps = st.lists(st.floats(0.001, 0.6), min_size=50, max_size=400)


def check_pose(pose, room, margin):
    head = pose[0]
    assert standable(room, (head[0], head[2]), margin - 1e-9)
    assert standable(room, (head[0], head[2]), WALL_MARGIN_M)
    assert room.bounds.min[1] <= head[1] <= room.bounds.max[1]
    reach = np.linalg.norm(pose[1:, :3] - head[:3], axis=1)
    assert np.all(reach < HAND_REACH_M)
    assert np.allclose(np.linalg.norm(pose[:, 3:], axis=1), 1.0)


@settings(max_examples=60, deadline=None)
@given(
    room_id=st.sampled_from(sorted(ROOMS)),
    motion=motions,
    dts=steps,
    seed=st.integers(0, 2**32 - 1),
    in_disc=st.booleans(),
)
def test_milling_never_exceeds_the_speed_limit_and_stays_in_the_room(
    room_id, motion, dts, seed, in_disc
):
    room = ROOMS[room_id]
    rng = random.Random(seed)
    start = random_point(room, None, motion.wall_margin_m, rng)
    walker = Walker(room, start, motion, rng)
    walker.mill(Disc(start, 4.0) if in_disc else None)
    here = start
    for dt in dts:
        pose = walker.advance(dt)
        check_pose(pose, room, motion.wall_margin_m)
        moved = math.dist(here, (pose[0, 0], pose[0, 2]))
        assert moved <= motion.speed_mps[1] * dt + 1e-9
        assert moved <= LAYOUT.max_speed_mps * dt + 1e-9
        here = (pose[0, 0], pose[0, 2])


@settings(max_examples=40, deadline=None)
@given(room_id=st.sampled_from(sorted(ROOMS)), seed=st.integers(0, 2**32 - 1))
def test_walks_to_any_reachable_point_without_crossing_furniture(room_id, seed):
    room = ROOMS[room_id]
    rng = random.Random(seed)
    motion = Motion()
    a = random_point(room, None, motion.wall_margin_m, rng)
    b = random_point(room, None, motion.wall_margin_m, rng)
    path = route(room, a, b, motion.wall_margin_m)
    if path is None:
        return  # boxed in by furniture: the bot teleports instead
    for start, end in zip([a, *path], path, strict=False):
        assert segment_clear(room, start, end, motion.wall_margin_m)
    walker = Walker(room, a, motion, rng)
    assert walker.go_to(b)
    for _ in range(4000):
        walker.advance(0.05)
        if walker.idle:
            break
    assert walker.idle and math.dist(walker.xz, b) < 1e-9


def test_a_consultation_table_is_walked_around():
    room = ROOMS["consult-1"]
    a, b = (35.0, 3.0), (39.0, 3.0)  # the table stands between them
    assert not segment_clear(room, a, b, 0.5)
    path = route(room, a, b, 0.5)
    assert path is not None and len(path) == 3  # two corners, then the goal


def test_standing_bots_still_send_changing_bodies():
    room = ROOMS["training"]
    walker = Walker(room, (24.0, 54.0), Motion(), random.Random(3))
    bodies = {encode_body(walker.advance(0.05), room.bounds.min) for _ in range(200)}
    assert len(bodies) > 150


# Orientations a tracker reports: not far from unit length (the codec normalizes them).
quats = st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: sum(c * c for c in q) > 0.25
)
positions = st.lists(st.floats(-5.0, 70.0, allow_nan=False), min_size=3, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(positions, quats), min_size=3, max_size=3))
def test_the_fast_encoder_matches_the_server_codec(parts):
    pose = np.array([p + q for p, q in parts], dtype=np.float64)
    room_min = (0.0, 0.0, 30.0)
    local = pose[None].copy()
    local[:, :, :3] -= np.array(room_min)
    assert encode_body(pose, room_min) == quant.encode_bodies(local).tobytes()


@pytest.mark.parametrize("room_id", sorted(ROOMS))
def test_random_points_are_standable(room_id):
    room = ROOMS[room_id]
    rng = random.Random(5)
    for _ in range(50):
        assert standable(room, random_point(room, None, 0.5, rng), 0.5)

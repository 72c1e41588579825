"""Interpolation of remote poses: pure functions first, then the buffers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metaworld import quant
from metaworld_sdk.interp import (
    RENDER_DELAY_S,
    PoseBuffer,
    ViewInterpolator,
    blend,
    sample,
    slerp,
)


def yaw(angle: float) -> np.ndarray:
    return np.array([0.0, math.sin(angle / 2), 0.0, math.cos(angle / 2)])


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * math.acos(min(1.0, abs(float(np.dot(a, b)))))


def pose_at(x: float, heading: float = 0.0) -> np.ndarray:
    pose = np.zeros((3, 7))
    pose[:, 0] = x
    pose[:, 1] = (1.6, 0.9, 0.9)
    pose[:, 3:] = yaw(heading)
    return pose


def test_slerp_goes_the_short_way_at_a_constant_rate():
    a, b = yaw(0.0), yaw(1.0)
    for t in (0.0, 0.25, 0.5, 1.0):
        assert angle_between(slerp(a, b, t), yaw(t)) < 1e-9
    # -b is the same rotation as b: the short way is still 1 radian, not 2*pi - 1.
    assert angle_between(slerp(a, -b, 0.5), yaw(0.5)) < 1e-9
    # t beyond 1 keeps turning at the same rate.
    assert angle_between(slerp(a, b, 1.5), yaw(1.5)) < 1e-9


def test_slerp_of_nearly_equal_rotations_is_stable():
    a, b = yaw(0.0), yaw(1e-7)
    q = slerp(a, b, 0.5)
    assert np.isfinite(q).all() and math.isclose(np.linalg.norm(q), 1.0)


@given(
    st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda v: np.linalg.norm(v) > 0.1),
    st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda v: np.linalg.norm(v) > 0.1),
    st.floats(0, 1),
)
def test_slerp_stays_on_the_unit_sphere_between_its_ends(qa, qb, t):
    a = np.array(qa) / np.linalg.norm(qa)
    b = np.array(qb) / np.linalg.norm(qb)
    q = slerp(a, b, t)
    assert math.isclose(np.linalg.norm(q), 1.0, abs_tol=1e-9)
    whole = angle_between(a, b)
    assert angle_between(a, q) <= whole + 1e-6 and angle_between(q, b) <= whole + 1e-6


def test_blend_lerps_positions_and_slerps_every_part():
    a, b = pose_at(0.0, 0.0), pose_at(2.0, 1.0)
    mid = blend(a, b, 0.5)
    assert np.allclose(mid[:, :3], (a[:, :3] + b[:, :3]) / 2)
    for part in range(3):
        assert angle_between(mid[part, 3:], yaw(0.5)) < 1e-9


def test_sample_interpolates_clamps_and_extrapolates_briefly():
    times = np.array([0.0, 0.05, 0.10])
    poses = np.stack([pose_at(0.0), pose_at(0.1), pose_at(0.2)])
    assert math.isclose(sample(times, poses, 0.075)[0, 0], 0.15)
    assert math.isclose(sample(times, poses, 0.05)[0, 0], 0.1)  # exactly on a pose
    assert math.isclose(sample(times, poses, -1.0)[0, 0], 0.0)  # before: hold the oldest
    # After the newest: continue at the last velocity (2 m/s), at most 50 ms...
    assert math.isclose(sample(times, poses, 0.12)[0, 0], 0.24)
    assert math.isclose(sample(times, poses, 0.15)[0, 0], 0.3)
    # ...then hold.
    assert math.isclose(sample(times, poses, 5.0)[0, 0], 0.3)
    assert math.isclose(sample(times, poses, 5.0, max_extrapolation_s=0.0)[0, 0], 0.2)
    assert math.isclose(sample(times[:1], poses[:1], 1.0)[0, 0], 0.0)
    with pytest.raises(ValueError, match="at least one"):
        sample(times[:0], poses[:0], 0.0)


def test_a_buffer_draws_a_moving_avatar_smoothly_at_display_rate():
    buffer = PoseBuffer()
    for tick in range(20):  # 1 m/s along x, 20 Hz
        buffer.push(tick * 0.05, pose_at(tick * 0.05))
    frames = np.arange(0.4, 1.0, 1 / 90)  # a 90 Hz display, within the 0.8 s kept
    xs = np.array([buffer.render(t)[0, 0] for t in frames])
    assert np.allclose(xs, frames - RENDER_DELAY_S)  # exactly on the path, 100 ms behind
    assert np.allclose(np.diff(xs), 1 / 90)  # no steps at tick boundaries


def test_a_buffer_drops_late_poses_and_keeps_the_later_of_equal_times():
    buffer = PoseBuffer(capacity=3)
    assert buffer.render(1.0) is None
    assert buffer.push(1.0, pose_at(1.0))
    assert not buffer.push(0.5, pose_at(9.0))  # arrived out of order
    assert buffer.push(1.0, pose_at(1.5))  # same time: the later message wins
    for t in (1.1, 1.2, 1.3):
        buffer.push(t, pose_at(t))
    assert len(buffer) == 3 and buffer.newest_time == 1.3
    assert math.isclose(buffer.sample(0.0)[0, 0], 1.1)  # the oldest kept
    with pytest.raises(ValueError):
        PoseBuffer(capacity=1)


def test_the_view_interpolator_reads_downlink_records_in_world_coordinates():
    room_min = np.array([20.0, 0.0, 0.0])
    view = ViewInterpolator()

    def records(x: float) -> bytes:
        out = np.zeros(2, dtype=quant.RECORD_DTYPE)
        out["id"] = [7, 9]
        local = np.stack([pose_at(x), pose_at(x + 1.0)])
        out["body"] = quant.encode_bodies(local)
        return out.tobytes()

    view.push_records(10.0, records(1.0), room_min + 0.0)
    view.push_records(10.05, records(1.1), room_min)
    view.push_records(10.1, b"", room_min)
    drawn = view.render(10.025 + RENDER_DELAY_S)
    assert set(drawn) == {7, 9}
    assert abs(drawn[7][0, 0] - 21.05) < 0.001 and abs(drawn[9][0, 0] - 22.05) < 0.001
    view.retain([9])
    assert set(view.render(11.0)) == {9}

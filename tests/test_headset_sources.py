"""Pose sources without a server: the simulated body obeys the world's movement rules,
replays keep their timing, and OpenXR reports plainly when it cannot be used."""

from __future__ import annotations

import math
import sys
import types
from contextlib import aclosing

import numpy as np
import pytest
import trio

from metaworld import quant
from metaworld.layout import load_layout
from metaworld.world import World
from metaworld_headset import (
    BodySource,
    OpenXRSource,
    OpenXRUnavailable,
    PoseSource,
    ReplaySource,
    SimulatedSource,
    TraceWriter,
    read_trace,
)
from metaworld_headset.openxr import StageAnchor
from metaworld_headset.sources import ticks

LAYOUT = load_layout()


def placed_source(seed: int, room_id: str = "lobby") -> tuple[SimulatedSource, World, int]:
    world = World(LAYOUT, b"secret")
    avatar = world.spawn("walker", "clinician", "Walker", 0.0)
    if room_id != LAYOUT.lobby:
        world.join_room(avatar.id, room_id, 0.0)
    source = SimulatedSource(seed=seed)
    source.placed(LAYOUT.room(avatar.room), world.poses[avatar.id].copy(), "join")
    return source, world, avatar.id


def body_of(world: World, avatar_id: int, pose: np.ndarray) -> bytes:
    local = pose[None].copy()
    local[:, :, :3] -= world.room_min[avatar_id]
    return quant.encode_bodies(local).tobytes()


@pytest.mark.parametrize("room_id", ["lobby", "waiting", "consult-1"])
@pytest.mark.parametrize("seed", [0, 7])
def test_simulated_motion_is_never_corrected_by_the_world(seed, room_id):
    source, world, avatar_id = placed_source(seed, room_id)
    period = 1 / 20
    for tick in range(1, 20 * 30):  # two loops and more
        pose = source.pose_at(tick * period)
        body = body_of(world, avatar_id, pose)
        assert (
            world.apply_pose(avatar_id, world.avatars[avatar_id].epoch, body, tick * period) is None
        )


def test_simulated_motion_walks_a_loop_turns_the_head_and_swings_the_hands():
    source, _, _ = placed_source(3)
    poses = np.stack([source.pose_at(t) for t in np.arange(0.0, 30.0, 0.05)])
    head_xz = poses[:, 0, [0, 2]]
    travelled = np.sum(np.hypot(*np.diff(head_xz, axis=0).T))
    assert travelled > 15.0  # walking, not standing
    loop = source.loop
    radii = np.hypot(head_xz[:, 0] - loop.cx, head_xz[:, 1] - loop.cz)
    assert np.allclose(radii, loop.radius)  # on the loop all the time
    assert np.allclose(head_xz[0], poses[0, 0, [0, 2]])
    yaw = 2 * np.arctan2(poses[:, 0, 4], poses[:, 0, 6])
    body_yaw = 2 * np.arctan2(poses[:, 1, 4], poses[:, 1, 6])
    look = np.angle(np.exp(1j * (yaw - body_yaw)))
    assert look.max() > 0.25 and look.min() < -0.25  # looks left and right of the path
    forward = np.stack([-np.sin(body_yaw), -np.cos(body_yaw)], axis=1)
    swing = np.sum((poses[:, 1, [0, 2]] - head_xz) * forward, axis=1)
    assert swing.max() > 0.1 and swing.min() < -0.1
    other = np.sum((poses[:, 2, [0, 2]] - head_xz) * forward, axis=1)
    assert np.corrcoef(swing, other)[0, 1] < -0.99  # hands swing in opposite phase


def test_simulated_motion_is_deterministic_given_a_seed():
    a, _, _ = placed_source(11)
    b, _, _ = placed_source(11)
    c, _, _ = placed_source(12)
    times = np.arange(0.0, 10.0, 0.05)
    pa = np.stack([a.pose_at(t) for t in times])
    assert np.array_equal(pa, np.stack([b.pose_at(t) for t in times]))
    assert not np.allclose(pa, np.stack([c.pose_at(t) for t in times]))


def test_a_placement_starts_a_new_loop_from_the_new_point():
    source, world, avatar_id = placed_source(5)
    placed = world.move_to(avatar_id, 10.0, 6.0, 1.0)
    source.placed(LAYOUT.room(placed.room), world.poses[avatar_id], placed.reason)
    assert np.allclose(source.pose_at(0.0)[0, [0, 2]], (10.0, 6.0))


def test_sources_implement_the_interfaces(tmp_path):
    trace = write_trace(tmp_path / "t.jsonl", 3)
    assert isinstance(SimulatedSource(), PoseSource)
    assert not isinstance(SimulatedSource(), BodySource)
    assert isinstance(ReplaySource(trace), BodySource)


def write_trace(path, n: int, period: float = 0.05):
    source, world, avatar_id = placed_source(2)
    with TraceWriter(path, room="lobby", tick_hz=20) as writer:
        for i in range(n):
            writer.write(
                100.0 + i * period, "lobby", body_of(world, avatar_id, source.pose_at(i * period))
            )
    return read_trace(path)


async def test_replay_keeps_the_recorded_timing_and_bytes(tmp_path, autojump_clock):
    trace = write_trace(tmp_path / "t.jsonl", 40)
    source = ReplaySource(trace)
    start = source.start()
    first = quant.decode_bodies(quant.body_from_bytes(trace.records[0].body))[0, 0]
    assert (start.room, start.x, start.z) == ("lobby", first[0], first[2])
    began = trio.current_time()
    got = []
    async for record in source.bodies():
        got.append((trio.current_time() - began, record.body))
    assert [b for _, b in got] == [r.body for r in trace.records]
    assert np.allclose([t for t, _ in got], [r.t for r in trace.records])


async def test_replayed_poses_are_in_world_coordinates(tmp_path, autojump_clock):
    trace = write_trace(tmp_path / "t.jsonl", 3)
    source = ReplaySource(trace)
    waiting = LAYOUT.room("waiting")
    source.placed(waiting, np.zeros((3, 7)), "join")
    async with aclosing(source.poses()) as poses:
        _, pose = await anext(poses)
    local = quant.decode_bodies(quant.body_from_bytes(trace.records[0].body))[0]
    assert np.allclose(pose[:, :3] - waiting.bounds.min, local[:, :3])


async def test_ticks_skip_after_a_stall_instead_of_bursting(autojump_clock):
    seen = []
    async with aclosing(ticks(20)) as clock:
        async for now in clock:
            seen.append(now)
            if len(seen) == 3:
                await trio.sleep(1.0)  # a stall of twenty ticks
            if len(seen) == 6:
                break
    gaps = np.diff(seen)
    assert np.allclose(gaps[:2], 0.05) and gaps[2] >= 1.0 and np.allclose(gaps[3:], 0.05)


def test_openxr_without_pyopenxr_names_the_way_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "xr", None)  # makes `import xr` fail
    with pytest.raises(OpenXRUnavailable) as info:
        OpenXRSource()
    message = str(info.value)
    assert "\n" not in message and "pyopenxr" in message and "--source simulated" in message


def test_openxr_without_a_runtime_names_the_way_out():
    class RuntimeUnavailableError(Exception):
        pass

    def create_instance(_info):
        raise RuntimeUnavailableError("no runtime")

    fake = types.SimpleNamespace(
        MND_HEADLESS_EXTENSION_NAME="XR_MND_headless",
        KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME="XR_KHR_convert_timespec_time",
        KHR_WIN32_CONVERT_PERFORMANCE_COUNTER_TIME_EXTENSION_NAME="XR_KHR_win32",
        InstanceCreateInfo=lambda **kw: kw,
        create_instance=create_instance,
    )
    with pytest.raises(OpenXRUnavailable) as info:
        OpenXRSource(xr_module=fake)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "RuntimeUnavailableError" in message
    assert message.endswith("try --source simulated")


def test_the_stage_is_shifted_so_the_tracked_head_stands_where_placed():
    stage = np.zeros((3, 7))
    stage[:, 6] = 1.0
    stage[0, :3] = (0.5, 1.7, -0.2)
    stage[1, :3] = (0.3, 1.0, -0.4)
    world = np.zeros((3, 7))
    world[0, :3] = (24.0, 1.6, 4.0)
    anchor = StageAnchor.placing((0.5, -0.2), world, floor_y=0.0)
    mapped = anchor.to_world(stage)
    assert np.allclose(mapped[0, :3], (24.0, 1.7, 4.0))
    assert np.allclose(mapped[1, :3] - mapped[0, :3], stage[1, :3] - stage[0, :3])
    assert math.isclose(mapped[0, 6], 1.0)

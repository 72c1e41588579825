"""Where a headset's poses come from: one interface, a simulated body and a replayed trace.

A pose source yields ``(t, pose)`` pairs at the server's tick rate: t in seconds since the
source started, pose of shape (3, 7) in world coordinates (head, left hand, right hand;
x y z in metres, then the quaternion x y z w). The headset tells the source where the
server placed the avatar (on joining, after a teleport, a door or a correction) so
that its motion starts from there. The OpenXR source lives in `metaworld_headset.openxr`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import numpy as np
import trio

from metaworld import quant
from metaworld.layout import Room
from metaworld.world import EYE_HEIGHT_M, WALL_MARGIN_M
from metaworld_headset.trace import Trace, TraceRecord
from metaworld_sdk.client import Pose

LOOP_RADIUS_M: Final = 2.0  # widest walking loop; shrunk until it fits the room
CLEARANCE_M: Final = 0.25  # kept from walls and furniture beyond the server's margin
HAND_HEIGHT_M: Final = 0.95
SHOULDER_HALF_WIDTH_M: Final = 0.22
STRIDE_M: Final = 0.7


@runtime_checkable
class PoseSource(Protocol):
    tick_hz: float  # set by the headset to the server's tick rate before poses() starts

    def placed(self, room: Room, pose: Pose, reason: str) -> None:
        """The server put the avatar at `pose` (world coordinates) in `room`."""

    def poses(self) -> AsyncGenerator[tuple[float, Pose], None]:
        """Yield (t, world pose) at the tick rate, forever or until the source ends."""


@dataclass(frozen=True, slots=True)
class Start:
    """Where a source must begin: a room and a room-local floor point."""

    room: str
    x: float
    z: float


@runtime_checkable
class BodySource(PoseSource, Protocol):
    """A source whose poses are ready pose bodies, to be sent byte for byte."""

    def start(self) -> Start:
        """Where the avatar must stand before the first body is sent."""

    def bodies(self) -> AsyncGenerator[TraceRecord, None]:
        """Yield the records to send, each at its time."""


async def ticks(hz: float) -> AsyncGenerator[float, None]:
    """Yield trio.current_time() at `hz`; after a stall it skips ticks rather than burst."""
    period = 1.0 / hz
    deadline = trio.current_time()
    while True:
        yield deadline
        deadline += period
        now = trio.current_time()
        if deadline < now - period:
            deadline = now
        await trio.sleep_until(deadline)


# ---------------------------------------------------------------- simulated


def yaw_quat(yaw: float) -> np.ndarray:
    """Rotation by `yaw` radians about +y; yaw 0 faces -z, as in the server's poses."""
    return np.array([0.0, math.sin(yaw / 2.0), 0.0, math.cos(yaw / 2.0)])


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def _standable(room: Room, x: float, z: float) -> bool:
    margin = WALL_MARGIN_M + CLEARANCE_M
    if not room.bounds.contains_xz(x, z, margin):
        return False
    return not any(box.contains_xz(x, z, -CLEARANCE_M) for box in room.obstacles)


@dataclass(frozen=True, slots=True)
class Loop:
    """A circular walk through the start point: centre, radius and starting angle."""

    cx: float
    cz: float
    radius: float
    angle0: float

    @staticmethod
    def plan(room: Room, x: float, z: float) -> Loop:
        """The widest circle through (x, z), bending towards the room's middle, that
        keeps clear of walls and furniture all the way round; radius 0 if none fits."""
        mid_x = (room.bounds.min[0] + room.bounds.max[0]) / 2.0
        mid_z = (room.bounds.min[2] + room.bounds.max[2]) / 2.0
        dx, dz = mid_x - x, mid_z - z
        length = math.hypot(dx, dz)
        ux, uz = (dx / length, dz / length) if length > 1e-6 else (1.0, 0.0)
        radius = LOOP_RADIUS_M
        while radius >= 0.25:
            cx, cz = x + ux * radius, z + uz * radius
            angle0 = math.atan2(z - cz, x - cx)
            around = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
            if all(
                _standable(room, cx + radius * math.cos(a), cz + radius * math.sin(a))
                for a in around
            ):
                return Loop(cx, cz, radius, angle0)
            radius *= 0.8
        return Loop(x, z, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Motion:
    """The seeded parameters of a simulated body."""

    speed: float  # m/s along the loop
    direction: float  # +1 anticlockwise, -1 clockwise (seen from above)
    look_amplitude: float  # radians the head turns either side of the walking direction
    look_period: float  # seconds for one look left and right
    look_phase: float
    swing: float  # metres a hand swings forward and back

    @staticmethod
    def from_seed(seed: int) -> Motion:
        rng = np.random.default_rng(seed)
        return Motion(
            speed=float(rng.uniform(0.7, 1.1)),
            direction=1.0 if rng.random() < 0.5 else -1.0,
            look_amplitude=float(rng.uniform(0.3, 0.6)),
            look_period=float(rng.uniform(3.0, 5.0)),
            look_phase=float(rng.uniform(0.0, 2.0 * math.pi)),
            swing=float(rng.uniform(0.15, 0.3)),
        )


class SimulatedSource:
    """A scripted person: walks a loop in the current room, looks around, swings hands.

    Deterministic: with the same seed, room and start point, `pose_at(t)` is the same.
    A placement by the server (teleport, door, correction) starts a new loop from there.
    """

    def __init__(self, *, seed: int = 0, tick_hz: float = 20.0) -> None:
        self.motion = Motion.from_seed(seed)
        self.tick_hz = tick_hz
        self.room: Room | None = None
        self.loop: Loop | None = None
        self.floor_y = 0.0
        self._anchor_time: float | None = None

    def placed(self, room: Room, pose: Pose, reason: str) -> None:
        self.room = room
        self.floor_y = room.bounds.min[1]
        self.loop = Loop.plan(room, float(pose[0, 0]), float(pose[0, 2]))
        self._anchor_time = None  # the next tick starts the new loop

    def pose_at(self, t: float) -> Pose:
        """The pose t seconds after the latest placement, in world coordinates."""
        if self.loop is None:
            raise RuntimeError("the source has not been placed yet")
        loop, motion = self.loop, self.motion
        if loop.radius > 0.0:
            angle = loop.angle0 + motion.direction * motion.speed * t / loop.radius
            x = loop.cx + loop.radius * math.cos(angle)
            z = loop.cz + loop.radius * math.sin(angle)
            tx, tz = -math.sin(angle) * motion.direction, math.cos(angle) * motion.direction
            walk_yaw = math.atan2(-tx, -tz)
        else:  # no room to walk: turn slowly on the spot
            x, z, walk_yaw = loop.cx, loop.cz, 0.4 * t * motion.direction
        step = 2.0 * math.pi * (motion.speed / STRIDE_M) * t
        look = motion.look_amplitude * math.sin(
            2.0 * math.pi * t / motion.look_period + motion.look_phase
        )
        pose = np.empty((quant.POSE_PARTS, quant.POSE_WIDTH))
        pose[0, :3] = (x, self.floor_y + EYE_HEIGHT_M + 0.02 * math.sin(step), z)
        pose[0, 3:] = yaw_quat(walk_yaw + look)
        forward = np.array([-math.sin(walk_yaw), 0.0, -math.cos(walk_yaw)])
        right = np.array([math.cos(walk_yaw), 0.0, -math.sin(walk_yaw)])
        swing = motion.swing * math.sin(step / 2.0)
        for part, side, sign in ((1, -1.0, 1.0), (2, 1.0, -1.0)):
            hand = np.array([x, self.floor_y + HAND_HEIGHT_M, z])
            hand += right * side * SHOULDER_HALF_WIDTH_M + forward * sign * swing
            pose[part, :3] = hand
            pitch = sign * swing * 1.5  # radians: the forearm tilts with the swing
            tilt = np.array([math.sin(pitch / 2.0), 0.0, 0.0, math.cos(pitch / 2.0)])
            pose[part, 3:] = quat_mul(yaw_quat(walk_yaw), tilt)
        return pose

    async def poses(self) -> AsyncGenerator[tuple[float, Pose], None]:
        started: float | None = None
        async with aclosing(ticks(self.tick_hz)) as clock:
            async for now in clock:
                if self.loop is None:
                    continue  # not placed yet
                if started is None:
                    started = now
                if self._anchor_time is None:
                    self._anchor_time = now
                yield now - started, self.pose_at(now - self._anchor_time)


# ---------------------------------------------------------------- replay


class ReplaySource:
    """Sends a recorded trace again, body for body, at the recorded times."""

    def __init__(self, trace: Trace) -> None:
        if not trace.records:
            raise ValueError("the trace holds no poses")
        self.trace = trace
        self.tick_hz = float(trace.header.tick_hz)  # a replay keeps the recorded timing
        self.room: Room | None = None

    def start(self) -> Start:
        first = self.trace.records[0]
        head = quant.decode_bodies(quant.body_from_bytes(first.body))[0, 0]
        return Start(first.room, float(head[0]), float(head[2]))

    def placed(self, room: Room, pose: Pose, reason: str) -> None:
        self.room = room

    async def bodies(self) -> AsyncGenerator[TraceRecord, None]:
        began = trio.current_time()
        for record in self.trace.records:
            await trio.sleep_until(began + record.t)
            yield record

    async def poses(self) -> AsyncGenerator[tuple[float, Pose], None]:
        """The trace's poses in world coordinates of the room the avatar is in."""
        async with aclosing(self.bodies()) as records:
            async for record in records:
                pose = quant.decode_bodies(quant.body_from_bytes(record.body))[0]
                if self.room is not None:
                    pose[:, :3] += self.room.bounds.min
                yield record.t, pose

"""Motion for bots that move like people, and a fast encoder for their pose bodies.

Theory of operation. A Walker plans legs: straight segments between standable points
that miss every obstacle by a margin. Along a leg the position follows a smoothstep
ease, so a walker starts and stops gently; the leg's duration is chosen so that the
peak speed (1.5 times the mean for smoothstep) is the speed drawn for that leg, which
is never above the scenario's top speed. Between legs it stands still for a while.
The body turns toward the walking direction at a bounded rate; the head adds a smooth
yaw and pitch made of a few slow sines; hands swing opposite each other with the
stride, and sway a little when standing. Everything is sans-io: `advance(dt)` moves
the walker on by `dt` seconds and returns the pose in world coordinates, so tests
drive it with any sequence of steps.

`encode_body` packs a pose into the 28-byte wire body in plain Python, byte for byte
what `metaworld.quant.encode_bodies` produces up to float rounding, but some forty
times faster for one pose: bots encode one pose at a time, many thousands a second.
"""

from __future__ import annotations

import heapq
import math
import random
import struct
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from load_tests.scenario import Motion
from metaworld.layout import Room
from metaworld.world import EYE_HEIGHT_M

Pose = npt.NDArray[np.float64]  # (3, 7): head, left, right; x y z qx qy qz qw, world
Vec = tuple[float, float]  # (x, z)

HAND_HEIGHT_M: Final = 0.9
SHOULDER_M: Final = 0.22  # hands hang this far left and right of the body's centre
STRIDE_M: Final = 0.7  # one arm swing, front to back
BOB_M: Final = 0.015  # head bob per stride
_TRIES: Final = 30  # attempts at finding a free waypoint before standing still


# ---------------------------------------------------------------- geometry


def standable(room: Room, p: Vec, margin: float) -> bool:
    """Inside the walls by `margin` and outside every obstacle grown by `margin`."""
    if not room.bounds.contains_xz(p[0], p[1], margin):
        return False
    return not any(_in_box(p, box.min, box.max, margin) for box in room.obstacles)


def _in_box(p: Vec, lo: tuple[float, ...], hi: tuple[float, ...], grow: float) -> bool:
    return lo[0] - grow <= p[0] <= hi[0] + grow and lo[2] - grow <= p[1] <= hi[2] + grow


def segment_clear(room: Room, a: Vec, b: Vec, margin: float) -> bool:
    """A straight walk from `a` to `b` stays in the room and misses every obstacle.

    The room is convex, so two standable ends keep the walk inside the walls; each
    obstacle, grown by the margin, is tested with the slab method."""
    if not (standable(room, a, margin) and standable(room, b, margin)):
        return False
    return not any(_segment_hits_box(a, b, box.min, box.max, margin) for box in room.obstacles)


def _segment_hits_box(
    a: Vec, b: Vec, lo: tuple[float, ...], hi: tuple[float, ...], grow: float
) -> bool:
    t0, t1 = 0.0, 1.0
    for axis, box_axis in ((0, 0), (1, 2)):
        start, step = a[axis], b[axis] - a[axis]
        low, high = lo[box_axis] - grow, hi[box_axis] + grow
        if abs(step) < 1e-12:
            if not low <= start <= high:
                return False
            continue
        u, v = (low - start) / step, (high - start) / step
        t0, t1 = max(t0, min(u, v)), min(t1, max(u, v))
        if t0 > t1:
            return False
    return True


def route(room: Room, a: Vec, b: Vec, margin: float) -> list[Vec] | None:
    """The shortest walk from `a` to `b` as waypoints (not including `a`): straight when
    nothing is in the way, else by the corners of the obstacles (a visibility graph,
    which rooms with a few pieces of furniture keep tiny). None when there is no way."""
    if segment_clear(room, a, b, margin):
        return [b]
    if not standable(room, b, margin):
        return None
    gap = margin + 0.1
    corners = [
        (x, z)
        for box in room.obstacles
        for x in (box.min[0] - gap, box.max[0] + gap)
        for z in (box.min[2] - gap, box.max[2] + gap)
        if standable(room, (x, z), margin)
    ]
    points = [a, *corners, b]
    best = {0: 0.0}
    came: dict[int, int] = {}
    todo = [(0.0, 0)]
    while todo:
        cost, i = heapq.heappop(todo)
        if i == len(points) - 1:
            path = [points[i]]
            while came.get(i, 0) != 0:
                i = came[i]
                path.append(points[i])
            return path[::-1]
        if cost > best[i]:
            continue
        for j in range(1, len(points)):
            if j == i or not segment_clear(room, points[i], points[j], margin):
                continue
            total = cost + math.dist(points[i], points[j])
            if total < best.get(j, math.inf):
                best[j], came[j] = total, i
                heapq.heappush(todo, (total, j))
    return None


@dataclass(frozen=True, slots=True)
class Disc:
    """A region to mill about in."""

    center: Vec
    radius: float


def random_point(room: Room, region: Disc | None, margin: float, rng: random.Random) -> Vec:
    """A uniformly drawn standable point of the room (within `region` when given)."""
    b = room.bounds
    for _ in range(_TRIES * 4):
        if region is None:
            p = (rng.uniform(b.min[0], b.max[0]), rng.uniform(b.min[2], b.max[2]))
        else:
            r = region.radius * math.sqrt(rng.random())
            angle = rng.uniform(0.0, 2.0 * math.pi)
            p = (region.center[0] + r * math.cos(angle), region.center[1] + r * math.sin(angle))
        if standable(room, p, margin):
            return p
    raise ValueError(f"no standable point found in room {room.id!r}")


# ---------------------------------------------------------------- smooth noise


@dataclass(frozen=True, slots=True)
class Wobble:
    """Smooth noise in [-1, 1]: a few slow sines with random frequencies and phases."""

    freqs: tuple[float, ...]
    phases: tuple[float, ...]

    @staticmethod
    def make(rng: random.Random, low_hz: float = 0.05, high_hz: float = 0.3) -> Wobble:
        freqs = tuple(rng.uniform(low_hz, high_hz) for _ in range(3))
        phases = tuple(rng.uniform(0.0, 2.0 * math.pi) for _ in range(3))
        return Wobble(freqs, phases)

    def at(self, t: float) -> float:
        waves = zip(self.freqs, self.phases, strict=True)
        total = sum(math.sin(2.0 * math.pi * f * t + p) for f, p in waves)
        return total / len(self.freqs)


def yaw_pitch_quat(yaw: float, pitch: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a yaw about +y followed by a pitch about the local x axis."""
    sy, cy = math.sin(yaw / 2.0), math.cos(yaw / 2.0)
    sp, cp = math.sin(pitch / 2.0), math.cos(pitch / 2.0)
    return (cy * sp, sy * cp, -sy * sp, cy * cp)


def _angle_diff(target: float, current: float) -> float:
    return (target - current + math.pi) % (2.0 * math.pi) - math.pi


# ---------------------------------------------------------------- the walker


@dataclass(slots=True)
class _Leg:
    start: Vec
    end: Vec
    t0: float
    duration: float


@dataclass
class Walker:
    """One bot's body: where it is, where it is going, and how it looks about."""

    room: Room
    xz: Vec
    motion: Motion
    rng: random.Random
    yaw: float = 0.0
    region: Disc | None = None  # mill about here when idle; None: stand still
    wander: bool = False
    t: float = 0.0
    _leg: _Leg | None = None
    _route: list[Vec] = field(default_factory=list)
    _pause_until: float = 0.0
    _stride: float = 0.0  # arm swing phase, radians
    _speed: float = 0.0  # recent speed, for the swing amplitude
    _head_yaw: Wobble = field(init=False)
    _head_pitch: Wobble = field(init=False)
    _sway: Wobble = field(init=False)

    def __post_init__(self) -> None:
        self._head_yaw = Wobble.make(self.rng)
        self._head_pitch = Wobble.make(self.rng)
        self._sway = Wobble.make(self.rng, 0.2, 0.5)

    @property
    def idle(self) -> bool:
        """Not walking and with nowhere left to go."""
        return self._leg is None and not self._route

    @property
    def margin(self) -> float:
        return self.motion.wall_margin_m

    def reset(self, room: Room, xz: Vec) -> None:
        """The server put us somewhere (a placement or a correction): start over there."""
        self.room, self.xz = room, xz
        self._leg, self._route = None, []
        self._pause_until = self.t + self.rng.uniform(*self.motion.pause_s)

    def mill(self, region: Disc | None) -> None:
        """Walk between random points of `region` (the whole room when None)."""
        self.region, self.wander = region, True

    def stop(self) -> None:
        self.wander = False
        self._leg, self._route = None, []

    def go_to(self, target: Vec) -> bool:
        """Walk to `target`, around an obstacle if need be; False when there is no way."""
        self.wander = False
        path = route(self.room, self.xz, target, self.margin)
        if path is None:
            return False
        self._leg, self._route = None, path
        self._pause_until = self.t
        return True

    def advance(self, dt: float) -> Pose:
        """Move on by `dt` seconds; return the pose in world coordinates."""
        dt = max(dt, 0.0)
        self.t += dt
        before = self.xz
        self._walk()
        step = math.dist(before, self.xz)
        self._stride += step / STRIDE_M * math.pi
        if dt > 0:
            self._speed += (step / dt - self._speed) * min(1.0, dt * 4.0)
        self._turn(dt)
        return self._pose()

    def _walk(self) -> None:
        leg = self._leg
        if leg is None:
            if self.t < self._pause_until or not self._start_leg():
                return
            leg = self._leg
            assert leg is not None
        u = min(1.0, (self.t - leg.t0) / leg.duration)
        ease = u * u * (3.0 - 2.0 * u)
        self.xz = (
            leg.start[0] + (leg.end[0] - leg.start[0]) * ease,
            leg.start[1] + (leg.end[1] - leg.start[1]) * ease,
        )
        if u >= 1.0:
            self.xz = leg.end
            self._leg = None
            if not self._route:
                self._pause_until = self.t + self.rng.uniform(*self.motion.pause_s)

    def _start_leg(self) -> bool:
        if not self._route and self.wander:
            target = self._pick_waypoint()
            if target is None:
                self._pause_until = self.t + self.rng.uniform(*self.motion.pause_s)
                return False
            self._route = [target]
        if not self._route:
            return False
        end = self._route.pop(0)
        length = math.dist(self.xz, end)
        if length < 1e-6:
            return False
        peak = self.rng.uniform(*self.motion.speed_mps)
        # Smoothstep peaks at 1.5 times the mean speed: this leg never exceeds `peak`.
        self._leg = _Leg(self.xz, end, self.t, 1.5 * length / peak)
        return True

    def _pick_waypoint(self) -> Vec | None:
        reach = self.motion.leg_m
        for _ in range(_TRIES):
            p = random_point(self.room, self.region, self.margin, self.rng)
            if math.dist(p, self.xz) > reach:
                # Keep legs short: go part of the way toward the drawn point.
                f = reach / math.dist(p, self.xz) * self.rng.uniform(0.3, 1.0)
                p = (self.xz[0] + (p[0] - self.xz[0]) * f, self.xz[1] + (p[1] - self.xz[1]) * f)
            if math.dist(p, self.xz) > 0.5 and segment_clear(self.room, self.xz, p, self.margin):
                return p
        return None

    def _turn(self, dt: float) -> None:
        leg = self._leg
        if leg is None:
            return
        dx, dz = leg.end[0] - leg.start[0], leg.end[1] - leg.start[1]
        # Yaw 0 faces -z; yaw turns toward -x (a right-handed turn about +y).
        target = math.atan2(-dx, -dz)
        limit = math.radians(self.motion.turn_deg_per_s) * dt
        self.yaw += max(-limit, min(limit, _angle_diff(target, self.yaw)))

    def _pose(self) -> Pose:
        floor = self.room.bounds.min[1]
        x, z, t = self.xz[0], self.xz[1], self.t
        swing_scale = min(1.0, self._speed / max(self.motion.speed_mps[1], 1e-6))
        swing = self.motion.hand_swing_m * swing_scale * math.sin(self._stride)
        sway = 0.02 * self._sway.at(t)
        fwd = (-math.sin(self.yaw), -math.cos(self.yaw))
        right = (math.cos(self.yaw), -math.sin(self.yaw))

        pose = np.empty((3, 7))
        head_yaw = self.yaw + math.radians(self.motion.head_yaw_deg) * self._head_yaw.at(t)
        head_pitch = math.radians(-5.0 + self.motion.head_pitch_deg * self._head_pitch.at(t))
        bob = BOB_M * abs(math.sin(self._stride)) * swing_scale
        pose[0, :3] = (x, floor + EYE_HEIGHT_M + bob, z)
        pose[0, 3:] = yaw_pitch_quat(head_yaw, head_pitch)
        hand_rot = yaw_pitch_quat(self.yaw, 0.0)
        for part, side, phase in ((1, -1.0, 1.0), (2, 1.0, -1.0)):
            ahead = phase * swing + sway * side
            pose[part, 0] = x + right[0] * side * SHOULDER_M + fwd[0] * ahead
            pose[part, 1] = floor + HAND_HEIGHT_M + 0.5 * abs(ahead) * 0.2
            pose[part, 2] = z + right[1] * side * SHOULDER_M + fwd[1] * ahead
            pose[part, 3:] = hand_rot
        return pose


# ---------------------------------------------------------------- the wire body

_BODY: Final = struct.Struct("<3HI3H3B3H3B")
_HALF_SQRT2: Final = 1.0 / math.sqrt(2.0)


def _mm(value: float) -> int:
    return min(65535, max(0, round(value * 1000.0)))


def _smallest_three(q: list[float], bits: int) -> int:
    x, y, z, w = q
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    comps = [x / norm, y / norm, z / norm, w / norm] if norm else [0.0, 0.0, 0.0, 1.0]
    largest = max(range(4), key=lambda i: abs(comps[i]))
    if comps[largest] < 0.0:
        comps = [-c for c in comps]
    steps = (1 << bits) - 1
    packed = largest
    for slot in range(3):
        c = comps[(largest + 1 + slot) % 4]
        level = min(steps, max(0, round((c + _HALF_SQRT2) / (2.0 * _HALF_SQRT2) * steps)))
        packed = (packed << bits) | level
    return packed


def encode_body(pose: Pose, room_min: tuple[float, float, float]) -> bytes:
    """A world-coordinate pose (3, 7) as a 28-byte body, room-local (see metaworld.quant)."""
    ox, oy, oz = room_min
    fields: list[int] = []
    rows: list[list[float]] = pose.tolist()
    for p, bits in zip(rows, (10, 7, 7), strict=True):
        fields += (_mm(p[0] - ox), _mm(p[1] - oy), _mm(p[2] - oz))
        rot = _smallest_three(p[3:], bits)
        if bits == 10:
            fields.append(rot)
        else:
            fields += (rot & 0xFF, (rot >> 8) & 0xFF, (rot >> 16) & 0xFF)
    return _BODY.pack(*fields)

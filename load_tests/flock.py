"""Many walkers at once: the `Walker` motion model over numpy arrays.

`motion.Walker` moves one bot with Python floats, which costs tens of microseconds per
pose: fine for a few hundred bots at a few hertz, too much for 500 bots at 20 Hz on the
cores the server needs. A Flock holds the same state for every bot of a process in
arrays and advances any subset of them in one vectorized step: eased legs between
waypoints in a disc, pauses, a body that turns toward where it walks, a head that looks
about on smooth noise, hands that swing with the stride. Picking a new waypoint (once
per leg, every few seconds per bot) stays scalar and uses `motion`'s own geometry, so
legs never cross furniture or leave the margin inside the walls.
"""

from __future__ import annotations

import math
import random

import numpy as np
import numpy.typing as npt

from load_tests.motion import (
    BOB_M,
    HAND_HEIGHT_M,
    SHOULDER_M,
    STRIDE_M,
    Disc,
    Vec,
    random_point,
    segment_clear,
)
from load_tests.scenario import Motion
from metaworld.layout import Room
from metaworld.world import EYE_HEIGHT_M

Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]
_WAYPOINT_TRIES = 30
_WAVES = 3  # sines summed in one smooth-noise channel


def _yaw_pitch_quats(yaw: Floats, pitch: Floats) -> Floats:
    """(k, 4) quaternions (x, y, z, w): a yaw about +y, then a pitch about local x."""
    sy, cy = np.sin(yaw / 2.0), np.cos(yaw / 2.0)
    sp, cp = np.sin(pitch / 2.0), np.cos(pitch / 2.0)
    return np.stack((cy * sp, sy * cp, -sy * sp, cy * cp), axis=-1)


class Flock:
    """The bodies of `n` bots milling in `disc` of one room, advanced in batches."""

    def __init__(self, room: Room, disc: Disc, motion: Motion, n: int, seed: int) -> None:
        self.room = room
        self.disc = disc
        self.motion = motion
        self.rng = random.Random(seed)
        gen = np.random.default_rng(seed)
        self.xz = np.zeros((n, 2))
        self.leg_start = np.zeros((n, 2))
        self.leg_end = np.zeros((n, 2))
        self.leg_t0 = np.zeros(n)
        self.leg_s = np.ones(n)
        self.walking = np.zeros(n, dtype=bool)  # on a leg now
        self.milling = np.zeros(n, dtype=bool)  # picks a new leg after each pause
        self.pause_until = np.zeros(n)
        self.yaw = gen.uniform(-math.pi, math.pi, n)
        self.stride = np.zeros(n)  # arm swing phase, radians
        self.speed = np.zeros(n)  # recent speed, for the swing amplitude
        self.last_t = np.zeros(n)
        # Smooth noise: head yaw, head pitch, hand sway; each a few slow sines.
        self.freqs = np.stack(
            (
                gen.uniform(0.05, 0.3, (n, _WAVES)),
                gen.uniform(0.05, 0.3, (n, _WAVES)),
                gen.uniform(0.2, 0.5, (n, _WAVES)),
            )
        )
        self.phases = gen.uniform(0.0, 2.0 * math.pi, (3, n, _WAVES))

    def place(self, i: int, xz: Vec, now: float, *, mill: bool) -> None:
        """The server put bot `i` at `xz`: stand there, then mill (when `mill`)."""
        self.xz[i] = xz
        self.walking[i] = False
        self.milling[i] = mill
        self.last_t[i] = now
        self.pause_until[i] = now + self.rng.uniform(*self.motion.pause_s)

    def _wobble(self, channel: int, idx: Indices, t: float) -> Floats:
        waves = np.sin(2.0 * math.pi * self.freqs[channel, idx] * t + self.phases[channel, idx])
        return np.asarray(waves.mean(axis=1))

    def _start_legs(self, idx: Indices, now: float) -> None:
        due = idx[~self.walking[idx] & self.milling[idx] & (self.pause_until[idx] <= now)]
        for i in due.tolist():
            here = (float(self.xz[i, 0]), float(self.xz[i, 1]))
            target = self._pick_waypoint(here)
            if target is None:
                self.pause_until[i] = now + self.rng.uniform(*self.motion.pause_s)
                continue
            peak = self.rng.uniform(*self.motion.speed_mps)
            self.leg_start[i] = here
            self.leg_end[i] = target
            self.leg_t0[i] = now
            # Smoothstep peaks at 1.5 times the mean speed: the leg never exceeds `peak`.
            self.leg_s[i] = 1.5 * math.dist(here, target) / peak
            self.walking[i] = True

    def _pick_waypoint(self, here: Vec) -> Vec | None:
        reach, margin = self.motion.leg_m, self.motion.wall_margin_m
        for _ in range(_WAYPOINT_TRIES):
            p = random_point(self.room, self.disc, margin, self.rng)
            gap = math.dist(p, here)
            if gap > reach:  # keep legs short: part of the way toward the drawn point
                f = reach / gap * self.rng.uniform(0.3, 1.0)
                p = (here[0] + (p[0] - here[0]) * f, here[1] + (p[1] - here[1]) * f)
            if math.dist(p, here) > 0.5 and segment_clear(self.room, here, p, margin):
                return p
        return None

    def advance(self, idx: Indices, now: float) -> Floats:
        """Move bots `idx` on to time `now`; their poses (k, 3, 7) in world coordinates."""
        m = self.motion
        self._start_legs(idx, now)
        dt = np.maximum(now - self.last_t[idx], 0.0)
        self.last_t[idx] = now
        before = self.xz[idx]
        walking = self.walking[idx]
        u = np.clip((now - self.leg_t0[idx]) / self.leg_s[idx], 0.0, 1.0)
        ease = (u * u * (3.0 - 2.0 * u))[:, None]
        start, end = self.leg_start[idx], self.leg_end[idx]
        xz = np.where(walking[:, None], start + (end - start) * ease, before)
        self.xz[idx] = xz
        arrived = idx[walking & (u >= 1.0)]
        self.walking[arrived] = False
        for i in arrived.tolist():
            self.pause_until[i] = now + self.rng.uniform(*m.pause_s)

        step = np.hypot(*(xz - before).T)
        self.stride[idx] += step / STRIDE_M * math.pi
        moving = dt > 0
        rate = np.divide(step, dt, out=np.zeros_like(step), where=moving)
        self.speed[idx] += (rate - self.speed[idx]) * np.minimum(1.0, dt * 4.0)
        # Turn toward the leg's direction (yaw 0 faces -z; positive yaw turns toward -x).
        heading = end - start
        target = np.arctan2(-heading[:, 0], -heading[:, 1])
        off = (target - self.yaw[idx] + math.pi) % (2.0 * math.pi) - math.pi
        limit = math.radians(m.turn_deg_per_s) * dt
        self.yaw[idx] += np.where(walking, np.clip(off, -limit, limit), 0.0)
        return self._poses(idx, now)

    def _poses(self, idx: Indices, t: float) -> Floats:
        m = self.motion
        floor = self.room.bounds.min[1]
        x, z = self.xz[idx, 0], self.xz[idx, 1]
        yaw, stride = self.yaw[idx], self.stride[idx]
        swing_scale = np.minimum(1.0, self.speed[idx] / max(m.speed_mps[1], 1e-6))
        swing = m.hand_swing_m * swing_scale * np.sin(stride)
        sway = 0.02 * self._wobble(2, idx, t)
        fwd = (-np.sin(yaw), -np.cos(yaw))
        right = (np.cos(yaw), -np.sin(yaw))

        poses = np.empty((len(idx), 3, 7))
        head_yaw = yaw + math.radians(m.head_yaw_deg) * self._wobble(0, idx, t)
        head_pitch = np.radians(-5.0 + m.head_pitch_deg * self._wobble(1, idx, t))
        bob = BOB_M * np.abs(np.sin(stride)) * swing_scale
        poses[:, 0, 0] = x
        poses[:, 0, 1] = floor + EYE_HEIGHT_M + bob
        poses[:, 0, 2] = z
        poses[:, 0, 3:] = _yaw_pitch_quats(head_yaw, head_pitch)
        hand_rot = _yaw_pitch_quats(yaw, np.zeros_like(yaw))
        for part, side, phase in ((1, -1.0, 1.0), (2, 1.0, -1.0)):
            ahead = phase * swing + sway * side
            poses[:, part, 0] = x + right[0] * side * SHOULDER_M + fwd[0] * ahead
            poses[:, part, 1] = floor + HAND_HEIGHT_M + 0.1 * np.abs(ahead)
            poses[:, part, 2] = z + right[1] * side * SHOULDER_M + fwd[1] * ahead
            poses[:, part, 3:] = hand_rot
        return poses

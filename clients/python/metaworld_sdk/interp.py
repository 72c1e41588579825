"""Smooth poses for drawing: turn ~20 Hz pose updates into a pose at any display rate.

Theory of operation. Remote poses arrive at the server's tick rate, and less often for
avatars far away. Drawing each pose when it arrives looks like a slide show, so each
avatar keeps a short, time-ordered buffer of poses and is drawn `delay_s` in the past
(RENDER_DELAY_S, two ticks at 20 Hz). At that moment two known poses usually surround
the drawing time: positions are interpolated linearly, orientations by spherical
interpolation along the shorter arc. When the newest pose is older than the drawing
time (a late packet), the motion of the last two poses is continued for at most
`max_extrapolation_s` and then held; before the oldest pose, the oldest is held.

Times are best given in server time (Delta.server_time, or a local time mapped through
`metaworld_sdk.clock.ClockEstimator`), so that network jitter does not become motion
jitter. Everything here is plain numpy; nothing waits or reads a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt

from metaworld import quant

Pose = npt.NDArray[np.float64]  # (3, 7): head, left, right; x y z qx qy qz qw
Quats = npt.NDArray[np.float64]  # (..., 4): x y z w

RENDER_DELAY_S: Final = 0.1  # seconds behind the newest pose that poses are drawn
MAX_EXTRAPOLATION_S: Final = 0.05  # seconds a pose is continued past the newest one
CAPACITY: Final = 16  # poses kept per avatar: 0.8 s at 20 Hz
_NEARLY_PARALLEL: Final = 0.9995  # above this cosine, slerp falls back to normalized lerp


def lerp(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], t: float) -> Quats:
    """a + (b - a) * t; t outside [0, 1] extrapolates."""
    return a + (b - a) * t


def slerp(a: Quats, b: Quats, t: float) -> Quats:
    """Spherical interpolation of unit quaternions (..., 4), along the shorter arc.

    t outside [0, 1] continues the rotation at the same angular rate.
    """
    cos = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(cos < 0.0, -b, b)  # q and -q are the same rotation
    cos = np.abs(cos)
    angle = np.arccos(np.clip(cos, -1.0, 1.0))
    sin = np.sin(angle)
    near = cos > _NEARLY_PARALLEL
    safe_sin = np.where(near, 1.0, sin)
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * angle) / safe_sin)
    wb = np.where(near, t, np.sin(t * angle) / safe_sin)
    out = wa * a + wb * b
    norm = np.linalg.norm(out, axis=-1, keepdims=True)
    return np.asarray(out / np.where(norm == 0.0, 1.0, norm), dtype=np.float64)


def blend(a: Pose, b: Pose, t: float) -> Pose:
    """The pose a fraction t of the way from a to b: lerped positions, slerped rotations."""
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., :3] = lerp(a[..., :3], b[..., :3], t)
    out[..., 3:] = slerp(a[..., 3:], b[..., 3:], t)
    return out


def sample(
    times: npt.NDArray[np.float64],
    poses: npt.NDArray[np.float64],
    at: float,
    *,
    max_extrapolation_s: float = MAX_EXTRAPOLATION_S,
) -> Pose:
    """The pose at time `at` from poses (n, 3, 7) taken at ascending `times` (n,), n >= 1."""
    if len(times) == 0:
        raise ValueError("sample needs at least one pose")
    later = int(np.searchsorted(times, at, side="right"))
    if later == 0:
        return np.array(poses[0])
    if later == len(times):
        ahead = min(at - times[-1], max_extrapolation_s)
        if len(times) < 2 or ahead <= 0.0:
            return np.array(poses[-1])
        span = times[-1] - times[-2]
        return blend(poses[-2], poses[-1], 1.0 + ahead / span)
    before = later - 1
    span = times[later] - times[before]
    return blend(poses[before], poses[later], (at - times[before]) / span)


class PoseBuffer:
    """The recent poses of one avatar, sampled `delay_s` behind the time asked for."""

    def __init__(
        self,
        capacity: int = CAPACITY,
        *,
        delay_s: float = RENDER_DELAY_S,
        max_extrapolation_s: float = MAX_EXTRAPOLATION_S,
    ) -> None:
        if capacity < 2:
            raise ValueError("a pose buffer needs room for two poses to interpolate")
        self.delay_s = delay_s
        self.max_extrapolation_s = max_extrapolation_s
        self._items: deque[tuple[float, Pose]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def newest_time(self) -> float | None:
        return self._items[-1][0] if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def push(self, t: float, pose: Pose) -> bool:
        """Add a pose taken at time t. An older pose than the newest is dropped (False);
        one with the newest's time replaces it (the later message wins)."""
        newest = self.newest_time
        if newest is not None and t < newest:
            return False
        if newest is not None and t == newest:
            self._items.pop()
        self._items.append((t, np.array(pose, dtype=np.float64)))
        return True

    def sample(self, at: float) -> Pose | None:
        """The pose at exactly time `at`, or None when nothing was pushed yet."""
        if not self._items:
            return None
        times = np.fromiter((t for t, _ in self._items), dtype=np.float64)
        poses = np.stack([p for _, p in self._items])
        return sample(times, poses, at, max_extrapolation_s=self.max_extrapolation_s)

    def render(self, now: float) -> Pose | None:
        """The pose to draw at time `now`: the pose at `now - delay_s`."""
        return self.sample(now - self.delay_s)


class ViewInterpolator:
    """Pose buffers for every avatar in a client's view, fed with downlink pose records."""

    def __init__(
        self,
        capacity: int = CAPACITY,
        *,
        delay_s: float = RENDER_DELAY_S,
        max_extrapolation_s: float = MAX_EXTRAPOLATION_S,
    ) -> None:
        self.capacity = capacity
        self.delay_s = delay_s
        self.max_extrapolation_s = max_extrapolation_s
        self.buffers: dict[int, PoseBuffer] = {}

    def push(self, avatar_id: int, t: float, pose: Pose) -> None:
        buffer = self.buffers.get(avatar_id)
        if buffer is None:
            buffer = PoseBuffer(
                self.capacity,
                delay_s=self.delay_s,
                max_extrapolation_s=self.max_extrapolation_s,
            )
            self.buffers[avatar_id] = buffer
        buffer.push(t, pose)

    def push_records(self, t: float, records: bytes, room_min: npt.ArrayLike) -> None:
        """Add the 30-byte pose records of a Snapshot or Delta received for time t."""
        if not records:
            return
        parsed = quant.records_from_bytes(records)
        poses = quant.decode_bodies(parsed["body"])
        poses[:, :, :3] += np.asarray(room_min, dtype=np.float64)
        for avatar_id, pose in zip(parsed["id"].tolist(), poses, strict=True):
            self.push(avatar_id, t, pose)

    def retain(self, avatar_ids: Iterable[int]) -> None:
        """Forget every avatar not in `avatar_ids` (call after a Snapshot or a Delta)."""
        keep = set(avatar_ids)
        for avatar_id in [i for i in self.buffers if i not in keep]:
            del self.buffers[avatar_id]

    def render(self, now: float) -> dict[int, Pose]:
        """Every avatar's pose to draw at time `now`."""
        out: dict[int, Pose] = {}
        for avatar_id, buffer in self.buffers.items():
            pose = buffer.render(now)
            if pose is not None:
                out[avatar_id] = pose
        return out

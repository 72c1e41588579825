"""Interest management: which avatars each client sees, computed for a whole room at once.

Theory of operation. Every tick, for one room, we take the avatars' floor positions
(x, z) and last tick's visible pairs, and produce this tick's visible pairs. A pair
(viewer, target) is a 64-bit key ``viewer << 16 | target`` of avatar ids, so sets of
pairs are sorted int64 arrays and the entered/left changes are one merge of two arrays.

1. Candidates, per viewer: last tick's targets are looked up directly, and newcomers
   are sought in a grid, row by row outwards from the viewer, no farther than the
   radius or, once `cap` candidates are held, than the worst of them; so a dense crowd
   costs about what a sparse one does. This per-viewer loop is compiled
   (`_interest_kernel`, numba, where the details are): in numpy it would have to
   materialize and sort every candidate pair, which at 10,000 avatars is millions.
2. Hysteresis: a pair that was visible last tick has its distance reduced by the margin
   before the tests below. So an avatar enters view at `radius` but leaves only beyond
   `radius + margin`, and a visible avatar keeps its slot under the cap against a
   newcomer that is less than `margin` closer. Nothing flickers at either edge.
3. The cap: per viewer, pairs are ordered by (effective distance, target id) and the
   first `cap` are kept; ties break on the lower id, so results are deterministic.

`brute_force_visible` computes the same rule from a full distance matrix; property tests
hold the two equal. Walls are not modelled here: a room's avatars are only ever compared
with each other, which is what keeps consultation rooms private.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from metaworld import _interest_kernel as _kernel

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

ID_BITS: Final = 16
ID_MASK: Final = (1 << ID_BITS) - 1
_EMPTY_I: Final = np.empty(0, dtype=np.int64)
_EMPTY_F: Final = np.empty(0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class InterestConfig:
    radius: float = 12.0  # metres: an avatar enters view within this distance
    margin: float = 1.5  # metres of hysteresis, for both the radius and the cap
    cap: int = 32  # most avatars one client sees
    near: float = 4.0  # metres (conversation distance): poses go out every tick
    mid: float = 8.0  # metres: poses go out every `mid_every` ticks
    mid_every: int = 2
    far_every: int = 4  # ticks between pose updates for avatars beyond `mid`

    def __post_init__(self) -> None:
        if self.radius <= 0 or self.margin < 0 or self.cap < 0:
            raise ValueError("interest radius > 0, margin >= 0, cap >= 0")
        if self.mid_every < 1 or self.far_every < 1 or self.mid < self.near:
            raise ValueError("interest mid_every >= 1, far_every >= 1, mid >= near")


@dataclass(frozen=True, slots=True)
class Visible:
    """The visible pairs of one room after one tick, sorted by key."""

    keys: IntArray  # viewer << 16 | target, sorted ascending
    dist: FloatArray  # real distance of each pair (not hysteresis-adjusted)

    @staticmethod
    def empty() -> Visible:
        return Visible(_EMPTY_I, _EMPTY_F)

    def viewer_slices(self) -> dict[int, slice]:
        """For each viewer with at least one target, the slice of its pairs."""
        if not len(self.keys):
            return {}
        viewers = self.keys >> ID_BITS
        starts = np.flatnonzero(np.r_[True, viewers[1:] != viewers[:-1]])
        ends = np.r_[starts[1:], len(viewers)]
        return {
            int(v): slice(int(s), int(e))
            for v, s, e in zip(viewers[starts], starts, ends, strict=True)
        }


def pair_keys(viewers: IntArray, targets: IntArray) -> IntArray:
    return (viewers.astype(np.int64) << ID_BITS) | targets.astype(np.int64)


def _member(keys: IntArray, sorted_set: IntArray) -> npt.NDArray[np.bool_]:
    """Which of `keys` occur in the sorted array `sorted_set`."""
    if not len(sorted_set) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    idx = np.searchsorted(sorted_set, keys)
    idx[idx == len(sorted_set)] = 0
    return np.asarray(sorted_set[idx] == keys, dtype=bool)


def _select(
    ids: IntArray,
    i: IntArray,
    j: IntArray,
    d: FloatArray,
    previous: IntArray,
    cfg: InterestConfig,
) -> Visible:
    """Apply hysteresis and the cap to candidate pairs (shared by both methods)."""
    keys = pair_keys(ids[i], ids[j])
    effective = d - cfg.margin * _member(keys, previous)
    ok = effective <= cfg.radius
    keys, effective, d, viewer, target = keys[ok], effective[ok], d[ok], ids[i[ok]], ids[j[ok]]
    order = np.lexsort((target, effective, viewer))
    viewer = viewer[order]
    first_of_group = np.r_[True, viewer[1:] != viewer[:-1]] if len(viewer) else viewer
    pos = np.arange(len(viewer))
    rank = pos - np.maximum.accumulate(np.where(first_of_group, pos, 0))
    kept = order[rank < cfg.cap]
    keys, d = keys[kept], d[kept]
    by_key = np.argsort(keys)
    return Visible(keys[by_key], d[by_key])


def compute_visible(
    ids: IntArray, xz: FloatArray, previous: Visible, cfg: InterestConfig
) -> Visible:
    """This tick's visible pairs for one room (the grid, compiled)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() > ID_MASK):
        raise ValueError(f"avatar ids must lie in 0..{ID_MASK}")
    room = len(ids) * max(min(cfg.cap, len(ids) - 1), 0)
    # One buffer for both outputs: numpy asks for huge pages for big ones, which spares
    # the kernel a page fault for every 4 KiB it writes.
    out = np.empty(2 * room)
    keys, dist = out[:room].view(np.int64), out[room:]
    filled = _kernel.visible_pairs(
        ids,
        np.ascontiguousarray(xz[:, 0], dtype=np.float64),
        np.ascontiguousarray(xz[:, 1], dtype=np.float64),
        np.ascontiguousarray(previous.keys, dtype=np.int64),
        float(cfg.radius),
        float(cfg.margin),
        int(cfg.cap),
        keys,
        dist,
    )
    keys, dist = keys[:filled], dist[:filled]
    if 2 * filled < room:  # do not hold on to a mostly empty buffer
        keys, dist = keys.copy(), dist.copy()
    return Visible(keys, dist)


def brute_force_visible(
    ids: IntArray, xz: FloatArray, previous: Visible, cfg: InterestConfig
) -> Visible:
    """The same rule from a full distance matrix: the reference for tests and benches."""
    n = len(xz)
    grid_i, grid_j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    i, j = grid_i.ravel(), grid_j.ravel()
    dx, dz = xz[i, 0] - xz[j, 0], xz[i, 1] - xz[j, 1]
    d = np.sqrt(dx * dx + dz * dz)
    keep = (i != j) & (d <= cfg.radius + cfg.margin)
    return _select(ids, i[keep], j[keep], d[keep], previous.keys, cfg)


def changes(previous: Visible, current: Visible) -> tuple[IntArray, IntArray]:
    """Pairs that entered and pairs that left view between two ticks."""
    entered, left = _kernel.sorted_differences(current.keys, previous.keys)
    return entered, left


def due_mask(visible: Visible, tick: int, cfg: InterestConfig) -> npt.NDArray[np.bool_]:
    """Which visible pairs get a pose update this tick: near ones always, middle ones
    every `mid_every` ticks, far ones every `far_every` ticks, staggered by target id so
    the load spreads evenly over the ticks."""
    phase = (visible.keys & ID_MASK) + tick
    dist = visible.dist
    every = np.where(dist <= cfg.mid, cfg.mid_every, cfg.far_every)
    return np.asarray((dist <= cfg.near) | (phase % every == 0))

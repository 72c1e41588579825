"""Compiled inner loops of interest management (numba).

Kept apart from `interest.py` so that the rule and its numpy reference read on their own.
Both compute distances as sqrt(dx*dx + dz*dz) in the same order of operations, so the
compiled kernel and the reference agree to the last bit and tests can demand equality.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

_ID_BITS = 16


@numba.njit(cache=True, nogil=True)
def _bisect(keys: Array, lo: int, hi: int, value: int) -> int:
    """First index in keys[lo:hi] whose value is >= `value` (numba's searchsorted on a
    scalar allocates, which dominated the kernel)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _range_of(keys: Array, viewer: int) -> tuple[int, int]:
    lo = _bisect(keys, 0, len(keys), viewer << _ID_BITS)
    return lo, _bisect(keys, lo, len(keys), (viewer + 1) << _ID_BITS)


@numba.njit(cache=True, nogil=True)
def _was_visible(keys: Array, lo: int, hi: int, key: int) -> bool:
    at = _bisect(keys, lo, hi, key)
    return at < hi and keys[at] == key


@numba.njit(cache=True, nogil=True)
def _before(e1: float, t1: int, e2: float, t2: int) -> bool:
    """Selection order: nearer effective distance first, then the lower id."""
    return e1 < e2 or (e1 == e2 and t1 < t2)


@numba.njit(cache=True, nogil=True)
def _sort_candidates(t: Array, d: Array, e: Array, m: int) -> None:
    """Sort the first m candidates in place by (e, t): insertion sort when few (the
    common case, no allocation), argsort when many (dense crowds)."""
    if m <= 48:
        for i in range(1, m):
            ti, di, ei = t[i], d[i], e[i]
            j = i - 1
            while j >= 0 and _before(ei, ti, e[j], t[j]):
                t[j + 1], d[j + 1], e[j + 1] = t[j], d[j], e[j]
                j -= 1
            t[j + 1], d[j + 1], e[j + 1] = ti, di, ei
        return
    by_t = np.argsort(t[:m])
    order = by_t[np.argsort(e[:m][by_t], kind="mergesort")]
    t[:m], d[:m], e[:m] = t[:m][order], d[:m][order], e[:m][order]


@numba.njit(cache=True, nogil=True)
def _sort_by_target(t: Array, d: Array, m: int) -> None:
    for i in range(1, m):
        ti, di = t[i], d[i]
        j = i - 1
        while j >= 0 and t[j] > ti:
            t[j + 1], d[j + 1] = t[j], d[j]
            j -= 1
        t[j + 1], d[j + 1] = ti, di


@numba.njit(cache=True, nogil=True)
def visible_pairs(
    ids: Array,
    x: Array,
    z: Array,
    previous: Array,
    radius: float,
    margin: float,
    cap: int,
) -> tuple[Array, Array]:
    """Visible pairs (sorted keys and distances) for avatars sorted by id."""
    n = len(ids)
    out_keys = np.empty(n * cap, dtype=np.int64)
    out_dist = np.empty(n * cap, dtype=np.float64)
    if n < 2 or cap == 0:
        return out_keys[:0].copy(), out_dist[:0].copy()
    reach = radius + margin
    side = reach * (1.0 + 1e-9) + 1e-9
    cx = np.floor(x / side).astype(np.int64)
    cz = np.floor(z / side).astype(np.int64)
    cx -= cx.min()
    cz -= cz.min()
    width = cz.max() + 3
    cell = (cx + 1) * width + (cz + 1)
    order = np.argsort(cell, kind="mergesort")
    sorted_cell = cell[order]

    cand_t = np.empty(n, dtype=np.int64)
    cand_d = np.empty(n, dtype=np.float64)
    cand_e = np.empty(n, dtype=np.float64)
    filled = 0
    for a in range(n):
        viewer = ids[a]
        lo, hi = _range_of(previous, viewer)
        m = 0
        for dx in (-1, 0, 1):
            for dz in (-1, 0, 1):
                wanted = cell[a] + dx * width + dz
                k = _bisect(sorted_cell, 0, n, wanted)
                while k < n and sorted_cell[k] == wanted:
                    b = order[k]
                    k += 1
                    ddx = x[a] - x[b]
                    ddz = z[a] - z[b]
                    d = math.sqrt(ddx * ddx + ddz * ddz)
                    if b == a or d > reach:
                        continue
                    key = (viewer << _ID_BITS) | ids[b]
                    e = d - margin if (hi > lo and _was_visible(previous, lo, hi, key)) else d
                    if e <= radius:
                        cand_t[m], cand_d[m], cand_e[m] = ids[b], d, e
                        m += 1
        if m > cap:
            _sort_candidates(cand_t, cand_d, cand_e, m)
            m = cap
        _sort_by_target(cand_t, cand_d, m)
        for r in range(m):
            out_keys[filled] = (viewer << _ID_BITS) | cand_t[r]
            out_dist[filled] = cand_d[r]
            filled += 1
    return out_keys[:filled].copy(), out_dist[:filled].copy()


@numba.njit(cache=True, nogil=True)
def sorted_differences(
    a: Array,
    b: Array,
) -> tuple[Array, Array]:
    """(a - b, b - a) for two sorted arrays of unique keys, in one merge pass."""
    only_a = np.empty(len(a), dtype=np.int64)
    only_b = np.empty(len(b), dtype=np.int64)
    i = j = na = nb = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            i += 1
            j += 1
        elif a[i] < b[j]:
            only_a[na] = a[i]
            na += 1
            i += 1
        else:
            only_b[nb] = b[j]
            nb += 1
            j += 1
    while i < len(a):
        only_a[na] = a[i]
        na += 1
        i += 1
    while j < len(b):
        only_b[nb] = b[j]
        nb += 1
        j += 1
    return only_a[:na].copy(), only_b[:nb].copy()

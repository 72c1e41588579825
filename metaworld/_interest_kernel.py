"""Compiled inner loops of interest management (numba).

Kept apart from `interest.py` so that the rule and its numpy reference read on their own.
Both compute distances as sqrt(dx*dx + dz*dz) in the same order of operations, so the
compiled kernel and the reference agree to the last bit and tests can demand equality.

Theory of operation. One call handles one room. A counting sort buckets the avatars
into a dense grid of rows half the radius tall, cut into columns an eighth of the radius
wide, so that any stretch of columns in a row is one contiguous run of avatars: a scan
jumps in memory once per row, and reads little beyond the circle it needs. Viewers go
in id order, so one pointer walks last tick's sorted pairs alongside and the pairs come
out sorted by key. For each viewer:

1. Incumbents first. Last tick's targets are looked up by id and held as candidates at
   their hysteresis-reduced distance, in last tick's order, which is by target. They
   are stamped with the viewer, so that the scan below passes them by.
2. Newcomers. The rows are scanned in order of their nearest point, each clipped to the
   columns that may hold a point within the bar; the first row farther than the bar
   ends the scan. The bar is the radius until `cap` candidates are held, then the
   effective distance of the worst of them, refreshed at the start of each row: when
   incumbents fill the cap, as in a dense crowd, only a few metres around the viewer
   are read. A first pass over a row only tests squared distances and stamps, without
   branches; the few that pass take the square root and the exact test.
3. The cut. Candidates go to a buffer of twice the cap; when it is full, and at the
   end, a quickselect on (effective distance, id) keeps the best `cap` in the order
   they came. This costs less than a heap, which would pay a repair for every offer.
4. Out, sorted by target: incumbents already are, and the newcomers, usually few, are
   insertion-sorted in.

Cell bounds are widened by a hair (`slack`) so that rounding in the cell assignment can
never hide an avatar; the exact tests then decide. Avatars at non-finite positions stay
out of the grid: their distances are never finite, so they see and are seen by nobody,
as in the reference.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

_ID_BITS = 16
_ID_MASK = (1 << _ID_BITS) - 1
_ROWS_PER_RADIUS = 2  # grid rows (along x): each row scanned is a jump in memory
_COLUMNS_PER_RADIUS = 8  # grid columns (along z): finer columns read less beyond the radius
_CELLS_PER_AVATAR = 4  # the grid may grow to this many cells per avatar (plus a floor)
_MIN_CELLS = 4096


@numba.njit(cache=True, nogil=True)
def _grid_shape(
    x: Array, z: Array, radius: float
) -> tuple[float, float, float, float, int, int, int, int, float]:
    """Origin, cell height and width, cell counts, padding (in rows and in columns)
    and rounding slack of the grid that holds the avatars at finite positions."""
    x0 = z0 = math.inf
    x1 = z1 = -math.inf
    placed = 0
    for i in range(len(x)):
        if math.isfinite(x[i]) and math.isfinite(z[i]):
            x0, x1 = min(x0, x[i]), max(x1, x[i])
            z0, z1 = min(z0, z[i]), max(z1, z[i])
            placed += 1
    ex, ez = x1 - x0, z1 - z0
    if placed == 0 or not (ex < 1e300 and ez < 1e300):  # overflow: one cell for all
        return x0, z0, 1e300, 1e300, 1, 1, 3, 3, 0.0
    # A hair over a whole fraction of the radius, so that the last row and column that
    # could only touch the radius exactly are not scanned.
    tall = radius / _ROWS_PER_RADIUS * (1.0 + 1e-6)
    wide = radius / _COLUMNS_PER_RADIUS * (1.0 + 1e-6)
    limit = max(_CELLS_PER_AVATAR * placed, _MIN_CELLS)
    while (ex / tall + 1.0) * (ez / wide + 1.0) > limit:
        tall, wide = 2.0 * tall, 2.0 * wide
    ncx, ncz = int(ex / tall) + 1, int(ez / wide) + 1
    slack = 1e-9 * (ex + ez + radius)
    return x0, z0, tall, wide, ncx, ncz, 3 + int(radius / tall), 3 + int(radius / wide), slack


@numba.njit(cache=True, nogil=True)
def _cell_index(u: float, count: int) -> int:
    """Cell of a coordinate already divided by the side; NaN and overflow go last."""
    return int(u) if u < count - 1 else count - 1


@numba.njit(cache=True, nogil=True)
def _column(u: float, lowest: int, highest: int) -> int:
    """floor(u), kept within [lowest, highest] (also for infinities)."""
    if u >= highest:
        return highest
    return math.floor(u) if u > lowest else lowest


@numba.njit(cache=True, nogil=True)
def _bucket(
    x: Array,
    z: Array,
    x0: float,
    z0: float,
    tall: float,
    wide: float,
    ncx: int,
    ncz: int,
    pad_x: int,
    pad_z: int,
) -> tuple[Array, Array, Array, Array, int]:
    """Counting sort of the avatars by cell. Returns each cell's first position, each
    avatar's position in that order, each position's row and column, and how many are
    placed; avatars at non-finite positions come after all cells."""
    n = len(x)
    width = ncz + 2 * pad_z
    cells = (ncx + 2 * pad_x) * width
    cell = np.full(n, cells, dtype=np.int64)
    start = np.zeros(cells + 2, dtype=np.int64)
    for i in range(n):
        if math.isfinite(x[i]) and math.isfinite(z[i]):
            cx = _cell_index((x[i] - x0) / tall, ncx) + pad_x
            cz = _cell_index((z[i] - z0) / wide, ncz) + pad_z
            cell[i] = cx * width + cz
        start[cell[i] + 1] += 1
    for c in range(cells + 1):
        start[c + 1] += start[c]
    position = np.empty(n, dtype=np.int64)
    row, column = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    fill = start.copy()
    for i in range(n):
        k = fill[cell[i]]
        fill[cell[i]] = k + 1
        position[i] = k
        row[k], column[k] = cell[i] // width, cell[i] % width
    return start[: cells + 1], position, row, column, start[cells]


@numba.njit(cache=True, nogil=True)
def _keep_best(e: Array, t: Array, d: Array, order: Array, m: int, cap: int) -> float:
    """Keep the best `cap` of the m >= cap candidates in slots [0, cap), in the order
    they came, and return the worst kept effective distance: nothing farther can make
    the cut any more. `order` is scratch."""
    if m == cap:
        return float(e[:m].max())
    for i in range(m):
        order[i] = i
    lo, hi, k = 0, m - 1, cap - 1  # quickselect the k-th best slot into order[k]
    while lo < hi:
        mid = order[(lo + hi) >> 1]
        pe, pt = e[mid], t[mid]
        i, j = lo, hi
        while i <= j:
            while e[order[i]] < pe or (e[order[i]] == pe and t[order[i]] < pt):
                i += 1
            while e[order[j]] > pe or (e[order[j]] == pe and t[order[j]] > pt):
                j -= 1
            if i <= j:
                order[i], order[j] = order[j], order[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    worst_e, worst_t = e[order[k]], t[order[k]]
    kept = 0
    for i in range(m):
        if e[i] < worst_e or (e[i] == worst_e and t[i] <= worst_t):
            e[kept], t[kept], d[kept] = e[i], t[i], d[i]
            kept += 1
    return float(worst_e)


@numba.njit(cache=True, nogil=True)
def visible_pairs(  # noqa: PLR0915 - one loop on purpose, see below
    ids: Array,
    x: Array,
    z: Array,
    previous: Array,
    radius: float,
    margin: float,
    cap: int,
    out_keys: Array,
    out_dist: Array,
) -> int:
    """Write the visible pairs of one room (`ids` in any order) to `out_keys` and
    `out_dist`, sorted by key, and return how many there are. Both must have room for
    `len(ids) * min(cap, len(ids) - 1)` pairs.

    The per-viewer steps are written out in this one loop on purpose. Numba passes an
    array as seven machine words and counts a reference, atomically, for each array a
    function hands on to another; split into functions, the steps ran a third slower.
    """
    n = len(ids)
    cap = min(cap, n - 1)
    if cap <= 0:
        return 0
    if min(len(out_keys), len(out_dist)) < n * cap:
        raise ValueError("no room for the visible pairs")
    reach = radius + margin
    x0, z0, tall, wide, ncx, ncz, pad_x, pad_z, slack = _grid_shape(x, z, radius)
    start, position, row_of, column_of, placed = _bucket(
        x, z, x0, z0, tall, wide, ncx, ncz, pad_x, pad_z
    )
    width = ncz + 2 * pad_z
    top = ids.max() + 1
    xs, zs = np.empty(n), np.empty(n)  # coordinates and id by position
    ts = np.empty(n, dtype=np.int64)
    at_of = np.full(top, n, dtype=np.int64)  # position by id; n: not in the room
    for i in range(n):
        k = position[i]
        if at_of[ids[i]] != n:
            raise ValueError("avatar ids in a room must be unique")
        xs[k], zs[k], ts[k], at_of[ids[i]] = x[i], z[i], ids[i], k

    full_span = np.empty(pad_x + 1, dtype=np.int64)  # columns each side at the radius,
    for rows in range(pad_x + 1):  # by how many rows away
        near = 0.0 if rows <= 1 else (rows - 1) * tall
        half = math.sqrt(max((radius + slack) ** 2 - near * near, 0.0)) / wide
        full_span[rows] = 1 + int(half) if half < pad_z - 1 else pad_z

    stamp = np.zeros(n + 1, dtype=np.int64)  # = viewer id + 1 once offered to that viewer
    found = np.empty(n, dtype=np.int64)  # positions that passed the scan's first test
    room = 2 * cap  # candidates held before the worst are dropped
    e, d = np.empty(room), np.empty(room)  # effective and real distance,
    t = np.empty(room, dtype=np.int64)  # and target id, of each candidate
    order = np.empty(room, dtype=np.int64)
    filled = p = 0
    for viewer in range(top):
        a = at_of[viewer]
        if a == n:
            continue
        while p < len(previous) and previous[p] < viewer << _ID_BITS:
            p += 1
        xa, za = xs[a], zs[a]
        mark = viewer + 1
        stamp[a] = mark
        m = 0

        # 1. Incumbents, in last tick's order (by target), at their hysteresis-reduced
        # distance; stamped so that the scan passes them by.
        while p < len(previous) and previous[p] < (viewer + 1) << _ID_BITS:
            target = previous[p] & _ID_MASK
            p += 1
            b = at_of[target] if target < top else n
            if b in (n, a):  # no longer in the room, or the viewer itself
                continue
            stamp[b] = mark
            ddx, ddz = xa - xs[b], za - zs[b]
            dist = math.sqrt(ddx * ddx + ddz * ddz)
            if dist <= reach and dist - margin <= radius:
                e[m], t[m], d[m] = dist - margin, target, dist
                m += 1
                if m == room:
                    _keep_best(e, t, d, order, m, cap)
                    m = cap
        incumbents = m

        # 2. Newcomers, row by row in order of the rows' nearest point, each row
        # clipped to the columns that can hold a point near enough to make the cut:
        # one within the radius, and once `cap` are held, one no farther than the
        # worst of them (`bar`, refreshed at the start of each row).
        bar, tight = radius, False
        home, column, near = row_of[a], column_of[a], 0.0
        row = home
        up, down = home + 1, home - 1
        for _ in range(2 * pad_x + 1 if a < placed else 0):
            if m == cap and not tight:
                bar = e[0]
                for i in range(1, m):
                    bar = max(bar, e[i])
                tight = True
            elif m > cap:
                bar = _keep_best(e, t, d, order, m, cap)
                m, tight = cap, True
            bound = bar + slack
            if near > bound:
                break
            if tight:  # the exact columns pay off once the bar is short
                half = math.sqrt(bound * bound - max(near, 0.0) ** 2) + slack
                lo = _column((za - half - z0) / wide, -pad_z, ncz - 1 + pad_z) + pad_z
                hi = _column((za + half - z0) / wide, -pad_z, ncz - 1 + pad_z) + pad_z
            else:
                span = full_span[abs(row - home)]
                lo, hi = column - span, column + span
            screen = bar * bar * (1.0 + 1e-12)
            # Without branches, so no mispredictions: most avatars read are either
            # incumbents or too far, in no predictable order.
            hits = 0
            for k in range(start[row * width + lo], start[row * width + hi + 1]):
                ddx, ddz = xa - xs[k], za - zs[k]
                found[hits] = k
                hits += (ddx * ddx + ddz * ddz <= screen) & (stamp[k] != mark)
            for h in range(hits):
                k = found[h]
                ddx, ddz = xa - xs[k], za - zs[k]
                dist = math.sqrt(ddx * ddx + ddz * ddz)
                if dist > bar:
                    continue
                e[m], t[m], d[m] = dist, ts[k], dist
                m += 1
                tight = False
                if m == room:
                    bar = _keep_best(e, t, d, order, m, cap)
                    m, tight = cap, True
                    screen = bar * bar * (1.0 + 1e-12)

            # The next row: the nearer of the next one up and down, or while the bar is
            # the radius, alternately, with a bound of its distance that costs less.
            if tight:
                above = x0 + (up - pad_x) * tall - xa
                below = xa - (x0 + (down + 1 - pad_x) * tall)
                upward = above <= below
                near = above if upward else below
            else:
                upward = up - home < home - down
                near = max((up - home if upward else home - down) - 1, 0) * tall
            if upward:
                row, up = up, up + 1
            else:
                row, down = down, down - 1
            if abs(row - home) >= pad_x:  # past the padding: only absurd coordinates
                near = math.inf
        if m > cap:
            _keep_best(e, t, d, order, m, cap)
            m = cap

        # 3. Out, sorted by target. The incumbents come first and sorted, so an
        # insertion sort moves only the newcomers; it beats the library's sort on all
        # but long lists of newcomers.
        base = viewer << _ID_BITS
        ordered = True
        for i in range(1, m):
            ordered &= t[i - 1] < t[i]
        if ordered:
            for i in range(m):
                out_keys[filled], out_dist[filled] = base | t[i], d[i]
                filled += 1
            continue
        for i in range(m):
            order[i] = t[i] << _ID_BITS | i
        if m - incumbents > 64:
            order[:m].sort()
        for i in range(1, m):
            key = order[i]
            j = i
            while j > 0 and order[j - 1] > key:
                order[j] = order[j - 1]
                j -= 1
            order[j] = key
        for i in range(m):
            out_keys[filled] = base | order[i] >> _ID_BITS
            out_dist[filled] = d[order[i] & _ID_MASK]
            filled += 1
    return filled


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

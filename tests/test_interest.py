"""The grid must give exactly what the brute-force reference gives, tick after tick."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaworld.interest import (
    ID_BITS,
    ID_MASK,
    InterestConfig,
    Visible,
    brute_force_visible,
    changes,
    compute_visible,
    due_mask,
)

CFG = InterestConfig(radius=5.0, margin=1.0, cap=6, near=2.0, mid=3.0, mid_every=2, far_every=3)


def run_both(ids, frames, cfg=CFG):
    """Run several ticks through both methods and check every tick agrees."""
    grid, brute = Visible.empty(), Visible.empty()
    for xz in frames:
        new_grid = compute_visible(ids, xz, grid, cfg)
        new_brute = brute_force_visible(ids, xz, brute, cfg)
        assert np.array_equal(new_grid.keys, new_brute.keys)
        assert np.array_equal(new_grid.dist, new_brute.dist)
        for a, b in zip(changes(grid, new_grid), changes(brute, new_brute), strict=True):
            assert np.array_equal(a, b)
        grid, brute = new_grid, new_brute
    return grid


coords = st.floats(-40, 40, allow_nan=False, allow_infinity=False)
crowds = st.integers(0, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.tuples(coords, coords), min_size=n, max_size=n),
        st.lists(st.tuples(coords, coords), min_size=n, max_size=n),
    )
)


@settings(max_examples=400, deadline=None)
@given(crowds)
def test_grid_equals_brute_force_on_random_crowds(crowd):
    first, second = (np.array(c, dtype=float).reshape(-1, 2) for c in crowd)
    ids = np.arange(1, len(first) + 1, dtype=np.int64) * 7
    run_both(ids, [first, (first + second) / 2, second])


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**32 - 1))
def test_grid_equals_brute_force_on_lattices_and_cell_borders(n, seed):
    rng = np.random.default_rng(seed)
    reach = CFG.radius + CFG.margin
    # Points exactly on cell borders and exactly `reach` apart.
    xz = rng.integers(-4, 5, (n, 2)).astype(float) * reach
    run_both(np.arange(n, dtype=np.int64), [xz, xz + rng.choice([0, reach / 2], (n, 2))])


def test_thousands_of_random_crowds_match():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        n = int(rng.integers(0, 80))
        spread = rng.choice([3.0, 15.0, 60.0])
        base = rng.uniform(0, spread, (n, 2))
        if rng.random() < 0.2 and n:  # clustered: many on the very same spot
            base[: n // 2] = base[0]
        step = rng.normal(0, 0.8, (n, 2))
        ids = rng.choice(60000, n, replace=False).astype(np.int64)
        run_both(ids, [base, base + step, base + 2 * step])


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_lonely_rooms_see_nothing(n):
    visible = compute_visible(np.arange(n), np.zeros((n, 2)), Visible.empty(), CFG)
    assert len(visible.keys) == 0


def test_same_position_everyone_sees_capped_lowest_ids():
    ids = np.arange(1, 21, dtype=np.int64)
    visible = compute_visible(ids, np.zeros((20, 2)), Visible.empty(), CFG)
    viewers = visible.keys >> ID_BITS
    for viewer in ids:
        targets = visible.keys[viewers == viewer] & ID_MASK
        assert len(targets) == CFG.cap
        assert list(targets) == [t for t in ids if t != viewer][: CFG.cap]


def test_hysteresis_keeps_an_avatar_at_the_edge_in_view():
    ids = np.array([1, 2])
    near = np.array([[0.0, 0.0], [4.9, 0.0]])
    edge = np.array([[0.0, 0.0], [5.5, 0.0]])  # beyond radius, within radius + margin
    far = np.array([[0.0, 0.0], [6.1, 0.0]])
    seen = compute_visible(ids, near, Visible.empty(), CFG)
    assert len(seen.keys) == 2
    kept = compute_visible(ids, edge, seen, CFG)
    assert len(kept.keys) == 2
    assert len(compute_visible(ids, edge, Visible.empty(), CFG).keys) == 0  # would not enter
    assert len(compute_visible(ids, far, kept, CFG).keys) == 0


def test_hysteresis_on_the_cap_keeps_the_incumbent():
    cfg = InterestConfig(radius=10.0, margin=1.0, cap=1)
    ids = np.array([1, 2, 3])
    before = np.array([[0.0, 0.0], [3.0, 0.0], [3.5, 0.0]])
    first = compute_visible(ids, before, Visible.empty(), cfg)
    assert (1 << ID_BITS | 2) in first.keys
    after = np.array([[0.0, 0.0], [3.0, 0.0], [2.5, 0.0]])  # 3 is now closer, by < margin
    second = compute_visible(ids, after, first, cfg)
    assert (1 << ID_BITS | 2) in second.keys and (1 << ID_BITS | 3) not in second.keys


def test_farther_avatars_update_at_reduced_rates():
    ids = np.array([1, 2, 3, 4])
    xz = np.array([[0.0, 0.0], [1.0, 0.0], [2.5, 0.0], [4.0, 0.0]])
    visible = compute_visible(ids, xz, Visible.empty(), CFG)
    near, mid, far = (1 << ID_BITS | i for i in (2, 3, 4))
    sent = {near: 0, mid: 0, far: 0}
    for tick in range(30):
        due = visible.keys[due_mask(visible, tick, CFG)]
        for key in sent:
            sent[key] += key in due
    assert sent == {near: 30, mid: 15, far: 10}


def test_tiers_must_nest():
    with pytest.raises(ValueError, match="mid >= near"):
        InterestConfig(near=5.0, mid=4.0)


def test_viewer_slices_cover_every_pair():
    rng = np.random.default_rng(3)
    ids = np.arange(50, dtype=np.int64)
    visible = compute_visible(ids, rng.uniform(0, 10, (50, 2)), Visible.empty(), CFG)
    slices = visible.viewer_slices()
    assert sum(s.stop - s.start for s in slices.values()) == len(visible.keys)
    for viewer, part in slices.items():
        assert np.all(visible.keys[part] >> ID_BITS == viewer)


DENSE = InterestConfig(radius=12.0, margin=1.5, cap=32)


@pytest.mark.parametrize("cfg", [CFG, DENSE])
def test_dense_crowds_match(cfg):
    """Hundreds within the radius, so the cap, the bar and the cut do all the work."""
    rng = np.random.default_rng(11)
    for _ in range(6):
        n = int(rng.integers(100, 400))
        base = rng.normal(0, rng.choice([1.0, 4.0, 10.0]), (n, 2))
        base[: n // 5] = base[0]  # a knot of avatars on one spot
        ids = rng.choice(65536, n, replace=False).astype(np.int64)
        frames = [base]
        for step in (0.05, 0.5, 3.0):
            frames.append(frames[-1] + rng.normal(0, step, (n, 2)))
        run_both(ids, frames, cfg)


def test_first_tick_and_big_caps_match():
    rng = np.random.default_rng(12)
    for cap in (1, 2, 70, 1000):
        cfg = InterestConfig(radius=6.0, margin=1.0, cap=cap)
        xz = rng.normal(0, 3.0, (150, 2))
        run_both(np.arange(150, dtype=np.int64), [xz, xz + rng.normal(0, 0.3, xz.shape)], cfg)


def test_far_flung_and_non_finite_positions_match():
    """A spread too wide for a fine grid, and positions a broken client might send."""
    rng = np.random.default_rng(13)
    odd = [np.nan, np.inf, -np.inf, 1e300, -1e300, 1e15, -3e14]
    for _ in range(30):
        n = int(rng.integers(2, 60))
        xz = rng.uniform(-20, 20, (n, 2))
        xz[rng.random((n, 2)) < 0.15] = rng.choice(odd)
        ids = rng.choice(2000, n, replace=False).astype(np.int64)
        with np.errstate(invalid="ignore", over="ignore"):
            run_both(ids, [xz, xz + rng.normal(0, 1.0, (n, 2))])


def test_previous_may_name_avatars_that_left():
    rng = np.random.default_rng(14)
    ids = np.arange(1, 81, dtype=np.int64)
    xz = rng.uniform(0, 15, (80, 2))
    before = compute_visible(ids, xz, Visible.empty(), CFG)
    stay = rng.random(80) < 0.6
    after = brute_force_visible(ids[stay], xz[stay], before, CFG)
    now = compute_visible(ids[stay], xz[stay], before, CFG)
    assert np.array_equal(now.keys, after.keys)
    assert np.array_equal(now.dist, after.dist)


def test_bad_ids_are_refused():
    with pytest.raises(ValueError, match="unique"):
        compute_visible(np.array([3, 5, 3]), np.zeros((3, 2)), Visible.empty(), CFG)
    with pytest.raises(ValueError, match="lie in"):
        compute_visible(np.array([1, 1 << ID_BITS]), np.zeros((2, 2)), Visible.empty(), CFG)

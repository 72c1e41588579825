"""Benchmarks of the server's hot paths, run by `make bench`:

    .venv/bin/python -m load_tests.bench [--quick] [--only interest,wire,replication,ledger]

1. Interest management, one tick = avatars move a little, then this tick's visible pairs
   and the entered/left changes are computed from last tick's: metaworld's grid
   (`compute_visible` + `changes`) against a scipy cKDTree pipeline that applies the same
   cap and hysteresis rule (and is checked to give the same pairs), and against the
   brute-force reference at 1,000 avatars.
2. Bytes on the wire per avatar update, from a real encoded Delta of 32 records.
3. Per-client message assembly: `Replicator.step` on a World with N avatars in the
   training theatre, divided by N.
4. The audit ledger's append throughput (load_tests.bench_ledger), when it is present.

The crowds (both with the default view: radius 12 m, margin 1.5 m, cap 32):

- uniform: avatars spread evenly over a square at 0.088 per m2, so an avatar has about
  40 others within the 12 m radius (1,000 avatars: 106 m square; 10,000: 336 m).
- clustered: groups of 40 standing close together (a Gaussian of 2.5 m around the
  group's centre), the centres spread evenly over the same square: about 40 group-mates
  within a few metres plus the neighbouring groups, 60 to 100 within the radius.

The printed "within radius" column is measured on the generated crowd. Times are CPU
time of the process (the timed code is single-threaded), medians over the ticks.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from metaworld import protocol, quant
from metaworld.interest import (
    ID_BITS,
    InterestConfig,
    Visible,
    brute_force_visible,
    changes,
    compute_visible,
)
from metaworld.layout import load_layout
from metaworld.replication import Replicator
from metaworld.world import World, standing_pose

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

CONFIG: Final = InterestConfig()
UNIFORM_DENSITY: Final = 40.0 / (math.pi * CONFIG.radius**2)  # avatars per m2
GROUP_SIZE: Final = 40
GROUP_SIGMA_M: Final = 2.5
STEP_SIGMA_M: Final = 0.05  # per tick: about walking pace at 20 Hz

# Timings are CPU time of this process, not wall time: on a shared machine wall time
# counts other programs' turns too, while everything timed here runs on one thread.
_clock = time.process_time


# ---------------------------------------------------------------- crowds


def crowd(kind: str, n: int, rng: np.random.Generator) -> FloatArray:
    side = math.sqrt(n / UNIFORM_DENSITY)
    if kind == "uniform":
        return rng.uniform(0.0, side, (n, 2))
    centres = rng.uniform(0.0, side, (math.ceil(n / GROUP_SIZE), 2))
    group = np.arange(n) // GROUP_SIZE
    return centres[group] + rng.normal(0.0, GROUP_SIGMA_M, (n, 2))


def neighbours_within(xz: FloatArray, radius: float) -> float:
    from scipy.spatial import cKDTree

    pairs = cKDTree(xz).query_pairs(radius, output_type="ndarray")
    return 2.0 * len(pairs) / len(xz)


# ---------------------------------------------------------------- the cKDTree pipeline


def _in_sorted(keys: IntArray, sorted_keys: IntArray) -> npt.NDArray[np.bool_]:
    if not len(sorted_keys) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    at = np.searchsorted(sorted_keys, keys)
    at[at == len(sorted_keys)] = 0
    return np.asarray(sorted_keys[at] == keys)


def kdtree_visible(
    ids: IntArray, xz: FloatArray, previous: Visible, cfg: InterestConfig
) -> Visible:
    """The visible pairs by cKDTree.query_pairs, with the same hysteresis and cap rule.

    Candidates are unordered pairs within reach; both directions are expanded, the
    distance recomputed as the grid does (sqrt of dx*dx + dz*dz, so the two agree to the
    bit), incumbents get the margin off, and each viewer keeps its best `cap` by
    (effective distance, target id), all in numpy without a Python loop."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(xz).query_pairs(cfg.radius + cfg.margin, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    dx, dz = xz[i, 0] - xz[j, 0], xz[i, 1] - xz[j, 1]
    d = np.sqrt(dx * dx + dz * dz)
    viewer, target = ids[i], ids[j]
    keys = (viewer << ID_BITS) | target
    effective = d - cfg.margin * _in_sorted(keys, previous.keys)
    ok = effective <= cfg.radius
    keys, d, effective, viewer, target = keys[ok], d[ok], effective[ok], viewer[ok], target[ok]

    order = np.lexsort((target, effective, viewer))
    ranked = viewer[order]
    rank = np.arange(len(ranked)) - np.searchsorted(ranked, ranked, side="left")
    kept = order[rank < cfg.cap]
    by_key = np.argsort(keys[kept])
    return Visible(keys[kept][by_key], d[kept][by_key])


def kdtree_changes(previous: Visible, current: Visible) -> tuple[IntArray, IntArray]:
    entered = current.keys[~_in_sorted(current.keys, previous.keys)]
    left = previous.keys[~_in_sorted(previous.keys, current.keys)]
    return entered, left


# ---------------------------------------------------------------- 1. interest

Method = Callable[[IntArray, FloatArray, Visible, InterestConfig], Visible]
Changes = Callable[[Visible, Visible], tuple[IntArray, IntArray]]


@dataclass
class Timed:
    name: str
    visible: Method
    changes: Changes
    state: Visible
    seconds: list[float]


def bench_interest(n: int, kind: str, ticks: int, brute: bool, seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    xz = crowd(kind, n, rng)
    ids = rng.permutation(np.arange(1, n + 1, dtype=np.int64))
    methods = [
        Timed("ours", compute_visible, changes, Visible.empty(), []),
        Timed("ckdtree", kdtree_visible, kdtree_changes, Visible.empty(), []),
    ]
    if brute:
        methods.append(Timed("brute", brute_force_visible, changes, Visible.empty(), []))
    for m in methods:  # a first tick from nothing (and numba's first call) is not timed
        m.state = m.visible(ids, xz, m.state, CONFIG)
    mismatches = 0
    for _ in range(ticks):
        xz = xz + rng.normal(0.0, STEP_SIGMA_M, xz.shape)
        results = []
        for m in methods:
            started = _clock()
            current = m.visible(ids, xz, m.state, CONFIG)
            entered, left = m.changes(m.state, current)
            m.seconds.append(_clock() - started)
            m.state = current
            results.append((current, entered, left))
        ours = results[0]
        for other in results[1:]:
            same = all(np.array_equal(a, b) for a, b in zip(ours[1:], other[1:], strict=True))
            same = same and np.array_equal(ours[0].keys, other[0].keys)
            mismatches += not (same and np.array_equal(ours[0].dist, other[0].dist))
    row: dict[str, Any] = {
        "crowd": kind,
        "avatars": n,
        "within_radius": round(neighbours_within(xz, CONFIG.radius), 1),
        "visible_per_avatar": round(len(methods[0].state.keys) / n, 1),
        "ticks": ticks,
        "mismatched_ticks": mismatches,
    }
    for m in methods:
        row[f"{m.name}_ms"] = round(float(np.median(m.seconds)) * 1000.0, 3)
    row["ckdtree_over_ours"] = round(row["ckdtree_ms"] / row["ours_ms"], 2)
    return row


def interest_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'crowd':<10} {'avatars':>7} {'within r':>8} {'visible':>7} {'ours ms':>8} "
        f"{'cKDTree ms':>10} {'brute ms':>9} {'cKDTree/ours':>12}  same"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        brute = f"{r['brute_ms']:9.2f}" if "brute_ms" in r else f"{'-':>9}"
        same = "yes" if not r["mismatched_ticks"] else f"NO ({r['mismatched_ticks']} ticks)"
        lines.append(
            f"{r['crowd']:<10} {r['avatars']:>7,} {r['within_radius']:>8.1f} "
            f"{r['visible_per_avatar']:>7.1f} {r['ours_ms']:>8.2f} {r['ckdtree_ms']:>10.2f} "
            f"{brute} {r['ckdtree_over_ours']:>12.2f}  {same}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- 2. wire


def bench_wire(rng: np.random.Generator) -> dict[str, Any]:
    """Sizes of real encoded messages. WebSocket framing adds 2 bytes to a server frame
    under 126 bytes and 4 bytes up to 64 KiB (server frames are not masked); client
    frames add 4 more for the mask."""
    records = rng.integers(0, 256, (32, quant.RECORD_SIZE), dtype=np.uint8).tobytes()
    infos = [protocol.AvatarInfo(1000 + k, "trainee", f"Trainee {k}") for k in range(4)]
    steady = protocol.Delta(tick=123_456, server_time=4567.891, entered=[], left=[], poses=records)
    churn = protocol.Delta(
        tick=123_456, server_time=4567.891, entered=infos, left=[7, 8, 9, 10], poses=records
    )
    pose = protocol.Pose(epoch=3, body=records[2:30], seq=98_765)
    size, churn_size, up = (len(protocol.encode(m)) for m in (steady, churn, pose))
    return {
        "delta_32_bytes": size,
        "delta_32_bytes_per_avatar": round((size + 4) / 32, 2),
        "delta_32_with_4_entered_4_left_bytes": churn_size,
        "pose_uplink_bytes": up,
        "pose_uplink_frame_bytes": up + 6,
        "record_bytes": quant.RECORD_SIZE,
    }


def bench_pose_validation(rng: np.random.Generator, ticks: int = 40) -> dict[str, Any]:
    """CPU time per pose of `World.apply_poses`, the server's check of a tick's client
    poses in one batch (decoding the bodies, then walls, height, speed and reach), for
    500 avatars; and of decoding one body on its own, for comparison."""
    world, ids = training_world(500, rng)
    bodies = [world.body_of(int(i)) for i in ids]
    now = 2000.0
    started = _clock()
    for _ in range(ticks):
        now += 0.05
        batch = [(int(i), world.avatars[int(i)].epoch, b) for i, b in zip(ids, bodies, strict=True)]
        world.apply_poses(batch, now)
    apply_s = (_clock() - started) / (ticks * len(ids))
    poses = 2000
    started = _clock()
    for k in range(poses):
        quant.decode_bodies(quant.body_from_bytes(bodies[k % len(ids)]))
    decode_s = (_clock() - started) / poses
    return {
        "apply_pose_us": round(apply_s * 1e6, 1),
        "decode_one_body_us": round(decode_s * 1e6, 1),
    }


# ---------------------------------------------------------------- 3. replication


def training_world(n: int, rng: np.random.Generator) -> tuple[World, IntArray]:
    """N avatars in the training theatre, packed as the crowded-room scenario packs them."""
    world = World(load_layout(), b"bench")
    room = world.rooms["training"]
    radius = min(22.0, max(3.0, math.sqrt(n / (math.pi * 0.25))))
    ids = []
    for k in range(n):
        avatar = world.spawn(f"bench-{k}", "trainee", None, 0.0)
        world.join_room(avatar.id, room.id, 0.0)
        r, angle = radius * math.sqrt(rng.random()), rng.uniform(0.0, 2.0 * math.pi)
        x, z = 24.0 + r * math.cos(angle), 54.0 + r * math.sin(angle)
        _teleport(world, avatar.id, x, z)
        local = standing_pose(x, z, 0.0)
        local[:, :3] -= room.bounds.min
        body = quant.encode_bodies(local[None]).tobytes()
        assert world.apply_pose(avatar.id, avatar.epoch, body, 1000.0) is None
        ids.append(avatar.id)
    return world, np.array(ids, dtype=np.int64)


def _teleport(world: World, avatar_id: int, x: float, z: float) -> None:
    """Point-and-teleport there in hops the world accepts (each under 12 m)."""
    for _ in range(20):
        head = world.poses[avatar_id, 0]
        gap = math.hypot(x - head[0], z - head[2])
        if gap < 1e-3:
            return
        f = min(1.0, 10.0 / gap)
        placed = world.move_to(
            avatar_id, head[0] + (x - head[0]) * f, head[2] + (z - head[2]) * f, 0.0
        )
        assert placed.accepted, placed.reason
    raise AssertionError(f"could not reach ({x:.1f}, {z:.1f})")


def bench_replication(n: int, ticks: int, rng: np.random.Generator) -> dict[str, Any]:
    world, ids = training_world(n, rng)
    replicator = Replicator(world, CONFIG)
    now = 1000.0
    step_s, interest_s, sent = [], [], 0
    previous = Visible.empty()
    for tick in range(ticks + 3):
        # Walking in place of real poses: the replicator reads world.poses directly.
        world.poses[ids, 0, 0] += rng.normal(0.0, STEP_SIGMA_M, n)
        world.poses[ids, 0, 2] += rng.normal(0.0, STEP_SIGMA_M, n)
        now += 0.05
        started = _clock()
        out = replicator.step(now)
        elapsed = _clock() - started
        xz = world.poses[ids, 0][:, [0, 2]]
        started = _clock()
        current = compute_visible(ids, xz, previous, CONFIG)
        changes(previous, current)
        interest = _clock() - started
        previous = current
        if tick >= 3:
            step_s.append(elapsed)
            interest_s.append(interest)
            sent += sum(len(o.data) for o in out.values())
    step_ms = float(np.median(step_s)) * 1000.0
    return {
        "avatars": n,
        "step_ms": round(step_ms, 3),
        "interest_ms": round(float(np.median(interest_s)) * 1000.0, 3),
        "us_per_client": round(step_ms * 1000.0 / n, 1),
        "bytes_per_client_per_tick": round(sent / ticks / n, 1),
    }


# ---------------------------------------------------------------- 4. ledger


@contextlib.contextmanager
def _argv(args: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        yield
    finally:
        sys.argv = saved


def bench_ledger(entries: int) -> bool:
    """Run the ledger bench if it (and the ledger) are there; False when skipped."""
    try:
        from load_tests import bench_ledger as ledger
    except ImportError as exc:
        print(f"ledger bench skipped: {exc}")
        return False
    run = getattr(ledger, "main", None)
    if not callable(run):
        print("ledger bench skipped: load_tests.bench_ledger has no main()")
        return False
    with _argv(["--entries", str(entries)]):
        run()
    return True


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer ticks, for a smoke run")
    parser.add_argument(
        "--only", default="interest,wire,replication,ledger", help="comma-separated parts"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    if "interest" in parts:
        print(
            "Interest management, CPU ms per tick (median); same: cKDTree and brute agree with ours"
        )
        rows = []
        for n, kind in (
            (1000, "uniform"),
            (1000, "clustered"),
            (10_000, "uniform"),
            (10_000, "clustered"),
        ):
            ticks = (5 if args.quick else 15) if n <= 1000 else (3 if args.quick else 6)
            rows.append(bench_interest(n, kind, ticks, brute=n <= 1000, seed=args.seed))
        print(interest_table(rows))
        print()

    if "wire" in parts:
        wire = bench_wire(rng)
        print(
            f"Wire: a Delta with 32 pose records is {wire['delta_32_bytes']} bytes, "
            f"{wire['delta_32_bytes_per_avatar']} bytes per avatar with WebSocket framing "
            f"(a record is {wire['record_bytes']}); with 4 entered and 4 left it is "
            f"{wire['delta_32_with_4_entered_4_left_bytes']} bytes. A pose uplink message "
            f"is {wire['pose_uplink_bytes']} bytes ({wire['pose_uplink_frame_bytes']} framed)."
        )
        print()

    if "wire" in parts:
        check = bench_pose_validation(rng)
        print(
            f"Pose validation: World.apply_poses takes {check['apply_pose_us']} us of CPU per "
            f"pose in a tick's batch of 500 (decoding one body alone takes "
            f"{check['decode_one_body_us']} us); at 20 Hz that is "
            f"{check['apply_pose_us'] * 20 / 1000:.2f} ms per client-second."
        )
        print()

    if "replication" in parts:
        print("Replication: Replicator.step with N avatars in the training theatre")
        print(f"{'avatars':>7} {'step ms':>8} {'interest ms':>11} {'us/client':>9} {'B/client':>8}")
        for n in (100, 300, 600):
            r = bench_replication(n, 5 if args.quick else 20, rng)
            print(
                f"{r['avatars']:>7} {r['step_ms']:>8.2f} {r['interest_ms']:>11.2f} "
                f"{r['us_per_client']:>9.1f} {r['bytes_per_client_per_tick']:>8.0f}"
            )
        print()

    if "ledger" in parts:
        bench_ledger(1000 if args.quick else 5000)
        print()

    print(f"bench took {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

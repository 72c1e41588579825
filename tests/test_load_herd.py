"""The herd driver: vectorized motion that obeys the server's rules, and a real run."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from test_load_motion import check_pose, motions

from load_tests.cli import main
from load_tests.endtoend import BOTS_NICE
from load_tests.flock import Flock
from load_tests.herd import Herd
from load_tests.motion import Disc, random_point
from load_tests.scenario import load_scenario
from load_tests.swarm import SwarmConfig
from metaworld import quant
from metaworld.layout import load_layout

LAYOUT = load_layout()
BOTS = [str(Path(sys.executable).parent / "metaworld"), "bots"]
ROOMS = {room.id: room for room in LAYOUT.rooms}


@settings(max_examples=40, deadline=None)
@given(
    room_id=st.sampled_from(sorted(ROOMS)),
    motion=motions,
    dts=st.lists(st.floats(0.001, 0.3), min_size=30, max_size=200),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_flock_mills_within_the_rules(room_id, motion, dts, seed):
    room = ROOMS[room_id]
    rng = random.Random(seed)
    n = 6
    centre = random_point(room, None, motion.wall_margin_m, rng)
    flock = Flock(room, Disc(centre, 4.0), motion, n, seed)
    for i in range(n):
        flock.place(
            i, random_point(room, Disc(centre, 4.0), motion.wall_margin_m, rng), 0.0, mill=True
        )
    here = [tuple(xz) for xz in flock.xz.tolist()]
    last = [0.0] * n
    now = 0.0
    everyone = np.arange(n)
    for k, dt in enumerate(dts):
        now += dt
        some = everyone[k % 2 :: 2] if k % 3 else everyone  # batches, as the herd sends
        poses = flock.advance(some, now)
        assert poses.shape == (len(some), 3, 7)
        for row, i in enumerate(some.tolist()):
            check_pose(poses[row], room, motion.wall_margin_m)
            xz = (poses[row, 0, 0], poses[row, 0, 2])
            limit = min(motion.speed_mps[1], LAYOUT.max_speed_mps) * (now - last[i])
            assert math.dist(here[i], xz) <= limit + 1e-9
            here[i], last[i] = xz, now
        local = poses.copy()
        local[:, :, :3] -= room.bounds.min
        assert quant.valid_bodies(quant.encode_bodies(local)).all()


def test_bots_walk_over_the_batches():
    room = ROOMS["training"]
    flock = Flock(room, Disc((24.0, 54.0), 8.0), load_scenario("crowded-room", LAYOUT).motion, 4, 1)
    for i in range(4):
        flock.place(i, (24.0 + i, 54.0), 0.0, mill=True)
    start = flock.xz.copy()
    for step in range(1, 200):
        flock.advance(np.arange(4), step * 0.05)
    assert np.all(np.hypot(*(flock.xz - start).T) > 0.5), "every bot walked somewhere"


async def test_a_herd_connects_moves_measures_and_leaves(start_server, data_dir):
    server = await start_server(http_port=0)
    config = SwarmConfig(
        url=f"ws://127.0.0.1:{server.ws_port}/",
        scenario=load_scenario("crowded-room", LAYOUT),
        count=12,
        duration_s=4.0,
        data_dir=data_dir,
        driver="herd",
    )
    seen: list[dict] = []
    herd = Herd(config, latency_every=2)
    with trio.fail_after(20):
        result = await trio.to_thread.run_sync(herd.run, seen.append, 0.2)

    assert result.connected == 12 and result.failed == 0, result.failures
    assert result.ready == 12
    assert result.corrections == {}, "every pose the herd sent was accepted"
    assert result.errors == {}
    assert result.latency.total > 0 and 0 < result.latency.quantile(0.5) < 1000
    assert len(result.clients) == 12
    for rates in result.clients:
        assert 15 < rates.up_msgs < 25  # 20 poses a second
        assert rates.down_msgs > 10 and rates.down_bytes > 0
    assert max(s["connected"] for s in seen) == 12
    assert {a.room for a in server.world.avatars.values()} <= {"training"}
    with trio.fail_after(5):  # everyone said Leave
        while server.world.avatars:
            await trio.sleep(0.05)


async def test_a_herd_counts_a_refused_token(start_server, tmp_path):
    server = await start_server(http_port=0)
    other = tmp_path / "elsewhere"  # signed with a dev key the server does not know
    other.mkdir()
    config = SwarmConfig(
        url=f"ws://127.0.0.1:{server.ws_port}/",
        scenario=load_scenario("crowded-room", LAYOUT),
        count=3,
        duration_s=2.0,
        data_dir=other,
        driver="herd",
    )
    with trio.fail_after(15):
        result = await trio.to_thread.run_sync(Herd(config).run)
    assert result.connected == 0 and result.failed == 3
    assert result.failures == {"closed 4001 token_rejected": 3}


def test_the_herd_runs_only_crowds(data_dir, make_token, capsys):
    make_token("someone")  # the data directory now has its dev key
    code = main(["--scenario", "clinic-day", "--driver", "herd", "--data-dir", str(data_dir)])
    assert code == 2
    assert "--driver herd runs only crowded-room" in capsys.readouterr().err


def test_the_end_to_end_bench_runs_its_own_server(tmp_path):
    """`make bench`'s swarm step: a fresh server, a herd against it, reports, clean stop."""
    from load_tests.endtoend import main as endtoend

    out = tmp_path / "out"
    assert endtoend(["--count", "6", "--duration", "4", "--out", str(out)]) == 0
    report = json.loads((out / "crowded-room-6-4s.json").read_text())
    assert report["connected"] == 6 and report["failed"] == 0
    assert report["server_tick_ms"]["p99"] is not None
    assert (out / "crowded-room-6-4s.md").exists()
    assert "listening for clients" in (out / "crowded-room-6-4s-server.log").read_text()


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _wait_gone(processes: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for p in alive:
        p.kill()
    return alive


async def test_killing_the_bots_command_ends_its_workers(start_server, data_dir, make_token):
    server = await start_server(http_port=0)
    make_token("someone")  # the dev key exists
    command = [
        *BOTS,
        "--url",
        f"ws://127.0.0.1:{server.ws_port}/",
        "--no-metrics",
        "--data-dir",
        str(data_dir),
        "--count",
        "4",
        "--duration",
        "60",
        "--quiet",
    ]
    proc = subprocess.Popen(command)
    try:
        with trio.fail_after(30):
            while len(server.world.avatars) < 4:  # the workers are up and connected
                await trio.sleep(0.2)
        workers = _descendants(proc.pid)
        assert workers
        proc.kill()
        proc.wait()
        assert await trio.to_thread.run_sync(_wait_gone, workers) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_terminated_end_to_end_run_stops_its_server(tmp_path):
    command = [sys.executable, "-m", "load_tests.endtoend", "--count", "3", "--duration", "60"]
    proc = subprocess.Popen([*command, "--out", str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while not any("serve" in " ".join(p.cmdline()) for p in _descendants(proc.pid)):
            assert time.monotonic() < deadline, "no server started"
            time.sleep(0.2)
        time.sleep(3)  # the bots start too
        children = _descendants(proc.pid)
        data_dirs = [a for p in children for a in p.cmdline() if "metaworld-bench-" in a]
        # The server keeps the caller's priority; the bots yield to it.
        ours = [p for p in children if p.cmdline()[1:2] and "metaworld" in p.cmdline()[1]]
        niceness = {"serve" in p.cmdline(): p.nice() for p in ours}
        assert niceness == {True: os.nice(0), False: os.nice(0) + BOTS_NICE}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) != 0
        assert _wait_gone(children) == []
        assert data_dirs and not any(Path(d).exists() for d in data_dirs)
    finally:
        if proc.poll() is None:
            proc.kill()

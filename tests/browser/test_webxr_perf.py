"""Frame cost with a crowded room: ~150 moving avatars in view of one browser page.

The client times, every frame, the work it owns: applying queued server messages and
interpolating every remote avatar into the scene (window.__metaworld.frames). Rendering
is left out on purpose: on this machine it runs on SwiftShader, a CPU rasterizer, and
says nothing about a headset's GPU. The numbers are written to test-artifacts/.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from webxr_harness import (
    ARTIFACTS,
    BotPool,
    ServerProcess,
    hook,
    running_server,
    screenshot_checked,
    sign_in,
    wait_connected,
)

from metaworld.auth import mint_dev_token
from metaworld_sdk import neutral_pose

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CROWD = 150
MEASURE_MS = 5000
# Budget for apply + interpolate at 150 avatars. A 90 Hz headset has 11 ms per frame
# for everything; this part should take a small share of it.
P95_BUDGET_MS = 4.0


@pytest.fixture(scope="module")
def crowd_server(
    webxr_dist: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    # Everyone in the lobby is in view: a radius past its diagonal, a cap past the crowd.
    extra = ["--view-radius", "40", "--view-cap", str(CROWD + 20)]
    with running_server(tmp_path_factory.mktemp("crowd"), extra) as server:
        yield server


def lobby_spot(rng: random.Random) -> tuple[float, float]:
    """A free standing point in the sample clinic's lobby (20 x 16 m, one table)."""
    while True:
        x, z = rng.uniform(1.0, 19.0), rng.uniform(1.0, 15.0)
        if not (13.5 <= x <= 18.5 and 9.5 <= z <= 12.5):
            return x, z


async def walk_in_circles(clients: list[Any], centres: list[tuple[float, float]]) -> None:
    """Every bot circles its own spot at walking pace, 10 poses a second."""
    for client, (x, z) in zip(clients, centres, strict=True):
        await client.move_to(x, z)
    await trio.sleep(0.5)  # let the teleports land (the SDK adopts each new epoch)
    t = 0.0
    while True:
        for i, client in enumerate(clients):
            x, z = centres[i]
            angle = t * 2.0 + i
            pose = neutral_pose(x + 0.3 * math.cos(angle), z + 0.3 * math.sin(angle), 0.0, angle)
            await client.send_pose(pose)
        await trio.sleep(0.1)
        t += 0.1


def test_frame_cost_with_150_avatars_in_view(
    crowd_server: ServerProcess, new_page, bots: BotPool
) -> None:
    rng = random.Random(20261203)
    clients = [
        bots.connect(
            crowd_server.ws_url,
            mint_dev_token(crowd_server.data_dir, f"crowd-{i}", "trainee", name=f"Crowd {i}"),
        )
        for i in range(CROWD)
    ]
    centres = [lobby_spot(rng) for _ in clients]
    bots.start_task(walk_in_circles, clients, centres)

    page = new_page(crowd_server.http_url)
    sign_in(page, "clinician", "Dr Perf")
    wait_connected(page)
    page.wait_for_function(
        f"() => Object.keys(__metaworld.avatars).length >= {CROWD}", timeout=30_000
    )
    page.evaluate("() => __metaworld.resetFrameStats()")
    page.wait_for_timeout(MEASURE_MS)
    frames = hook(page, "m.frames")
    visible = hook(page, "Object.keys(m.avatars).length")
    screenshot_checked(page, "perf-crowd")

    ARTIFACTS.mkdir(exist_ok=True)
    report = {"avatars_visible": visible, **frames}
    (ARTIFACTS / "perf-webxr.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\napply+interpolate with {visible} avatars over {frames['frames']} frames: "
        f"mean {frames['mean']:.3f} ms, p95 {frames['p95']:.3f} ms, max {frames['max']:.3f} ms"
    )
    assert visible >= CROWD
    assert frames["frames"] >= 20, "too few frames to measure"
    assert frames["avatars_max"] >= CROWD
    assert frames["p95"] < P95_BUDGET_MS, report
    assert page.errors == []

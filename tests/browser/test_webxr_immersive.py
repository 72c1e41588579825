"""The immersive path, on the IWER WebXR emulator (injected by the test, never shipped).

The page enters VR through its own Enter VR button; the test then moves the emulated
headset and controllers and checks, through an SDK bot, that the server holds the pose
the headset reported. Teleport by pointing and snap turn go through the same path.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from webxr_harness import (
    NODE_MODULES,
    BotPool,
    ServerProcess,
    axe_violations,
    hook,
    screenshot_checked,
    sign_in,
    wait_connected,
)

pytestmark = pytest.mark.browser

IWER_JS = NODE_MODULES / "iwer" / "build" / "iwer.min.js"
INSTALL_IWER = """
(() => {
  const device = new IWER.XRDevice(IWER.metaQuest3);
  device.installRuntime({ forceInstall: true });
  window.__xrDevice = device;
})();
"""
POSITION_M = 0.01  # millimetre quantization plus float noise
HAND_M = 0.08  # grip spaces sit a few centimetres from the controller origin


def yaw_quat(deg: float) -> list[float]:
    half = math.radians(deg) / 2
    return [0.0, math.sin(half), 0.0, math.cos(half)]


def pitch_quat(deg: float) -> list[float]:
    half = math.radians(deg) / 2
    return [math.sin(half), 0.0, 0.0, math.cos(half)]


def set_device(page: Any, part: str, pos: list[float], quat: list[float]) -> None:
    target = "__xrDevice" if part == "head" else f"__xrDevice.controllers.{part}"
    page.evaluate(
        f"() => {{ const t = {target}; t.position.set(...{pos}); t.quaternion.set(...{quat}); }}"
    )


# Where the controllers were put, relative to the headset (before any turn).
HANDS = ((1, [-0.25, -0.4, -0.3]), (2, [0.25, -0.4, -0.3]))


def hands_match(pose: list[list[float]], hand: int, offset: list[float]) -> bool:
    rel = [pose[hand][i] - pose[0][i] for i in range(3)]
    return all(abs(r - o) < HAND_M for r, o in zip(rel, offset, strict=True))


def same_rotation(a: list[float], b: list[float], tol: float) -> bool:
    dot = abs(sum(x * y for x, y in zip(a, b, strict=True)))
    return dot > 1 - tol


def server_pose(bots: BotPool, bot: Any, avatar_id: int) -> list[list[float]] | None:
    def read() -> list[list[float]] | None:
        remote = bot.view.get(avatar_id)
        return None if remote is None or remote.pose is None else remote.pose.tolist()

    return bots.read(read)


def wait_server_pose(
    bots: BotPool, bot: Any, avatar_id: int, check: Any, timeout: float = 10
) -> list[list[float]]:
    deadline = time.monotonic() + timeout
    pose = None
    while time.monotonic() < deadline:
        pose = server_pose(bots, bot, avatar_id)
        if pose is not None and check(pose):
            return pose
        time.sleep(0.05)
    raise AssertionError(f"the server never held the expected pose; last seen {pose}")


def test_enter_vr_and_the_server_sees_the_headset_pose(
    mw_server: ServerProcess, new_page, bots: BotPool
) -> None:
    assert IWER_JS.exists(), "npm ci in clients/webxr installs iwer (a devDependency)"
    page = new_page(mw_server.http_url, init_scripts=(IWER_JS, INSTALL_IWER))
    sign_in(page, "therapist", "Dr Headset")
    me = wait_connected(page)
    bot = bots.connect(mw_server.ws_url, mw_server.dev_token("trainee", "Watcher"))
    start = hook(page, "m.self")

    page.click("#enter-vr")
    page.wait_for_function("() => __metaworld.xr.presenting")
    set_device(page, "head", [0.3, 1.5, -0.2], yaw_quat(30))
    set_device(page, "left", [0.05, 1.1, -0.5], [0, 0, 0, 1])
    set_device(page, "right", [0.55, 1.1, -0.5], [0, 0, 0, 1])

    # The rig stands where the server put us, so the head is at spawn + device offset.
    expect_x, expect_z = start["x"] + 0.3, start["z"] - 0.2

    def headset_arrived(p: list[list[float]]) -> bool:
        head_ok = (
            abs(p[0][1] - 1.5) < POSITION_M
            and abs(p[0][0] - expect_x) < 0.05
            and abs(p[0][2] - expect_z) < 0.05
        )
        return head_ok and all(hands_match(p, hand, offset) for hand, offset in HANDS)

    pose = wait_server_pose(bots, bot, me["id"], headset_arrived)
    assert same_rotation(pose[0][3:], yaw_quat(30), 1e-4)
    screenshot_checked(page, "immersive-headset")

    # Snap turn: the right thumbstick turns the rig 30 degrees about the head.
    page.evaluate("() => __xrDevice.controllers.right.updateAxes('thumbstick', 1, 0)")
    wait_server_pose(bots, bot, me["id"], lambda p: same_rotation(p[0][3:], yaw_quat(0), 1e-3))
    page.evaluate("() => __xrDevice.controllers.right.updateAxes('thumbstick', 0, 0)")

    # Teleport: point the right controller 45 degrees down and pull the trigger.
    set_device(page, "right", [0.55, 1.1, -0.5], pitch_quat(-45))
    epoch = hook(page, "m.epoch")
    page.evaluate("() => __xrDevice.controllers.right.updateButtonValue('trigger', 1)")
    time.sleep(0.3)
    page.evaluate("() => __xrDevice.controllers.right.updateButtonValue('trigger', 0)")
    page.wait_for_function(f"() => __metaworld.epoch > {epoch}")
    moved = wait_server_pose(
        bots, bot, me["id"], lambda p: math.hypot(p[0][0] - expect_x, p[0][2] - expect_z) > 0.5
    )
    assert abs(moved[0][1] - 1.5) < POSITION_M  # still standing at the same height

    violations = axe_violations(page)
    assert violations == [], violations
    assert page.errors == []

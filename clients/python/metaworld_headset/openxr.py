"""Head and controller poses from a real OpenXR runtime, through the optional pyopenxr.

Theory of operation. OpenXR calls block (xrWaitFrame paces the caller at the display's
refresh rate), so the frame loop runs in a thread of its own: each frame it syncs the
controller actions and locates the head (the VIEW space) and both grips in the STAGE
space, whose origin is on the floor of the play area, and leaves the newest result in
a slot. The Trio side reads that slot at the server's tick rate, so the headset runs at
display rate while the server hears from it at tick rate.

The stage is mapped into the world by a shift on the floor plane: whenever the server
places the avatar (joining, a teleport, a door, a correction) the shift is chosen so
that the tracked head stands where the server put it; turning in the room turns the
avatar. The session is headless (XR_MND_headless): this client sends poses and draws
nothing, so a runtime without that extension (SteamVR, for one) is reported as
unusable; Monado has it.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import threading
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

import numpy as np
import trio

from metaworld import quant
from metaworld.layout import Room
from metaworld.world import standing_pose
from metaworld_headset.sources import ticks
from metaworld_sdk.client import Pose

log = logging.getLogger("metaworld.headset.openxr")

HINT: Final = "try --source simulated"
HANDS: Final = ("/user/hand/left", "/user/hand/right")
PROFILES: Final = (
    "/interaction_profiles/khr/simple_controller",
    "/interaction_profiles/oculus/touch_controller",
    "/interaction_profiles/valve/index_controller",
    "/interaction_profiles/htc/vive_controller",
)


class OpenXRUnavailable(Exception):
    """OpenXR cannot be used here; the message is one line and says what to do."""


def load_xr() -> ModuleType:
    """Import pyopenxr, or raise OpenXRUnavailable."""
    try:
        import xr  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise OpenXRUnavailable(
            f"OpenXR is unavailable: pyopenxr is not installed "
            f"(pip install 'metaworld[openxr]'); {HINT}"
        ) from exc
    return xr  # type: ignore[no-any-return, unused-ignore]


@dataclass(slots=True)
class StageAnchor:
    """World = stage + (dx, floor_y, dz): the stage shifted onto the world's floor."""

    dx: float = 0.0
    dz: float = 0.0
    floor_y: float = 0.0

    @staticmethod
    def placing(stage_head_xz: tuple[float, float], world: Pose, floor_y: float) -> StageAnchor:
        """The shift that puts a head tracked at `stage_head_xz` where `world` has it."""
        return StageAnchor(
            float(world[0, 0]) - stage_head_xz[0],
            float(world[0, 2]) - stage_head_xz[1],
            floor_y,
        )

    def to_world(self, stage: Pose) -> Pose:
        out = np.array(stage, dtype=np.float64)
        out[:, :3] += (self.dx, self.floor_y, self.dz)
        return out


def _pose_row(pose: Any) -> list[float]:
    p, o = pose.position, pose.orientation
    return [p.x, p.y, p.z, o.x, o.y, o.z, o.w]


class _XrSession:
    """One headless OpenXR instance, session and the spaces it tracks (blocking calls)."""

    def __init__(self, xr: ModuleType) -> None:
        self.xr = xr
        try:
            extensions = [xr.MND_HEADLESS_EXTENSION_NAME, self._time_extension()]
            self.instance = xr.create_instance(
                xr.InstanceCreateInfo(enabled_extension_names=extensions)
            )
        except Exception as exc:  # pyopenxr raises its own tree for a missing runtime
            raise OpenXRUnavailable(
                f"OpenXR is unavailable: no runtime with headless mode answered "
                f"({type(exc).__name__}); {HINT}"
            ) from exc
        try:
            self.system = xr.get_system(
                self.instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY)
            )
            self.session = xr.create_session(
                self.instance, xr.SessionCreateInfo(system_id=self.system, next=None)
            )
            self._make_spaces()
        except Exception as exc:
            xr.destroy_instance(self.instance)
            raise OpenXRUnavailable(
                f"OpenXR is unavailable: no headset is ready ({type(exc).__name__}); {HINT}"
            ) from exc
        self._now = self._time_function()

    def _time_extension(self) -> str:
        if platform.system() == "Windows":
            return str(self.xr.KHR_WIN32_CONVERT_PERFORMANCE_COUNTER_TIME_EXTENSION_NAME)
        return str(self.xr.KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME)

    def _make_spaces(self) -> None:
        xr = self.xr
        self.action_set = xr.create_action_set(
            self.instance,
            xr.ActionSetCreateInfo(
                action_set_name="metaworld", localized_action_set_name="metaworld", priority=0
            ),
        )
        paths = (xr.Path * 2)(*(xr.string_to_path(self.instance, hand) for hand in HANDS))
        self.grip = xr.create_action(
            self.action_set,
            xr.ActionCreateInfo(
                action_type=xr.ActionType.POSE_INPUT,
                action_name="grip",
                localized_action_name="grip",
                count_subaction_paths=2,
                subaction_paths=paths,
            ),
        )
        for profile in PROFILES:
            bindings = (xr.ActionSuggestedBinding * 2)(
                *(
                    xr.ActionSuggestedBinding(
                        self.grip, xr.string_to_path(self.instance, f"{hand}/input/grip/pose")
                    )
                    for hand in HANDS
                )
            )
            try:
                xr.suggest_interaction_profile_bindings(
                    self.instance,
                    xr.InteractionProfileSuggestedBinding(
                        interaction_profile=xr.string_to_path(self.instance, profile),
                        count_suggested_bindings=2,
                        suggested_bindings=bindings,
                    ),
                )
            except Exception:  # a runtime may not know every profile
                log.debug("runtime refused bindings for %s", profile)
        xr.attach_session_action_sets(
            self.session, xr.SessionActionSetsAttachInfo(action_sets=[self.action_set])
        )
        self.hand_spaces = [
            xr.create_action_space(
                self.session, xr.ActionSpaceCreateInfo(action=self.grip, subaction_path=path)
            )
            for path in paths
        ]
        self.stage = self._reference_space(xr.ReferenceSpaceType.STAGE)
        self.view = self._reference_space(xr.ReferenceSpaceType.VIEW)

    def _reference_space(self, kind: Any) -> Any:
        return self.xr.create_reference_space(
            self.session, self.xr.ReferenceSpaceCreateInfo(reference_space_type=kind)
        )

    def _time_function(self) -> Any:
        """A function giving the runtime's XrTime for now (headless frames have none)."""
        xr = self.xr
        if platform.system() == "Windows":
            import ctypes.wintypes

            convert = ctypes.cast(
                xr.get_instance_proc_addr(
                    self.instance, "xrConvertWin32PerformanceCounterToTimeKHR"
                ),
                xr.PFN_xrConvertWin32PerformanceCounterToTimeKHR,
            )
            counter = ctypes.wintypes.LARGE_INTEGER()
            kernel32 = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined]

            def now_windows() -> Any:
                kernel32.QueryPerformanceCounter(ctypes.byref(counter))
                out = xr.Time()
                xr.check_result(convert(self.instance, ctypes.pointer(counter), ctypes.byref(out)))
                return out

            return now_windows
        convert = ctypes.cast(
            xr.get_instance_proc_addr(self.instance, "xrConvertTimespecTimeToTimeKHR"),
            xr.PFN_xrConvertTimespecTimeToTimeKHR,
        )
        spec = xr.timespec()

        def now_posix() -> Any:
            seconds = time.clock_gettime(time.CLOCK_MONOTONIC)
            spec.tv_sec, spec.tv_nsec = int(seconds), int((seconds % 1.0) * 1e9)
            out = xr.Time()
            xr.check_result(convert(self.instance, ctypes.pointer(spec), ctypes.byref(out)))
            return out

        return now_posix

    def run(self, stop: threading.Event, publish: Any) -> None:
        """The frame loop: runs until `stop` is set or the runtime ends the session."""
        xr = self.xr
        state = xr.SessionState.UNKNOWN
        try:
            while not stop.is_set():
                state = self._poll_events(state)
                if state in (xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING):
                    break
                if state not in (
                    xr.SessionState.SYNCHRONIZED,
                    xr.SessionState.VISIBLE,
                    xr.SessionState.FOCUSED,
                ):
                    time.sleep(0.05)
                    continue
                xr.wait_frame(self.session)  # paces this loop at the display's rate
                publish(self._locate())
        finally:
            xr.destroy_instance(self.instance)

    def _poll_events(self, state: Any) -> Any:
        xr = self.xr
        while True:
            try:
                event = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return state
            if xr.StructureType(event.type) != xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                continue
            changed = ctypes.cast(
                ctypes.byref(event), ctypes.POINTER(xr.EventDataSessionStateChanged)
            ).contents
            state = xr.SessionState(changed.state)
            if state == xr.SessionState.READY:
                xr.begin_session(
                    self.session,
                    xr.SessionBeginInfo(
                        primary_view_configuration_type=xr.ViewConfigurationType.PRIMARY_MONO
                    ),
                )
            elif state == xr.SessionState.STOPPING:
                xr.end_session(self.session)

    def _locate(self) -> Pose | None:
        xr = self.xr
        now = self._now()
        xr.sync_actions(
            self.session,
            xr.ActionsSyncInfo(
                active_action_sets=[xr.ActiveActionSet(self.action_set, xr.NULL_PATH)]
            ),
        )
        head = xr.locate_space(self.view, self.stage, now)
        if not head.location_flags & xr.SPACE_LOCATION_POSITION_VALID_BIT:
            return None
        pose = np.empty((quant.POSE_PARTS, quant.POSE_WIDTH))
        pose[0] = _pose_row(head.pose)
        rest = _resting_hands(pose[0])
        for part, space in enumerate(self.hand_spaces, start=1):
            hand = xr.locate_space(space, self.stage, now)
            valid = hand.location_flags & xr.SPACE_LOCATION_POSITION_VALID_BIT
            pose[part] = _pose_row(hand.pose) if valid else rest[part]
        return pose


def _resting_hands(head: np.ndarray) -> Pose:
    """Hands hanging at the sides of a head, for controllers that are not tracked."""
    x, y, z, qx, qy, qz, qw = head
    yaw = float(np.arctan2(2.0 * (qw * qy + qx * qz), 1.0 - 2.0 * (qy * qy + qx * qx)))
    return standing_pose(float(x), float(z), float(y) - 1.6, yaw)


class OpenXRSource:
    """Poses of a real headset and its controllers, sampled at the server's tick rate.

    Creating it checks that pyopenxr imports and a runtime with a headset answers, and
    raises OpenXRUnavailable (one line, suggesting --source simulated) otherwise.
    """

    def __init__(self, *, tick_hz: float = 20.0, xr_module: ModuleType | None = None) -> None:
        self.tick_hz = tick_hz
        self._session = _XrSession(xr_module if xr_module is not None else load_xr())
        self._lock = threading.Lock()
        self._stage: Pose | None = None
        self._anchor: StageAnchor | None = None
        self._placement: tuple[Room, Pose] | None = None

    def _publish(self, stage: Pose | None) -> None:
        if stage is not None:
            with self._lock:
                self._stage = stage

    def placed(self, room: Room, pose: Pose, reason: str) -> None:
        self._placement = (room, np.array(pose))
        self._anchor = None  # chosen on the next tick, from the head tracked then

    async def poses(self) -> AsyncGenerator[tuple[float, Pose], None]:
        stop = threading.Event()
        thread = threading.Thread(
            target=self._session.run, args=(stop, self._publish), name="openxr", daemon=True
        )
        thread.start()
        try:
            started = trio.current_time()
            async with aclosing(ticks(self.tick_hz)) as clock:
                async for now in clock:
                    with self._lock:
                        stage = self._stage
                    if stage is None or self._placement is None:
                        continue
                    if self._anchor is None:
                        room, world = self._placement
                        head_xz = (float(stage[0, 0]), float(stage[0, 2]))
                        self._anchor = StageAnchor.placing(head_xz, world, room.bounds.min[1])
                    yield now - started, self._anchor.to_world(stage)
        finally:
            stop.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join, 2.0)

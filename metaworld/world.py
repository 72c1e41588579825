"""The authoritative world: rooms, avatars, entry rules and movement validation.

This module is sans-io. The server calls it with decoded requests and the current time
and gets back outcomes (a placement, a correction, an error code); it never touches a
socket, a clock or the database. Poses are held as float arrays in world coordinates,
one row per avatar id, next to each avatar's pose body as it goes on the wire. A body a
client sent and the server accepted is kept byte for byte and forwarded as it is; the
server encodes a body only when it places an avatar itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from metaworld import quant
from metaworld.layout import Layout, Room
from metaworld.roles import STAFF_ROLES, Role

MAX_AVATARS: Final = 65535  # avatar ids are uint16 on the wire; 0 is never used
HAND_REACH_M: Final = 1.2  # a hand further than this from the head is not a hand
WALL_MARGIN_M: Final = 0.15  # keep heads this far from walls
POSE_SLACK_M: Final = 0.35  # tracking jitter and leaning allowed beyond max speed
# Walking credit saved up while standing still (or not sending) is capped, so a client
# cannot pause and then jump: at most this many seconds of walking count at once.
MAX_STRIDE_S: Final = 1.0
TELEPORT_RANGE_M: Final = 12.0  # longest point-and-teleport hop
EYE_HEIGHT_M: Final = 1.6
# Why a pose was refused, in the order the rules are checked (Correction.reason).
POSE_PROBLEMS: Final = ("wall", "height", "speed", "reach")


class WorldError(Exception):
    """A request the world refuses; `code` is one of protocol.ERROR_CODES."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class Avatar:
    id: int
    subject: str
    role: Role
    label: str
    room: str
    epoch: int = 0  # bumped whenever the server places or corrects this avatar


@dataclass(frozen=True, slots=True)
class Placement:
    """The server put an avatar somewhere (accepted move or correction)."""

    avatar: int
    room: str
    epoch: int
    body: bytes
    reason: str
    accepted: bool
    previous_room: str | None = None


def pseudonym(secret: bytes, subject: str) -> str:
    """A stable label for a patient that reveals nothing about who they are."""
    digest = hmac.new(secret, subject.encode(), hashlib.sha256).hexdigest()
    return f"Patient {digest[:6].upper()}"


def standing_pose(x: float, z: float, floor_y: float, yaw: float = 0.0) -> npt.NDArray[np.float64]:
    """A neutral pose: head at eye height, hands at the sides, facing -z rotated by yaw."""
    qy, qw = np.sin(yaw / 2.0), np.cos(yaw / 2.0)
    pose = np.zeros((quant.POSE_PARTS, quant.POSE_WIDTH))
    pose[:, 4], pose[:, 6] = qy, qw
    pose[0, :3] = (x, floor_y + EYE_HEIGHT_M, z)
    side = (np.cos(yaw) * 0.25, -np.sin(yaw) * 0.25)
    pose[1, :3] = (x - side[0], floor_y + 0.9, z - side[1])
    pose[2, :3] = (x + side[0], floor_y + 0.9, z + side[1])
    return pose


@dataclass
class World:
    layout: Layout
    label_secret: bytes
    avatars: dict[int, Avatar] = field(default_factory=dict)
    # Patients a staff member admitted to an appointment room: each admission is for one
    # visit and is used up when the patient leaves that room.
    admitted: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rooms: dict[str, Room] = {room.id: room for room in self.layout.rooms}
        self.poses = np.zeros((MAX_AVATARS + 1, quant.POSE_PARTS, quant.POSE_WIDTH))
        self.room_min = np.zeros((MAX_AVATARS + 1, 3))
        self.room_max = np.zeros((MAX_AVATARS + 1, 3))
        self.room_index = np.full(MAX_AVATARS + 1, -1)
        self.last_move = np.zeros(MAX_AVATARS + 1)  # when each avatar last moved legally
        self._room_numbers = {room.id: i for i, room in enumerate(self.layout.rooms)}
        self.records = np.zeros(MAX_AVATARS + 1, dtype=quant.RECORD_DTYPE)
        self.records["id"] = np.arange(MAX_AVATARS + 1)
        self.occupants: dict[str, set[int]] = {room_id: set() for room_id in self.rooms}
        self._next_id = 1
        self.appointments: dict[str, set[str]] = {}  # standing, from the layout
        for appt in self.layout.appointments:
            self.appointments.setdefault(appt.room, set()).add(appt.patient)
        self.admissions_changed: set[str] = set()  # rooms whose admissions need saving

    # ------------------------------------------------------------ avatars

    def spawn(self, subject: str, role: Role, name: str | None, now: float) -> Avatar:
        """Make an avatar in the lobby; raises WorldError when the world or lobby is full."""
        lobby = self.rooms[self.layout.lobby]
        if len(self.occupants[lobby.id]) >= lobby.capacity:
            raise WorldError("room_full")
        avatar_id = self._allocate_id()
        label = pseudonym(self.label_secret, subject) if role == "patient" else (name or subject)
        avatar = Avatar(avatar_id, subject, role, label[:64], lobby.id)
        self.avatars[avatar_id] = avatar
        self.last_move[avatar_id] = now
        self._put(avatar, lobby, self._spawn_point(lobby))
        return avatar

    def remove(self, avatar_id: int) -> Avatar | None:
        avatar = self.avatars.pop(avatar_id, None)
        if avatar is not None:
            self._used_up(avatar)
            self.occupants[avatar.room].discard(avatar_id)
        return avatar

    def _used_up(self, avatar: Avatar) -> None:
        """A patient leaving an appointment room has had the visit they were admitted for."""
        admitted = self.admitted.get(avatar.room)
        if admitted is not None and avatar.subject in admitted:
            admitted.discard(avatar.subject)
            self.admissions_changed.add(avatar.room)

    def _allocate_id(self) -> int:
        if len(self.avatars) >= MAX_AVATARS:
            raise WorldError("room_full")
        while self._next_id in self.avatars or self._next_id == 0:
            self._next_id = self._next_id % MAX_AVATARS + 1
        avatar_id = self._next_id
        self._next_id = self._next_id % MAX_AVATARS + 1
        return avatar_id

    def _spawn_point(self, room: Room) -> tuple[float, float]:
        """The spawn point with the fewest avatars near it."""
        xz = self.poses[list(self.occupants[room.id]), 0][:, [0, 2]]

        def crowd(point: tuple[float, float, float]) -> int:
            if not len(xz):
                return 0
            return int(np.sum(np.hypot(xz[:, 0] - point[0], xz[:, 1] - point[2]) < 1.0))

        best = min(room.spawn, key=crowd)
        return best[0], best[2]

    def _put(self, avatar: Avatar, room: Room, xz: tuple[float, float]) -> None:
        if avatar.room != room.id:
            self._used_up(avatar)
        self.occupants[avatar.room].discard(avatar.id)
        avatar.room = room.id
        self.occupants[room.id].add(avatar.id)
        self.room_min[avatar.id] = room.bounds.min
        self.room_max[avatar.id] = room.bounds.max
        self.room_index[avatar.id] = self._room_numbers[room.id]
        self.poses[avatar.id] = standing_pose(xz[0], xz[1], room.bounds.min[1])
        self._encode(avatar.id)
        avatar.epoch += 1

    def _encode(self, avatar_id: int) -> None:
        local = self.poses[avatar_id : avatar_id + 1].copy()
        local[:, :, :3] -= self.room_min[avatar_id]
        self.records["body"][avatar_id] = quant.encode_bodies(local)[0]

    def body_of(self, avatar_id: int) -> bytes:
        """The avatar's current pose as a 28-byte body, room-local."""
        return bytes(self.records["body"][avatar_id].tobytes())

    def _placement(self, avatar: Avatar, reason: str, *, accepted: bool) -> Placement:
        return Placement(
            avatar.id, avatar.room, avatar.epoch, self.body_of(avatar.id), reason, accepted
        )

    # ------------------------------------------------------------ entry rules

    def entry_problem(self, avatar: Avatar, room: Room) -> str | None:
        """Why `avatar` may not enter `room` now, as an error code, or None."""
        if avatar.role not in room.enter:
            return "not_allowed"
        if (
            room.appointment
            and avatar.role == "patient"
            and avatar.subject not in self.appointments.get(room.id, set())
            and avatar.subject not in self.admitted.get(room.id, set())
        ):
            return "no_appointment"
        if avatar.room != room.id and len(self.occupants[room.id]) >= room.capacity:
            return "room_full"
        return None

    def _enter(self, avatar: Avatar, room: Room, xz: tuple[float, float], reason: str) -> Placement:
        problem = self.entry_problem(avatar, room)
        if problem is not None:
            raise WorldError(problem)
        previous = avatar.room
        self._put(avatar, room, xz)
        placed = self._placement(avatar, reason, accepted=True)
        if previous == room.id:
            return placed
        return dataclasses.replace(placed, previous_room=previous)

    def join_room(self, avatar_id: int, room_id: str, now: float) -> Placement:
        avatar = self.avatars[avatar_id]
        room = self.rooms.get(room_id)
        if room is None:
            raise WorldError("unknown_room")
        self.last_move[avatar.id] = now
        return self._enter(avatar, room, self._spawn_point(room), "join")

    def use_door(self, avatar_id: int, door_id: str, now: float) -> Placement:
        avatar = self.avatars[avatar_id]
        head = self.poses[avatar_id, 0]
        for door in self.layout.doors:
            if door.id != door_id or avatar.room not in (door.a, door.b):
                continue
            near, far, far_room = (
                (door.a_at, door.b_at, door.b)
                if avatar.room == door.a
                else (door.b_at, door.a_at, door.a)
            )
            if np.hypot(head[0] - near[0], head[2] - near[1]) > door.radius:
                raise WorldError("too_far")
            self.last_move[avatar.id] = now
            return self._enter(avatar, self.rooms[far_room], far, "door")
        raise WorldError("unknown_door")

    def move_to(self, avatar_id: int, x: float, z: float, now: float) -> Placement:
        avatar = self.avatars[avatar_id]
        room = self.rooms[avatar.room]
        head = self.poses[avatar_id, 0]
        if not (np.isfinite(x) and np.isfinite(z)) or not self._standable(room, x, z):
            raise WorldError("bad_target")
        if np.hypot(head[0] - x, head[2] - z) > TELEPORT_RANGE_M:
            raise WorldError("bad_target")
        shift = np.array([x - head[0], 0.0, z - head[2]])
        self.poses[avatar_id, :, :3] += shift
        self._encode(avatar_id)
        avatar.epoch += 1
        self.last_move[avatar.id] = now
        return self._placement(avatar, "teleport", accepted=True)

    def admit(self, staff_id: int, patient_id: int) -> str:
        """Put a patient on the staff member's room allow-list; returns the room id."""
        staff = self.avatars[staff_id]
        if staff.role not in STAFF_ROLES:
            raise WorldError("not_staff")
        patient = self.avatars.get(patient_id)
        if patient is None or patient.role != "patient":
            raise WorldError("unknown_avatar")
        room = self.rooms[staff.room]
        if not room.appointment:
            raise WorldError("bad_target")
        self.admitted.setdefault(room.id, set()).add(patient.subject)
        self.admissions_changed.add(room.id)
        return room.id

    # ------------------------------------------------------------ movement

    def _standable(self, room: Room, x: float, z: float) -> bool:
        if not room.bounds.contains_xz(x, z, WALL_MARGIN_M):
            return False
        return not any(box.contains_xz(x, z) for box in room.obstacles)

    def apply_pose(self, avatar_id: int, epoch: int, body: bytes, now: float) -> Placement | None:
        """Validate one client pose: a correction when rejected, None otherwise.

        Raises WorldError("bad_pose") when the body is not a pose at all.
        """
        corrections, malformed = self.apply_poses([(avatar_id, epoch, body)], now)
        if malformed:
            raise WorldError("bad_pose")
        return corrections[0] if corrections else None

    def apply_poses(
        self, batch: Sequence[tuple[int, int, bytes]], now: float
    ) -> tuple[list[Placement], list[int]]:
        """Validate a tick's worth of client poses at once.

        Poses from an old epoch (sent before the client learned of a placement) are
        ignored. Returns the corrections for rejected poses and the avatars whose body
        was malformed. Decoding and checking run on the whole batch: per pose, numpy's
        call overhead would cost more than the work.
        """
        ids: list[int] = []
        bodies: list[bytes] = []
        malformed: list[int] = []
        for avatar_id, epoch, body in batch:
            avatar = self.avatars.get(avatar_id)
            if avatar is None or epoch != avatar.epoch:
                continue
            if len(body) != quant.BODY_SIZE:
                malformed.append(avatar_id)
                continue
            ids.append(avatar_id)
            bodies.append(body)
        if not ids:
            return [], malformed
        idx = np.array(ids)
        packed = np.frombuffer(b"".join(bodies), dtype=quant.BODY_DTYPE)
        valid = quant.valid_bodies(packed)
        if not valid.all():
            malformed += idx[~valid].tolist()
            idx, packed = idx[valid], packed[valid]
            if not len(idx):
                return [], malformed
        poses = quant.decode_bodies(packed)
        poses[:, :, :3] += self.room_min[idx][:, None, :]
        problem = self._pose_problems(idx, poses, now)
        ok = problem < 0
        accepted = idx[ok]
        self.poses[accepted] = poses[ok]
        self.records["body"][accepted] = packed[ok]
        self.last_move[accepted] = now
        corrections = []
        for avatar_id, code in zip(idx[~ok].tolist(), problem[~ok].tolist(), strict=True):
            avatar = self.avatars[avatar_id]
            avatar.epoch += 1
            corrections.append(self._placement(avatar, POSE_PROBLEMS[code], accepted=False))
        return corrections, malformed

    def _pose_problems(
        self, idx: npt.NDArray[np.int64], poses: npt.NDArray[np.float64], now: float
    ) -> npt.NDArray[np.int64]:
        """Per pose, the index in POSE_PROBLEMS of the first rule it breaks, or -1."""
        head = poses[:, 0, :3]
        lo, hi = self.room_min[idx], self.room_max[idx]
        inside = np.all(
            (head[:, [0, 2]] >= lo[:, [0, 2]] + WALL_MARGIN_M)
            & (head[:, [0, 2]] <= hi[:, [0, 2]] - WALL_MARGIN_M),
            axis=1,
        )
        rooms_here = self.room_index[idx]
        for number in np.unique(rooms_here).tolist():
            in_room = rooms_here == number
            for box in self.layout.rooms[number].obstacles:
                inside &= ~(
                    in_room
                    & (head[:, 0] >= box.min[0])
                    & (head[:, 0] <= box.max[0])
                    & (head[:, 2] >= box.min[2])
                    & (head[:, 2] <= box.max[2])
                )
        height = (head[:, 1] >= lo[:, 1]) & (head[:, 1] <= hi[:, 1])
        old = self.poses[idx, 0]
        elapsed = np.clip(now - self.last_move[idx], 0.0, MAX_STRIDE_S)
        allowed = self.layout.max_speed_mps * elapsed
        walked = np.hypot(head[:, 0] - old[:, 0], head[:, 2] - old[:, 2])
        speed = walked <= allowed + POSE_SLACK_M
        hands = np.linalg.norm(poses[:, 1:, :3] - head[:, None, :], axis=2)
        reach = np.all(hands <= HAND_REACH_M, axis=1)
        checks = np.stack([inside, height, speed, reach])  # the order of POSE_PROBLEMS
        return np.where(checks.all(axis=0), -1, np.argmin(checks, axis=0))

    # ------------------------------------------------------------ queries

    def room_members(self, room_id: str) -> list[int]:
        return sorted(self.occupants[room_id])

    def avatars_in(self, room_id: str) -> Iterable[Avatar]:
        return (self.avatars[i] for i in self.room_members(room_id))

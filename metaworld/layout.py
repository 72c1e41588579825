"""Clinic layouts: the file format, loading and validation.

A layout is a TOML (or JSON) file naming rooms, their bounds, who may enter, where people
appear, and the doors between rooms. Loading validates types with msgspec and then the
geometry; every problem is reported as a LayoutError naming the file, the field and what
is wrong with it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec

from metaworld.quant import MAX_EXTENT_M
from metaworld.roles import ROLES, Role

RoomKind = Literal["lobby", "waiting", "consultation", "therapy", "training", "staff"]
Vec3 = tuple[float, float, float]
Vec2 = tuple[float, float]
Id = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]

DEFAULT_LAYOUT: Final = Path(__file__).resolve().parent.parent / "world_data" / "clinic.toml"


class LayoutError(ValueError):
    """A layout file that cannot be used; the message names the file and the field."""


class Box(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An axis-aligned box in world metres (y is up)."""

    min: Vec3
    max: Vec3

    def contains_xz(self, x: float, z: float, margin: float = 0.0) -> bool:
        return (
            self.min[0] + margin <= x <= self.max[0] - margin
            and self.min[2] + margin <= z <= self.max[2] - margin
        )


class Room(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One room. Its walls are the sides of `bounds`; `obstacles` are solid furniture."""

    id: Id
    name: str
    kind: RoomKind
    bounds: Box
    capacity: Annotated[int, msgspec.Meta(ge=1, le=5000)]
    spawn: list[Vec3]
    enter: list[Role] = msgspec.field(default_factory=lambda: list(ROLES))
    # When true, a patient may enter only while on the room's appointment allow-list.
    appointment: bool = False
    obstacles: list[Box] = msgspec.field(default_factory=list)
    keeps_chat: bool = False


class Door(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A two-way portal: standing within `radius` of one end takes you to the other."""

    id: Id
    a: Id
    b: Id
    a_at: Vec2
    b_at: Vec2
    radius: Annotated[float, msgspec.Meta(gt=0.0, le=5.0)] = 1.5


class Appointment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A patient (token subject) expected in an appointment room from the start."""

    room: Id
    patient: str


class Layout(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    lobby: Id
    rooms: list[Room]
    doors: list[Door] = msgspec.field(default_factory=list)
    appointments: list[Appointment] = msgspec.field(default_factory=list)
    max_speed_mps: Annotated[float, msgspec.Meta(gt=0.0, le=20.0)] = 3.0
    version: int = 1

    def room(self, room_id: str) -> Room:
        for room in self.rooms:
            if room.id == room_id:
                return room
        raise KeyError(room_id)


def load_layout(path: Path | str = DEFAULT_LAYOUT) -> Layout:
    """Read and validate a layout file (.toml or .json)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LayoutError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        if path.suffix == ".json":
            layout = msgspec.json.decode(raw, type=Layout)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
            layout = msgspec.convert(data, type=Layout)
    except (msgspec.ValidationError, msgspec.DecodeError, tomllib.TOMLDecodeError) as exc:
        raise LayoutError(f"{path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{path}: not UTF-8 text") from exc
    problems = check_layout(layout)
    if problems:
        raise LayoutError(f"{path}: " + "; ".join(problems))
    return layout


def check_layout(layout: Layout) -> list[str]:
    """Geometry and reference checks that types alone cannot express."""
    problems: list[str] = []
    ids = [room.id for room in layout.rooms]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"rooms: room id {dup!r} is used twice")
    rooms = {room.id: room for room in layout.rooms}
    if layout.lobby not in rooms:
        problems.append(f"$.lobby: no room {layout.lobby!r}")
    for i, room in enumerate(layout.rooms):
        problems += _check_room(f"$.rooms[{i}]", room)
    for i, room in enumerate(layout.rooms):
        for other in layout.rooms[i + 1 :]:
            if _overlap_xz(room.bounds, other.bounds):
                problems.append(f"rooms: {room.id!r} and {other.id!r} overlap")
    for i, door in enumerate(layout.doors):
        for end, at in (("a", door.a_at), ("b", door.b_at)):
            room_id = getattr(door, end)
            if room_id not in rooms:
                problems.append(f"$.doors[{i}].{end}: no room {room_id!r}")
            elif not rooms[room_id].bounds.contains_xz(*at):
                problems.append(f"$.doors[{i}].{end}_at: {at} is outside room {room_id!r}")
    for i, appt in enumerate(layout.appointments):
        if appt.room not in rooms:
            problems.append(f"$.appointments[{i}].room: no room {appt.room!r}")
        elif not rooms[appt.room].appointment:
            problems.append(f"$.appointments[{i}].room: {appt.room!r} takes no appointments")
    return problems


def _check_room(where: str, room: Room) -> list[str]:
    problems = []
    lo, hi = room.bounds.min, room.bounds.max
    for axis in range(3):
        if not lo[axis] < hi[axis]:
            problems.append(f"{where}.bounds: min must be below max on every axis")
            break
        if hi[axis] - lo[axis] > MAX_EXTENT_M:
            problems.append(f"{where}.bounds: a side is longer than {MAX_EXTENT_M} m")
            break
    if not room.spawn:
        problems.append(f"{where}.spawn: a room needs at least one spawn point")
    for j, point in enumerate(room.spawn):
        if not room.bounds.contains_xz(point[0], point[2]):
            problems.append(f"{where}.spawn[{j}]: {point} is outside the room bounds")
    if not room.enter:
        problems.append(f"{where}.enter: nobody could enter this room")
    return problems


def _overlap_xz(a: Box, b: Box) -> bool:
    return (
        a.min[0] < b.max[0] and b.min[0] < a.max[0] and a.min[2] < b.max[2] and b.min[2] < a.max[2]
    )

"""Load-test scenarios: what a swarm of bots does, read from TOML files.

A scenario file names its kind (``crowded-room`` or ``clinic-day``), the mix of roles,
how bots move, and the settings of its kind. The shipped files live in
``world_data/scenarios/``. Loading checks the types with msgspec and then checks the
scenario against the clinic layout; every problem is a ScenarioError that names the
file and the field.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Final

import msgspec

from metaworld.layout import Layout, Room
from metaworld.roles import STAFF_ROLES, Role

SCENARIO_DIR: Final = Path(__file__).resolve().parent.parent / "world_data" / "scenarios"

Positive = Annotated[float, msgspec.Meta(gt=0.0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
Span = tuple[NonNegative, NonNegative]  # (low, high), low <= high
Point = tuple[float, float]  # (x, z) in world metres


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the file and the field."""


class RoleShare(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Bots of one role, as a share of the swarm (shares need not add up to one)."""

    role: Role
    share: Positive = 1.0


class Motion(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How bots move: eased walks between waypoints, smooth head turns, swinging hands."""

    speed_mps: Span = (0.6, 1.4)  # peak walking speed of one leg, drawn per leg
    pause_s: Span = (0.5, 3.0)  # standing still between legs
    leg_m: Positive = 6.0  # longest leg of a walk while milling
    head_yaw_deg: NonNegative = 30.0  # head turning around the walking direction
    head_pitch_deg: NonNegative = 10.0
    turn_deg_per_s: Positive = 180.0  # fastest body turn
    hand_swing_m: NonNegative = 0.2  # forward and back, at the fastest walk
    wall_margin_m: Annotated[float, msgspec.Meta(ge=0.2, le=2.0)] = 0.5


class Crowd(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the crowd mills: a disc in one room, sized by the swarm and the density."""

    center: Point
    room: str = "training"
    density_per_m2: Positive = 0.25  # avatars per square metre inside the disc
    min_radius_m: Positive = 3.0


class Clinic(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The patient journey: lobby, waiting room, a consultation, and home."""

    door: str = "lobby-waiting"  # from the lobby into the waiting room
    waiting_room: str = "waiting"
    rooms: list[str] = msgspec.field(default_factory=list)  # empty: every appointment room
    clinicians_per_room: Annotated[int, msgspec.Meta(ge=1, le=6)] = 1
    arrival_s: Span = (0.0, 10.0)  # a patient walks to the door this long after connecting
    walk_m: Positive = 8.0  # farther from the door than this, a patient teleports closer first
    consult_s: Span = (8.0, 15.0)
    call_every_s: Positive = 2.0  # a free clinician looks into the waiting room this often
    revisit: bool = True  # a patient who went home comes back as a new patient


class _Base(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="kind"
):
    name: str
    roles: list[RoleShare]
    description: str = ""
    motion: Motion = Motion()
    connect_per_s: Positive = 50.0  # new connections per second, over the whole swarm
    chat_every_s: NonNegative = 0.0  # mean seconds between one bot's chat lines; 0: never


class CrowdedRoom(_Base, frozen=True, tag="crowded-room"):
    """Everyone in one room, close enough that each avatar sees dozens of others."""

    crowd: Crowd

    def radius_m(self, count: int) -> float:
        """Radius of the disc holding `count` avatars at the scenario's density."""
        spread = math.sqrt(count / (math.pi * self.crowd.density_per_m2))
        return max(self.crowd.min_radius_m, spread)


class ClinicDay(_Base, frozen=True, tag="clinic-day"):
    """Patients arrive, wait, are called into consultations by clinicians, and leave."""

    clinic: Clinic = Clinic()


Scenario = CrowdedRoom | ClinicDay


def available() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))


def resolve(name_or_path: str | Path) -> Path:
    """A shipped scenario by name (``crowded-room``) or any file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        return Path(text)
    path = SCENARIO_DIR / f"{text}.toml"
    if not path.exists():
        names = ", ".join(available()) or "none"
        raise ScenarioError(f"no scenario {text!r}; the shipped ones are: {names}")
    return path


def load_scenario(name_or_path: str | Path, layout: Layout | None = None) -> Scenario:
    """Read, type-check and (given a layout) geometry-check one scenario file."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
        scenario: Scenario = msgspec.convert(data, type=Scenario)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text") from exc
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    problems = check_scenario(scenario, layout)
    if problems:
        raise ScenarioError(f"{path}: " + "; ".join(problems))
    return scenario


def check_scenario(scenario: Scenario, layout: Layout | None = None) -> list[str]:
    """Checks that types cannot express; with a layout, also rooms, doors and speeds."""
    problems: list[str] = []
    motion = scenario.motion
    for field in ("speed_mps", "pause_s"):
        low, high = getattr(motion, field)
        if low > high:
            problems.append(f"$.motion.{field}: low {low} is above high {high}")
    if motion.speed_mps[0] <= 0:
        problems.append("$.motion.speed_mps: walking speeds must be above zero")
    if not scenario.roles:
        problems.append("$.roles: a scenario needs at least one role")
    if isinstance(scenario, ClinicDay):
        problems += _check_clinic_roles(scenario)
        for field in ("arrival_s", "consult_s"):
            low, high = getattr(scenario.clinic, field)
            if low > high:
                problems.append(f"$.clinic.{field}: low {low} is above high {high}")
    if layout is not None:
        problems += _check_against_layout(scenario, layout)
    return problems


def _check_clinic_roles(scenario: ClinicDay) -> list[str]:
    roles = {share.role for share in scenario.roles}
    problems = []
    if "patient" not in roles:
        problems.append("$.roles: a clinic day needs patients")
    if not roles & STAFF_ROLES:
        problems.append(f"$.roles: a clinic day needs staff ({', '.join(sorted(STAFF_ROLES))})")
    return problems


def _check_against_layout(scenario: Scenario, layout: Layout) -> list[str]:
    problems = []
    rooms = {room.id: room for room in layout.rooms}
    if scenario.motion.speed_mps[1] > layout.max_speed_mps:
        problems.append(
            f"$.motion.speed_mps: {scenario.motion.speed_mps[1]} m/s is faster than the "
            f"server allows ({layout.max_speed_mps} m/s)"
        )
    match scenario:
        case CrowdedRoom(crowd=crowd):
            room = rooms.get(crowd.room)
            if room is None:
                problems.append(f"$.crowd.room: no room {crowd.room!r} in {layout.name!r}")
            elif not room.bounds.contains_xz(*crowd.center, scenario.motion.wall_margin_m):
                problems.append(f"$.crowd.center: {crowd.center} is not inside {room.id!r}")
            else:
                problems += _check_entry(room, scenario.roles, "$.crowd.room")
        case ClinicDay(clinic=clinic):
            problems += _check_clinic_layout(clinic, layout, rooms)
    return problems


def _check_entry(room: Room, roles: list[RoleShare], where: str) -> list[str]:
    barred = sorted({share.role for share in roles} - set(room.enter))
    if barred:
        return [f"{where}: {', '.join(barred)} may not enter {room.id!r}"]
    return []


def _check_clinic_layout(clinic: Clinic, layout: Layout, rooms: dict[str, Room]) -> list[str]:
    problems = []
    if clinic.waiting_room not in rooms:
        problems.append(f"$.clinic.waiting_room: no room {clinic.waiting_room!r}")
    door = next((d for d in layout.doors if d.id == clinic.door), None)
    if door is None:
        problems.append(f"$.clinic.door: no door {clinic.door!r}")
    elif (door.a, door.b) != (layout.lobby, clinic.waiting_room):
        problems.append(
            f"$.clinic.door: {door.id!r} must lead from {layout.lobby!r} (its a side) "
            f"to {clinic.waiting_room!r} (its b side)"
        )
    for i, room_id in enumerate(clinic.rooms):
        room = rooms.get(room_id)
        if room is None:
            problems.append(f"$.clinic.rooms[{i}]: no room {room_id!r}")
        elif not room.appointment:
            problems.append(f"$.clinic.rooms[{i}]: {room_id!r} takes no appointments")
    return problems


def consultation_rooms(scenario: ClinicDay, layout: Layout) -> list[Room]:
    """The rooms clinicians hold consultations in, in a stable order."""
    if scenario.clinic.rooms:
        return [layout.room(room_id) for room_id in scenario.clinic.rooms]
    return [r for r in layout.rooms if r.appointment and "clinician" in r.enter]


def assign_roles(scenario: Scenario, count: int) -> list[Role]:
    """The role of each bot slot: counts by largest remainder, interleaved evenly, so
    that any subset of slots taken by stride (one worker process) gets the same mix."""
    total = sum(share.share for share in scenario.roles)
    exact = [share.share / total * count for share in scenario.roles]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    spread = [((k + 0.5) / n, i) for i, n in enumerate(counts) for k in range(n)]
    return [scenario.roles[i].role for _, i in sorted(spread)]

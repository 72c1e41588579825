"""Scenario behaviours: what a bot does once connected, one coroutine per kind.

crowded-room: join the crowd's room, teleport into the disc, mill about.
clinic-day: patients walk from the lobby through the door to the waiting room and wait
for a Ticket; clinicians hold a consultation room, look into the waiting room, pick a
waiting patient from the room's presence list, admit them, and hand the Ticket (with the
room) to the patient's bot through the Desk, which the bots of one process share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from load_tests.motion import Disc, random_point
from load_tests.scenario import ClinicDay, CrowdedRoom
from metaworld.layout import Layout
from metaworld.roles import STAFF_ROLES
from metaworld_sdk import Client

if TYPE_CHECKING:
    from load_tests.bot import Bot
    from load_tests.swarm import Swarm


@dataclass(eq=False)
class Ticket:
    """A waiting patient, as the bots of one process pass it from patient to clinician."""

    avatar: int
    called: trio.Event = field(default_factory=trio.Event)
    arrived: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    room: str | None = None  # set before `called`; None means "go home"


class Desk:
    """Patients waiting in the waiting room, in arrival order."""

    def __init__(self) -> None:
        self.waiting: dict[int, Ticket] = {}

    def arrive(self, avatar: int) -> Ticket:
        ticket = Ticket(avatar)
        self.waiting[avatar] = ticket
        return ticket

    def claim(self, present: set[int]) -> Ticket | None:
        """The longest-waiting patient the clinician can see in the room's presence."""
        for avatar, ticket in self.waiting.items():
            if avatar in present:
                del self.waiting[avatar]
                return ticket
        return None

    def withdraw(self, ticket: Ticket) -> None:
        if self.waiting.get(ticket.avatar) is ticket:
            del self.waiting[ticket.avatar]


async def crowded_room(swarm: Swarm, bot: Bot, scenario: CrowdedRoom) -> None:
    """Join the crowd's room, teleport into the disc, and mill about there."""
    crowd = scenario.crowd
    problem = await bot.join(crowd.room)
    if problem is not None:
        bot.mill()  # stay where the server left us, and still count as steady
        swarm.mark_ready(bot)
        await trio.sleep_forever()
    assert bot.walker is not None
    disc = Disc(crowd.center, swarm.crowd_radius)
    spot = random_point(bot.walker.room, disc, scenario.motion.wall_margin_m, bot.rng)
    await bot.teleport_to(spot)
    bot.mill(disc)
    swarm.mark_ready(bot)
    await trio.sleep_forever()


async def clinic_day(swarm: Swarm, bot: Bot, scenario: ClinicDay) -> None:
    if bot.role == "patient":
        await _patient(swarm, bot, scenario)
    elif bot.role in STAFF_ROLES:
        await _clinician(swarm, bot, scenario)
    else:
        bot.mill()
        swarm.mark_ready(bot)
        await trio.sleep_forever()


async def _patient(swarm: Swarm, bot: Bot, scenario: ClinicDay) -> None:
    """Arrive, walk to the door, wait to be called, see the clinician, go home."""
    clinic, c = scenario.clinic, bot.c
    layout = _layout(c)
    door = next(d for d in layout.doors if d.id == clinic.door)
    bot.mill()
    swarm.mark_ready(bot)
    await trio.sleep(bot.rng.uniform(*clinic.arrival_s))

    while c.room != clinic.waiting_room:
        await _teleport_near(bot, door.a_at, clinic.walk_m)
        if not await bot.walk_to(door.a_at, timeout=60.0):
            await bot.teleport_to(door.a_at)
        problem = await bot.use_door(door.id, clinic.waiting_room)
        if problem is not None:
            await trio.sleep(3.0 if problem == "room_full" else 1.0)
    bot.mill()

    ticket = swarm.desk.arrive(c.avatar_id)
    try:
        await ticket.called.wait()
        if ticket.room is not None:
            await _enter_consultation(swarm, bot, ticket.room)
            ticket.arrived.set()
            bot.mill()
            await ticket.done.wait()
    finally:
        swarm.desk.withdraw(ticket)
    await bot.join(layout.lobby)
    swarm.count("events", "visits")


async def _teleport_near(bot: Bot, target: tuple[float, float], walk_m: float) -> None:
    """Point-and-teleport to `walk_m` short of `target`, as VR visitors do on long ways."""
    assert bot.walker is not None
    here = bot.walker.xz
    gap = math.dist(here, target)
    if gap > walk_m:
        f = 1.0 - walk_m / gap
        await bot.teleport_to(
            (here[0] + (target[0] - here[0]) * f, here[1] + (target[1] - here[1]) * f)
        )


async def _enter_consultation(swarm: Swarm, bot: Bot, room: str) -> None:
    for _ in range(20):
        problem = await bot.join(room)
        if problem is None:
            return
        # The admission may still be on its way through the tick: try again shortly.
        await trio.sleep(0.2)
    swarm.count("events", "consultations_missed")


async def _clinician(swarm: Swarm, bot: Bot, scenario: ClinicDay) -> None:
    """Hold a room; look into the waiting room, pick a patient, admit, consult."""
    clinic, c = scenario.clinic, bot.c
    room = swarm.clinician_room(bot.slot, _layout(c))
    if room is None:
        if any(r.id == "staff" and bot.role in r.enter for r in _layout(c).rooms):
            await bot.join("staff")
        bot.mill()
        swarm.mark_ready(bot)
        await trio.sleep_forever()
        return
    await bot.join(room)
    bot.mill()
    swarm.mark_ready(bot)
    while True:
        await trio.sleep(clinic.call_every_s * bot.rng.uniform(0.5, 1.5))
        if not swarm.desk.waiting:
            continue
        await bot.join(clinic.waiting_room)
        bot.mill()
        await trio.sleep(0.5)  # a look around the room
        present = {a.id for a in c.presence.values() if a.role == "patient"}
        ticket = swarm.desk.claim(present)
        await bot.join(room)
        bot.mill()
        if ticket is not None:
            await _consult(swarm, bot, ticket, room, clinic.consult_s)


async def _consult(
    swarm: Swarm, bot: Bot, ticket: Ticket, room: str, length: tuple[float, float]
) -> None:
    problem = None if bot.c.room == room else "not_in_room"
    problem = problem or await bot.admit(ticket.avatar)
    if problem is not None:
        swarm.count("events", "admissions_failed")
        ticket.called.set()  # room None: the patient goes home
        return
    ticket.room = room
    ticket.called.set()
    swarm.count("events", "admissions")
    with trio.move_on_after(10.0):
        await ticket.arrived.wait()
    await trio.sleep(bot.rng.uniform(*length))
    ticket.done.set()


def _layout(c: Client) -> Layout:
    assert c.layout is not None
    return c.layout

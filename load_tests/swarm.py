"""The swarm: headless bots on the Python SDK, all in one Trio loop.

Theory of operation. `Swarm.run` owns one nursery for its housekeeping (pruning the
latency table, reporting progress, opening and closing the measured window) and one
for the bots. Bots start at the scenario's connection rate. Each bot is a real SDK
client with its own token; it runs its scenario behaviour (a coroutine that joins rooms,
walks, uses doors, admits patients) next to a pose loop that advances its Walker and
sends a pose at the configured rate, and a watcher that notices when the server closes
the session for good.

The measured window opens when every bot has reached its steady behaviour (or failed),
or when the ramp has clearly taken too long, and closes at the deadline; traffic and
latency are counted only inside it, so connecting and walking into place do not skew
the figures. At the deadline every bot says Leave, so the server frees its avatar at
once instead of holding it for a resume. Nothing here outlives `duration_s` plus a short
teardown: the whole run sits under `trio.move_on_at`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import psutil
import trio

from load_tests import botclient
from load_tests.behaviours import Desk, clinic_day, crowded_room
from load_tests.bot import REQUEST_TIMEOUT_S, Bot
from load_tests.scenario import (
    ClinicDay,
    CrowdedRoom,
    Scenario,
    assign_roles,
    consultation_rooms,
)
from load_tests.stats import (
    ClientRates,
    LatencyTracker,
    SwarmResult,
    Traffic,
    median_of_recent,
)
from metaworld.auth import mint_dev_token
from metaworld.layout import Layout
from metaworld.protocol import CloseCode
from metaworld.roles import STAFF_ROLES, Role
from metaworld_sdk import ClientClosed

log = logging.getLogger("metaworld.load.swarm")

Driver = Literal["sdk", "herd"]
TEARDOWN_S: Final = 5.0  # after the deadline: saying Leave and closing sockets
CONNECT_TIMEOUT_S: Final = 15.0  # from a bot's start to its Welcome


@dataclass(frozen=True)
class SwarmConfig:
    url: str
    scenario: Scenario
    count: int  # bots in the whole swarm, over every process
    duration_s: float
    data_dir: Path
    rate_hz: float = 20.0  # poses per second per bot
    seed: int = 0
    slots: tuple[int, ...] | None = None  # this process's bots; None: all of them
    processes: int = 1
    subject_prefix: str = "loadbot"
    decode_poses: bool = False  # decode peers' poses to floats, as the stock SDK client does
    driver: Driver = "sdk"  # "herd": one epoll loop drives every bot of a process (load_tests.herd)

    def my_slots(self) -> tuple[int, ...]:
        return tuple(range(self.count)) if self.slots is None else self.slots


def bot_token(config: SwarmConfig, slot: int, role: Role, visits: int = 0) -> str:
    """A dev token for one bot slot: its own subject (and name, unless a patient)."""
    subject = f"{config.subject_prefix}-{config.scenario.name}-{slot}"
    if visits:
        subject += f"-v{visits}"
    name = f"Bot {slot}" if role != "patient" else None
    ttl = int(config.duration_s + 3600)
    return mint_dev_token(config.data_dir, subject, role, name=name, ttl_s=ttl)


def _close_reason(exc: BaseException) -> str:
    """A short, countable reason for a failed connection or a lost session."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    match exc:
        case ClientClosed(code=code, reason=reason):
            if code is None:
                return f"connect: {reason.split(':')[0]}"
            try:
                return f"closed {code} {CloseCode(code).name.lower()}"
            except ValueError:
                return f"closed {code}"
        case trio.TooSlowError():
            return "timeout"
        case OSError(errno=errno):
            return f"os error {errno}"
    return type(exc).__name__


class Swarm:
    """The bots of one process and what they share: the latency table, the clinic
    desk, and the counters."""

    def __init__(self, config: SwarmConfig) -> None:
        self.config = config
        self.scenario = config.scenario
        self.roles = assign_roles(self.scenario, config.count)
        self.slots = config.my_slots()
        self.result = SwarmResult(count=len(self.slots))
        self.tracker = LatencyTracker()
        self.desk = Desk()
        self.bots: dict[int, Bot] = {}
        self.crowd_radius = (
            self.scenario.radius_m(config.count) if isinstance(self.scenario, CrowdedRoom) else 0
        )
        self.started = 0.0
        self.deadline = math.inf
        self.window_closed = trio.Event()
        self._settled: set[int] = set()  # ready or failed
        self._connected: set[int] = set()
        self._all_settled = trio.Event()
        self._opened: dict[int, Traffic] = {}
        self._window_open = (0.0, 0.0, 0.0)  # trio time, unix time, CPU seconds
        self._process = psutil.Process()
        self._on_window: Callable[[str], None] | None = None

    # ------------------------------------------------------------ counters

    def count(self, kind: str, key: str) -> None:
        table: dict[str, int] = getattr(self.result, kind)
        table[key] = table.get(key, 0) + 1

    def mark_ready(self, bot: Bot) -> None:
        if bot.slot not in self._settled:
            self.result.ready += 1
            self._settle(bot.slot)

    def _fail(self, slot: int, reason: str) -> None:
        self.result.failed += 1
        self.count("failures", reason)
        self._settle(slot)

    def _settle(self, slot: int) -> None:
        self._settled.add(slot)
        if len(self._settled) >= len(self.slots):
            self._all_settled.set()

    def clinician_room(self, slot: int, layout: Layout) -> str | None:
        """The consultation room of a staff bot, by its rank among all staff slots."""
        assert isinstance(self.scenario, ClinicDay)
        rank = sum(1 for s in range(slot) if self.roles[s] in STAFF_ROLES)
        rooms = consultation_rooms(self.scenario, layout)
        per_room = self.scenario.clinic.clinicians_per_room
        return rooms[rank // per_room].id if rank < len(rooms) * per_room else None

    def progress(self) -> dict[str, Any]:
        now = trio.current_time()
        traffic = [b.traffic(now) for b in self.bots.values()]
        return {
            "count": len(self.slots),
            "connected": sum(1 for b in self.bots.values() if b.client and b.client.connected),
            "failed": self.result.failed,
            "ready": self.result.ready,
            "elapsed": now - self.started,
            "latency_p50": median_of_recent(self.tracker.recent),
            "bytes_in": sum(t.bytes_in for t in traffic),
            "measuring": self.tracker.measuring,
        }

    # ------------------------------------------------------------ running

    async def run(
        self,
        progress: Callable[[dict[str, Any]], None] | None = None,
        progress_every_s: float = 0.25,
        on_window: Callable[[str], None] | None = None,
    ) -> SwarmResult:
        """Run every bot of this process to the deadline. `on_window` hears "open" and
        "close" at the edges of the measured window (the runner scrapes the server)."""
        self._on_window = on_window
        self.started = trio.current_time()
        self.deadline = self.started + self.config.duration_s
        with trio.move_on_at(self.deadline + TEARDOWN_S):
            async with trio.open_nursery() as housekeeping:
                housekeeping.start_soon(self._prune)
                housekeeping.start_soon(self._measure)
                if progress is not None:
                    housekeeping.start_soon(self._report_progress, progress, progress_every_s)
                async with trio.open_nursery() as bots:
                    await self._ramp(bots)
                housekeeping.cancel_scope.cancel()
        if not self.window_closed.is_set():
            self._close_window()
        for slot in self.slots:
            if slot not in self._connected and slot not in self._settled:
                self._fail(slot, "no welcome before the deadline")
        return self.result

    async def _ramp(self, nursery: trio.Nursery) -> None:
        spacing = self.config.processes / self.scenario.connect_per_s
        for k, slot in enumerate(self.slots):
            await trio.sleep_until(self.started + k * spacing)
            if trio.current_time() >= self.deadline:
                for late in self.slots[k:]:
                    self._fail(late, "not started before the deadline")
                return
            nursery.start_soon(self._run_bot, slot)

    async def _prune(self) -> None:
        while True:
            await trio.sleep(1.0)
            self.tracker.prune(trio.current_time())

    async def _report_progress(
        self, progress: Callable[[dict[str, Any]], None], every_s: float
    ) -> None:
        while True:
            progress(self.progress())
            await trio.sleep(every_s)

    async def _measure(self) -> None:
        """Open the window once everyone is in place; close it at the deadline."""
        ramp = len(self.slots) * self.config.processes / self.scenario.connect_per_s
        latest = self.started + min(ramp + 10.0, 0.6 * self.config.duration_s)
        with trio.move_on_at(latest):
            await self._all_settled.wait()
        now = trio.current_time()
        self._opened = {
            slot: bot.traffic(now)
            for slot, bot in self.bots.items()
            if bot.client is not None and bot.client.connected
        }
        cpu = self._process.cpu_times()
        self._window_open = (now, time.time(), cpu.user + cpu.system)
        self.tracker.measuring = True
        log.info("measuring: %d bots in place", len(self._opened))
        if self._on_window is not None:
            self._on_window("open")
        await trio.sleep_until(self.deadline)
        self._close_window()

    def _close_window(self) -> None:
        self.tracker.measuring = False
        opened_at, opened_wall, cpu_before = self._window_open
        if opened_at:
            now = trio.current_time()
            cpu = self._process.cpu_times()
            self.result.window_s = now - opened_at
            self.result.window_wall = (opened_wall, time.time())
            self.result.cpu_s = cpu.user + cpu.system - cpu_before
            for slot, start in self._opened.items():
                rates = ClientRates.between(
                    slot, self.roles[slot], start, self.bots[slot].traffic(now)
                )
                if rates is not None:
                    self.result.clients.append(rates)
            self.result.latency = self.tracker.histogram
            if self._on_window is not None:
                self._on_window("close")
        self.window_closed.set()

    # ------------------------------------------------------------ one bot's life

    async def _run_bot(self, slot: int) -> None:
        bot = Bot(self, slot, self.roles[slot])
        self.bots[slot] = bot
        while trio.current_time() < self.deadline:
            ended = await self._session(bot)
            if ended != "visit over" or not getattr(self.scenario, "clinic", None):
                break
            if not self.scenario.clinic.revisit:  # type: ignore[union-attr]
                break
            await trio.sleep(bot.rng.uniform(1.0, 3.0))
            bot.visits += 1

    async def _session(self, bot: Bot) -> str:
        """One connection of one bot, from Hello to Leave; says how it ended."""
        first = bot.visits == 0
        ended, connected = "deadline", False
        give_up = min(trio.current_time() + CONNECT_TIMEOUT_S, self.deadline)
        with trio.CancelScope(deadline=give_up) as scope:
            try:
                async with botclient.connect(
                    self.config.url,
                    bot_token(self.config, bot.slot, bot.role, bot.visits),
                    decode_poses=self.config.decode_poses,
                    max_backoff_s=2.0,
                ) as client:
                    # The first Snapshot tells us where the server put our avatar.
                    await client.wait_for(lambda cl: cl.last_tick > 0, REQUEST_TIMEOUT_S)
                    scope.deadline = self.deadline + TEARDOWN_S
                    connected = True
                    self._connected.add(bot.slot)
                    self.result.connected += first
                    self.result.sessions += 1
                    bot.attach(client)
                    try:
                        ended = await self._live(bot)
                    finally:
                        self.result.reconnects += max(0, client.connects - 1)
                        await self._leave(bot, ended)
                        bot.detach()
            except Exception as exc:  # every failure is counted, none is raised
                reason = _close_reason(exc)
                if reason == type(exc).__name__:
                    log.warning("bot %d failed unexpectedly", bot.slot, exc_info=exc)
                if first and not connected:
                    self._fail(bot.slot, reason)
                else:
                    self.count("failures", reason)
                return "failed"
        if scope.cancelled_caught and not connected and first:
            self._fail(bot.slot, "timeout")
        return ended

    async def _live(self, bot: Bot) -> str:
        """Run the behaviour until the deadline, the end of a visit, or a lost session."""
        c = bot.c
        ended = "deadline"
        with trio.move_on_at(self.deadline):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(bot.pose_loop)
                if self.scenario.chat_every_s > 0:
                    nursery.start_soon(bot.chat_loop, self.scenario.chat_every_s)

                async def watch_close() -> None:
                    nonlocal ended
                    await c.wait_for(lambda cl: cl.closed is not None, timeout=math.inf)
                    ended = "closed"
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_close)
                await self._behave(bot)
                ended = "visit over"
                nursery.cancel_scope.cancel()
        if ended == "closed":
            assert c.closed is not None
            reason = _close_reason(c.closed)
            self.result.failed += 1
            self.count("failures", reason)
            self._settle(bot.slot)
        return ended

    async def _behave(self, bot: Bot) -> None:
        match self.scenario:
            case CrowdedRoom():
                await crowded_room(self, bot, self.scenario)
            case ClinicDay():
                await clinic_day(self, bot, self.scenario)

    async def _leave(self, bot: Bot, ended: str) -> None:
        c = bot.c
        if ended == "deadline":
            await self.window_closed.wait()
        bot.walking = False
        if c.closed is not None:
            return
        with trio.move_on_after(TEARDOWN_S / 2):
            await c.leave()
            await c.wait_for(lambda cl: cl.closed is not None, timeout=TEARDOWN_S / 2)

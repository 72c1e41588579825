"""The herd: many crowded-room bots driven by one thread, for the heaviest loads.

The Trio swarm gives each bot an SDK client with tasks of its own; every pose sent and
every state message received is a task switch, and at 500 bots x 20 Hz in both
directions the swarm needs more CPU than the server it measures (on a 2-core machine
they compete for the same cores). A herd runs the same crowded-room scenario with the
same wire traffic for a fraction of the cost:

- each bot is still a real WebSocket client: its own TCP connection, RFC 6455 opening
  handshake, masked frames, its own dev token and role, the protocol's messages (our
  `wsframe` codec and `metaworld.protocol`, which the SDK is built on);
- one `select.epoll` loop reads every socket that is ready in one system call, and sends
  poses from a schedule that spreads the bots evenly over the send period;
- bodies come from a `Flock` (the Walker's motion model over arrays) and are quantized
  for a whole batch of bots at once;
- a state message is decoded only where it matters: reliable messages always, pose
  records only by the bots that measure latency (every `latency_every`-th bot).

It only knows the crowded room: join the crowd's room, teleport into the disc in hops
the server accepts, mill about, chat now and then, and say Leave at the deadline. The
measured window, the counters and the result are the swarm's (`SwarmResult`), so the
runner and the reports do not care which driver ran.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import random
import select
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

import h11
import numpy as np
import psutil

from load_tests.flock import Flock
from load_tests.motion import Disc, random_point
from load_tests.scenario import CrowdedRoom, assign_roles
from load_tests.stats import ClientRates, LatencyTracker, SwarmResult, Traffic, median_of_recent
from load_tests.swarm import CONNECT_TIMEOUT_S, TEARDOWN_S, SwarmConfig, bot_token
from metaworld import protocol, quant, wsframe
from metaworld.layout import Layout
from metaworld.protocol import CloseCode
from metaworld.roles import Role
from metaworld.wsframe import Close, FrameError, Message, Ping
from metaworld.wsframe import Role as Side

log = logging.getLogger("metaworld.load.herd")

SLOTS_PER_PERIOD: Final = 10  # the send period is cut into this many batches of bots
REQUEST_TIMEOUT_S: Final = 3.0  # a join or a teleport hop must be answered in this time
MAX_HOP_M: Final = 10.0  # teleport hops stay under the server's 12 m limit
MAX_HOPS: Final = 12
RECEIVE_BYTES: Final = 256 * 1024
HOUSEKEEPING_S: Final = 0.1
_DELTA_HEAD: Final = protocol.encode(protocol.Delta(0, 0.0, [], [], b""))[1:7]  # tag bytes
_RECORD: Final = quant.RECORD_SIZE


class Phase(Enum):
    CONNECTING = "connecting"  # TCP connect in progress
    UPGRADING = "upgrading"  # waiting for the 101
    WELCOME = "welcome"  # Hello sent, waiting for Welcome and the first Snapshot
    JOINING = "joining"  # JoinRoom sent
    HOPPING = "hopping"  # MoveTo sent, waiting for the placement
    MILLING = "milling"  # steady: sending poses
    LEAVING = "leaving"  # Leave sent
    DONE = "done"


@dataclass(eq=False)
class HerdBot:
    slot: int
    index: int  # row in the flock
    role: Role
    sock: socket.socket
    measures: bool  # decodes pose records for the latency table
    phase: Phase = Phase.CONNECTING
    due: float = 0.0  # deadline of the current phase
    http: h11.Connection | None = None
    key: str = ""
    reader: wsframe.FrameReader = field(
        default_factory=lambda: wsframe.FrameReader(Side.CLIENT, protocol.MAX_MESSAGE_BYTES)
    )
    pending: bytearray = field(default_factory=bytearray)  # bytes the socket did not take
    avatar_id: int = -1
    id_bytes: bytes = b""
    room: str = ""
    room_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    epoch: int = 0
    here: tuple[float, float] = (0.0, 0.0)
    has_snapshot: bool = False
    target: tuple[float, float] | None = None
    hops: int = 0
    seq: int = 0
    last_body: bytes = b""
    next_chat: float = math.inf
    lines: int = 0
    seen: dict[bytes, bytes] = field(default_factory=dict)
    counters: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # bi, bo, mi, mo

    def traffic(self, now: float) -> Traffic:
        return Traffic(now, *self.counters)


class Herd:
    """The crowded-room bots of one process, on one epoll loop."""

    def __init__(self, config: SwarmConfig, *, latency_every: int = 8) -> None:
        scenario = config.scenario
        if not isinstance(scenario, CrowdedRoom):
            raise TypeError("the herd driver runs only the crowded-room scenario")
        self.config = config
        self.scenario = scenario
        self.slots = config.my_slots()
        self.rows = {slot: row for row, slot in enumerate(self.slots)}
        self.roles = assign_roles(scenario, config.count)
        self.result = SwarmResult(count=len(self.slots))
        self.tracker = LatencyTracker()
        self.disc = Disc(scenario.crowd.center, scenario.radius_m(config.count))
        # The clinic's layout comes with the first Welcome.
        self.layout: Layout | None = None
        self._flock: Flock | None = None
        self.rng = random.Random(config.seed * 7919 + (self.slots[0] if self.slots else 0))
        self.latency_every = max(1, latency_every)
        url = urllib.parse.urlsplit(config.url)
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        self.resource = url.path or "/"
        self.bots: dict[int, HerdBot] = {}  # by file descriptor
        self.batches: list[list[HerdBot]] = [[] for _ in range(SLOTS_PER_PERIOD)]
        self.epoll = select.epoll()
        self.period = 1.0 / config.rate_hz
        self._settled: set[int] = set()
        self._opened: dict[int, Traffic] = {}
        self._window_open = (0.0, 0.0, 0.0)
        self._process = psutil.Process()
        self.measuring = False
        self.window_done = False

    # ------------------------------------------------------------ running

    def run(
        self, progress: Callable[[dict[str, Any]], None] | None = None, every_s: float = 0.5
    ) -> SwarmResult:
        """Run every bot to the deadline, then say Leave and close; what was measured."""
        now = time.monotonic()
        self.started = now
        self.deadline = now + self.config.duration_s
        spacing = self.config.processes / self.scenario.connect_per_s
        ramp = len(self.slots) * spacing
        self.window_latest = now + min(ramp + 10.0, 0.6 * self.config.duration_s)
        starts = [(now + k * spacing, slot) for k, slot in enumerate(self.slots)]
        starts.reverse()
        next_slot, slot_k = now, 0
        next_chores, next_progress = now, now
        try:
            while True:
                now = time.monotonic()
                if now >= self.deadline:
                    break
                wait = min(next_slot, next_chores, self.deadline) - now
                self._poll(max(wait, 0.0))
                now = time.monotonic()
                while now >= next_slot:
                    # Late batches go out late but all go out (a burst of state messages
                    # can hold the loop up for a few batches); more than a whole period
                    # behind, the schedule restarts from now instead of bursting.
                    self._send_poses(slot_k, now)
                    slot_k = (slot_k + 1) % SLOTS_PER_PERIOD
                    next_slot += self.period / SLOTS_PER_PERIOD
                    if now - next_slot > self.period:
                        next_slot = now
                if now >= next_chores:
                    next_chores = now + HOUSEKEEPING_S
                    while starts and starts[-1][0] <= now:
                        self._start(starts.pop()[1], now)
                    self._chores(now)
                    if progress is not None and now >= next_progress:
                        next_progress = now + every_s
                        progress(self.progress(now))
            for _, slot in starts:
                self._fail(slot, "not started before the deadline")
            self._close_window(time.monotonic())
            self._leave_all()
        finally:
            for bot in list(self.bots.values()):
                self._drop(bot)
            self.epoll.close()
        return self.result

    def progress(self, now: float) -> dict[str, Any]:
        bots = self.bots.values()
        return {
            "count": len(self.slots),
            "connected": sum(1 for b in bots if b.avatar_id >= 0 and b.phase != Phase.DONE),
            "failed": self.result.failed,
            "ready": self.result.ready,
            "elapsed": now - self.started,
            "latency_p50": median_of_recent(self.tracker.recent),
            "bytes_in": sum(b.counters[0] for b in bots),
            "measuring": self.measuring,
        }

    # ------------------------------------------------------------ connections

    def _start(self, slot: int, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        index = self.rows[slot]
        bot = HerdBot(slot, index, self.roles[slot], sock, measures=index % self.latency_every == 0)
        bot.due = now + CONNECT_TIMEOUT_S
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._fail(slot, f"connect: {os.strerror(code)}")
            return
        self.bots[sock.fileno()] = bot
        self.batches[index % SLOTS_PER_PERIOD].append(bot)
        self.epoll.register(sock.fileno(), select.EPOLLOUT)

    def _poll(self, timeout: float) -> None:
        for fd, events in self.epoll.poll(timeout):
            bot = self.bots.get(fd)
            if bot is not None:
                self._ready(bot, events)

    def _ready(self, bot: HerdBot, events: int) -> None:
        if bot.phase == Phase.CONNECTING:
            code = bot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._lost(bot, f"connect: {os.strerror(code)}")
                return
            self._upgrade(bot)
            return
        if events & select.EPOLLOUT and bot.pending:
            self._flush(bot)
        if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            self._receive(bot)

    def _upgrade(self, bot: HerdBot) -> None:
        bot.phase = Phase.UPGRADING
        bot.key = wsframe.new_key()
        http = bot.http = h11.Connection(h11.CLIENT)
        host, port = self.address
        headers = [
            ("Host", f"{host}:{port}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", bot.key),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", protocol.SUBPROTOCOL),
        ]
        request = http.send(h11.Request(method="GET", target=self.resource, headers=headers))
        self.epoll.modify(bot.sock.fileno(), select.EPOLLIN)
        self._write(bot, (request or b"") + (http.send(h11.EndOfMessage()) or b""))

    def _handshake_data(self, bot: HerdBot, data: bytes, now: float) -> None:
        http = bot.http
        assert http is not None
        http.receive_data(data)
        while True:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                self._lost(bot, f"connect: bad handshake response: {exc}")
                return
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                fields = dict(event.headers)
                if fields.get(b"sec-websocket-accept") != wsframe.accept_key(bot.key).encode():
                    self._lost(bot, "connect: wrong Sec-WebSocket-Accept")
                    return
                rest, _ = http.trailing_data
                bot.http = None
                bot.phase = Phase.WELCOME
                hello = protocol.Hello(self._token(bot), "bot", protocol.PROTOCOL_VERSION)
                self._send(bot, hello)
                if rest:
                    self._frames(bot, bytes(rest), now)
                return
            if isinstance(event, h11.Response | h11.ConnectionClosed):
                status = getattr(event, "status_code", "closed")
                self._lost(bot, f"connect: refused {status}")
                return

    def _token(self, bot: HerdBot) -> str:
        return bot_token(self.config, bot.slot, bot.role, visits=0)

    def _lost(self, bot: HerdBot, reason: str) -> None:
        """A bot's connection ended before the deadline: a failure, counted once."""
        if bot.phase in (Phase.LEAVING, Phase.DONE):
            self._drop(bot)
            return
        if bot.avatar_id < 0:
            self._fail(bot.slot, reason)
        else:
            self.result.failed += 1
            self.result.failures[reason] = self.result.failures.get(reason, 0) + 1
            self._settle(bot.slot)
        self._drop(bot)

    def _drop(self, bot: HerdBot) -> None:
        bot.phase = Phase.DONE
        fd = bot.sock.fileno()
        if fd >= 0:
            self.bots.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self.epoll.unregister(fd)
            bot.sock.close()

    # ------------------------------------------------------------ bytes

    def _write(self, bot: HerdBot, data: bytes) -> None:
        if bot.pending:
            bot.pending += data
            return
        try:
            sent = bot.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost(bot, "connection lost")
            return
        if sent < len(data):
            bot.pending += data[sent:]
            self.epoll.modify(bot.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def _flush(self, bot: HerdBot) -> None:
        try:
            sent = bot.sock.send(bot.pending)
        except BlockingIOError:
            return
        except OSError:
            self._lost(bot, "connection lost")
            return
        del bot.pending[:sent]
        if not bot.pending:
            self.epoll.modify(bot.sock.fileno(), select.EPOLLIN)

    def _send(self, bot: HerdBot, message: protocol.Tagged) -> None:
        self._send_payload(bot, protocol.encode(message))

    def _send_payload(self, bot: HerdBot, payload: bytes) -> None:
        bot.counters[1] += len(payload)
        bot.counters[3] += 1
        self._write(bot, wsframe.encode_message(payload, Side.CLIENT))

    def _receive(self, bot: HerdBot) -> None:
        try:
            data = bot.sock.recv(RECEIVE_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        now = time.monotonic()
        if not data:
            self._lost(bot, "connection lost")
        elif bot.phase == Phase.UPGRADING:
            self._handshake_data(bot, data, now)
        else:
            self._frames(bot, data, now)

    def _frames(self, bot: HerdBot, data: bytes, now: float) -> None:
        try:
            events = bot.reader.feed(data)
        except FrameError as exc:
            self._lost(bot, f"bad frame from the server: {exc}")
            return
        for event in events:
            if type(event) is Message:
                payload = event.data
                bot.counters[0] += len(payload)
                bot.counters[2] += 1
                if isinstance(payload, bytes):
                    self._message(bot, payload, now)
            elif type(event) is Ping:
                pong = wsframe.encode_frame(wsframe.Opcode.PONG, event.payload, Side.CLIENT)
                self._write(bot, pong)
            elif type(event) is Close:
                self._closed(bot, event.code, event.reason)
                return

    def _closed(self, bot: HerdBot, code: int, reason: str) -> None:
        if bot.phase != Phase.LEAVING:
            try:
                name = CloseCode(code).name.lower()
            except ValueError:
                name = reason[:40]
            self._lost(bot, f"closed {code} {name}")
            return
        self._drop(bot)

    # ------------------------------------------------------------ messages

    def _message(self, bot: HerdBot, data: bytes, now: float) -> None:
        if data[1:7] == _DELTA_HEAD:
            if bot.measures and self.measuring:
                self._arrived(bot, protocol.decode_server(data).poses, now)  # type: ignore[union-attr]
            return
        try:
            message = protocol.decode_server(data)
        except protocol.ProtocolError:
            self._count("errors", "undecodable")
            return
        match message:
            case protocol.Welcome(you=you, room=room):
                if self.layout is None:
                    self._adopt(message.layout)
                bot.avatar_id = you.id
                bot.id_bytes = you.id.to_bytes(2, "little")
                self._set_room(bot, room)
            case protocol.Snapshot():
                bot.epoch = message.epoch
                self._set_room(bot, message.room)
                self._set_here(bot, message.you)
                if not bot.has_snapshot:
                    bot.has_snapshot = True
                    self.result.connected += 1
                    self.result.sessions += 1
                    self._join(bot, now)
            case protocol.Placed() | protocol.Correction():
                if isinstance(message, protocol.Correction):
                    self._count("corrections", message.reason)
                bot.epoch = message.epoch
                self._set_room(bot, message.room)
                self._set_here(bot, message.body)
                self._placed(bot, now)
            case protocol.Error(code=code):
                self._count("errors", code)
                if bot.phase in (Phase.JOINING, Phase.HOPPING):
                    self._settle_in(bot, now)  # stay where the server left us
            case _:
                pass

    def _adopt(self, layout: Layout) -> None:
        self.layout = layout
        room = layout.room(self.scenario.crowd.room)
        motion, seed = self.scenario.motion, self.config.seed
        self._flock = Flock(room, self.disc, motion, len(self.slots), seed)

    @property
    def flock(self) -> Flock:
        assert self._flock is not None, "no Welcome yet"
        return self._flock

    def _set_room(self, bot: HerdBot, room_id: str) -> None:
        assert self.layout is not None
        bot.room = room_id
        bot.room_min = self.layout.room(room_id).bounds.min

    def _set_here(self, bot: HerdBot, body: bytes) -> None:
        local = quant.decode_bodies(quant.body_from_bytes(body))[0, 0]
        bot.here = (float(local[0]) + bot.room_min[0], float(local[2]) + bot.room_min[2])

    def _arrived(self, bot: HerdBot, poses: bytes, now: float) -> None:
        seen, tracker = bot.seen, self.tracker
        for offset in range(0, len(poses), _RECORD):
            record = poses[offset : offset + _RECORD]
            sender = record[:2]
            if seen.get(sender) != record:
                seen[sender] = record
                tracker.received(record, now)

    def _count(self, kind: str, key: str) -> None:
        table: dict[str, int] = getattr(self.result, kind)
        table[key] = table.get(key, 0) + 1

    # ------------------------------------------------------------ behaviour

    def _join(self, bot: HerdBot, now: float) -> None:
        crowd = self.scenario.crowd.room
        if bot.room == crowd:
            self._hop_or_settle(bot, now)
            return
        bot.phase, bot.due = Phase.JOINING, now + REQUEST_TIMEOUT_S
        self._send(bot, protocol.JoinRoom(crowd))

    def _placed(self, bot: HerdBot, now: float) -> None:
        joined = bot.phase == Phase.JOINING and bot.room == self.scenario.crowd.room
        if joined or bot.phase == Phase.HOPPING:
            self._hop_or_settle(bot, now)
        elif bot.phase == Phase.MILLING:
            # A correction or a placement: the walk starts over from there.
            self.flock.place(bot.index, bot.here, now, mill=True)

    def _hop_or_settle(self, bot: HerdBot, now: float) -> None:
        if bot.target is None:
            margin = self.scenario.motion.wall_margin_m
            bot.target = random_point(self.flock.room, self.disc, margin, self.rng)
        target, here = bot.target, bot.here
        gap = math.dist(here, target)
        if gap < 0.3 or bot.hops >= MAX_HOPS:
            self._settle_in(bot, now)
            return
        bot.hops += 1
        f = min(1.0, MAX_HOP_M / gap)
        x, z = here[0] + (target[0] - here[0]) * f, here[1] + (target[1] - here[1]) * f
        bot.phase, bot.due = Phase.HOPPING, now + REQUEST_TIMEOUT_S
        self._send(bot, protocol.MoveTo(x, z))

    def _settle_in(self, bot: HerdBot, now: float) -> None:
        """Start milling where the bot is; it counts as steady from now on."""
        bot.phase, bot.due = Phase.MILLING, math.inf
        self.flock.place(bot.index, bot.here, now, mill=bot.room == self.flock.room.id)
        if self.scenario.chat_every_s > 0:
            bot.next_chat = now + self.rng.expovariate(1.0 / self.scenario.chat_every_s)
        self.result.ready += 1
        self._settle(bot.slot)

    def _send_poses(self, k: int, now: float) -> None:
        batch = [bot for bot in self.batches[k] if bot.phase == Phase.MILLING]
        if not batch:
            return
        idx = np.fromiter((b.index for b in batch), dtype=np.intp, count=len(batch))
        poses = self.flock.advance(idx, now)
        for j, bot in enumerate(batch):
            poses[j, :, :3] -= bot.room_min
        raw = quant.encode_bodies(poses).tobytes()
        size = quant.BODY_SIZE
        for j, bot in enumerate(batch):
            body = raw[j * size : (j + 1) * size]
            if body == bot.last_body:
                # Standing dead still: a millimetre of head height keeps bodies unique,
                # which the latency table relies on.
                poses[j, 0, 1] += 0.001 if bot.seq % 2 else -0.001
                body = quant.encode_bodies(poses[j : j + 1]).tobytes()
            bot.last_body = body
            bot.seq += 1
            self.tracker.sent(bot.id_bytes + body, now)
            self._send_payload(bot, protocol.encode(protocol.Pose(bot.epoch, body, bot.seq)))

    def _chores(self, now: float) -> None:
        """Timeouts, chat lines, the latency table and the measured window."""
        for bot in list(self.bots.values()):
            if now >= bot.due:
                if bot.phase in (Phase.JOINING, Phase.HOPPING):
                    self._settle_in(bot, now)
                elif bot.phase in (Phase.CONNECTING, Phase.UPGRADING, Phase.WELCOME):
                    self._lost(bot, "timeout")
            elif bot.phase == Phase.MILLING and now >= bot.next_chat:
                bot.lines += 1
                bot.next_chat = now + self.rng.expovariate(1.0 / self.scenario.chat_every_s)
                self._send(bot, protocol.Chat(f"bot {bot.slot}: line {bot.lines}"))
                self._count("events", "chats")
        self.tracker.prune(now)
        all_settled = len(self._settled) >= len(self.slots)
        if not (self.measuring or self.window_done) and (all_settled or now >= self.window_latest):
            self._open_window(now)

    # ------------------------------------------------------------ the window

    def _fail(self, slot: int, reason: str) -> None:
        self.result.failed += 1
        self._count("failures", reason)
        self._settle(slot)

    def _settle(self, slot: int) -> None:
        self._settled.add(slot)

    def _open_window(self, now: float) -> None:
        self._opened = {
            bot.slot: bot.traffic(now) for bot in self.bots.values() if bot.phase == Phase.MILLING
        }
        cpu = self._process.cpu_times()
        self._window_open = (now, time.time(), cpu.user + cpu.system)
        self.measuring = self.tracker.measuring = True
        log.info("measuring: %d bots in place", len(self._opened))

    def _close_window(self, now: float) -> None:
        self.measuring = self.tracker.measuring = False
        if self.window_done or not self._window_open[0]:
            return
        self.window_done = True
        opened_at, opened_wall, cpu_before = self._window_open
        cpu = self._process.cpu_times()
        self.result.window_s = now - opened_at
        self.result.window_wall = (opened_wall, time.time())
        self.result.cpu_s = cpu.user + cpu.system - cpu_before
        by_slot = {bot.slot: bot for bot in self.bots.values()}
        for slot, start in self._opened.items():
            bot = by_slot.get(slot)
            if bot is None:
                continue
            rates = ClientRates.between(slot, bot.role, start, bot.traffic(now))
            if rates is not None:
                self.result.clients.append(rates)
        self.result.latency = self.tracker.histogram

    def _leave_all(self) -> None:
        """Say Leave on every connection and wait (a little) for the server's close."""
        for bot in list(self.bots.values()):
            if bot.phase in (Phase.CONNECTING, Phase.UPGRADING):
                self._drop(bot)
            elif bot.phase != Phase.DONE:
                self._send(bot, protocol.Leave())
                bot.phase = Phase.LEAVING
        give_up = time.monotonic() + TEARDOWN_S / 2
        while self.bots and time.monotonic() < give_up:
            self._poll(0.1)

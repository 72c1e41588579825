"""One bot: an SDK session, a walking body, and what it counts.

A Bot sends its pose at a fixed rate from its Walker, notes every record it sends in
the swarm's latency table and looks up every record it receives, and keeps the walker
where the server says the avatar is (placements and corrections reset it). Its request
helpers send one request and wait for the outcome or an error reply.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import trio
import trio_websocket

from load_tests.motion import Disc, Walker, encode_body
from load_tests.stats import Traffic
from metaworld import protocol
from metaworld.roles import Role
from metaworld_sdk import Client

if TYPE_CHECKING:
    from load_tests.swarm import Swarm

REQUEST_TIMEOUT_S: Final = 3.0  # a join, door or teleport must be answered in this time
MAX_HOP_M: Final = 10.0  # teleports go in hops shorter than the server's 12 m limit
_ID: Final = struct.Struct("<H")
_RECORD: Final = 30  # bytes: avatar id and pose body, as the downlink carries them


class Bot:
    """One bot slot: its sessions, its body, and its share of the counters."""

    def __init__(self, swarm: Swarm, slot: int, role: Role) -> None:
        self.swarm = swarm
        self.slot = slot
        self.role = role
        self.rng = random.Random(swarm.config.seed * 1_000_003 + slot)
        self.client: Client | None = None
        self.walker: Walker | None = None
        self.walking = False  # the pose loop sends only while True
        self.visits = 0
        self._seen: dict[bytes, bytes] = {}  # sender id -> newest record received
        self._last_body = b""
        self._seq = 0
        # Counters of finished sessions, and of poses sent past the SDK's counters.
        self._done = [0, 0, 0, 0]
        self._raw_bytes = 0
        self._raw_messages = 0

    @property
    def c(self) -> Client:
        assert self.client is not None
        return self.client

    def traffic(self, now: float) -> Traffic:
        totals = list(self._done)
        if self.client is not None:
            c = self.client
            for i, n in enumerate((c.bytes_in, c.bytes_out, c.messages_in, c.messages_out)):
                totals[i] += n
        bi, bo, mi, mo = totals
        return Traffic(now, bi, bo + self._raw_bytes, mi, mo + self._raw_messages)

    def attach(self, client: Client) -> None:
        self.client = client
        client.on_message = self.on_message
        assert client.layout is not None
        room = client.layout.room(client.room)
        here = (float(client.pose[0, 0]), float(client.pose[0, 2]))
        self.walker = Walker(room, here, self.swarm.scenario.motion, self.rng)
        self._seen.clear()

    def detach(self) -> None:
        c = self.c
        for i, n in enumerate((c.bytes_in, c.bytes_out, c.messages_in, c.messages_out)):
            self._done[i] += n
        self.client = None
        self.walking = False

    # ------------------------------------------------------------ receiving

    def on_message(self, message: protocol.ServerMessage) -> None:
        match message:
            case protocol.Delta(poses=poses) if poses:
                self._arrived(poses)
            case protocol.Correction(reason=reason):
                self.swarm.count("corrections", reason)
                self._replaced(message.room)
            case protocol.Placed():
                self._replaced(message.room)
            case protocol.Error(code=code):
                self.swarm.count("errors", code)
            case _:
                pass

    def _arrived(self, poses: bytes) -> None:
        now = trio.current_time()
        seen, tracker = self._seen, self.swarm.tracker
        for offset in range(0, len(poses), _RECORD):
            record = poses[offset : offset + _RECORD]
            sender = record[:2]
            if seen.get(sender) == record:
                continue  # a far viewer gets the same pose again: not a new arrival
            seen[sender] = record
            tracker.received(record, now)

    def _replaced(self, room_id: str) -> None:
        """The server put us somewhere: the walker starts over from there."""
        c = self.c
        if self.walker is not None and c.layout is not None:
            here = (float(c.pose[0, 0]), float(c.pose[0, 2]))
            self.walker.reset(c.layout.room(room_id), here)

    # ------------------------------------------------------------ sending

    async def pose_loop(self) -> None:
        period = 1.0 / self.swarm.config.rate_hz
        next_at = trio.current_time() + self.rng.uniform(0.0, period)
        last = next_at
        while True:
            await trio.sleep_until(next_at)
            now = trio.current_time()
            next_at = max(next_at + period, now)  # behind: skip, never burst
            dt, last = now - last, now
            if self.walking and self.walker is not None and self.c.connected:
                await self._send_pose(now, dt)

    async def _send_pose(self, now: float, dt: float) -> None:
        c, walker = self.c, self.walker
        assert walker is not None
        pose = walker.advance(dt)
        room_min = walker.room.bounds.min
        body = encode_body(pose, room_min)
        if body == self._last_body:
            # Standing dead still: a millimetre of head height keeps bodies unique,
            # which the latency table relies on.
            pose[0, 1] += 0.001 if self._seq % 2 else -0.001
            body = encode_body(pose, room_min)
        self._last_body = body
        self._seq += 1
        self.swarm.tracker.sent(_ID.pack(c.avatar_id) + body, now)
        data = protocol.encode(protocol.Pose(c.epoch, body, self._seq))
        try:
            await c.send_raw(data)
        except trio_websocket.ConnectionClosed:
            return
        self._raw_bytes += len(data)
        self._raw_messages += 1

    async def chat_loop(self, mean_s: float) -> None:
        lines = 0
        while True:
            await trio.sleep(self.rng.expovariate(1.0 / mean_s))
            lines += 1
            await self.c.chat(f"bot {self.slot}: line {lines}")
            self.swarm.count("events", "chats")

    # ------------------------------------------------------------ requests

    async def request(
        self, action: Callable[[], Awaitable[None]], done: Callable[[Client], bool]
    ) -> str | None:
        """Send a request and wait for its outcome: None, or the error code."""
        c = self.c
        errors = len(c.errors)
        await action()
        try:
            await c.wait_for(lambda cl: done(cl) or len(cl.errors) > errors, REQUEST_TIMEOUT_S)
        except trio.TooSlowError:
            return "timeout"
        return None if done(c) else c.errors[-1].code

    async def join(self, room_id: str) -> str | None:
        """Go to a room by menu (rooms here are not all next to each other)."""
        c = self.c
        if c.room == room_id:
            return None
        self.walking = False
        try:
            return await self.request(lambda: c.join_room(room_id), lambda cl: cl.room == room_id)
        finally:
            self.walking = True

    async def use_door(self, door: str, room_id: str) -> str | None:
        c = self.c
        self.walking = False
        try:
            return await self.request(lambda: c.use_door(door), lambda cl: cl.room == room_id)
        finally:
            self.walking = True

    async def teleport_to(self, target: tuple[float, float]) -> bool:
        """Point-and-teleport in hops the server accepts, for getting into place fast."""
        walker = self.walker
        assert walker is not None
        self.walking = False
        try:
            for _ in range(12):
                here = walker.xz
                gap = math.dist(here, target)
                if gap < 0.3:
                    return True
                f = min(1.0, MAX_HOP_M / gap)
                x, z = here[0] + (target[0] - here[0]) * f, here[1] + (target[1] - here[1]) * f
                if await self._hop(x, z):
                    return False
            return False
        finally:
            self.walking = True

    async def _hop(self, x: float, z: float) -> str | None:
        c = self.c
        epoch = c.epoch
        return await self.request(lambda: c.move_to(x, z), lambda cl: cl.epoch != epoch)

    async def walk_to(self, target: tuple[float, float], timeout: float) -> bool:
        """Walk there (around an obstacle if need be); False if there is no way or no time."""
        walker = self.walker
        assert walker is not None
        if not walker.go_to(target):
            return False
        with trio.move_on_after(timeout):
            while not walker.idle:
                await trio.sleep(0.1)
            return math.dist(walker.xz, target) < 0.1
        return False

    def mill(self, region: Disc | None = None) -> None:
        assert self.walker is not None
        self.walker.mill(region)
        self.walking = True

    async def admit(self, avatar: int) -> str | None:
        """Admit has no reply when it works: wait a few ticks for an error instead."""
        c = self.c
        errors = len(c.errors)
        await c.admit(avatar)
        await trio.sleep(3.0 / max(c.tick_hz, 1))
        return c.errors[-1].code if len(c.errors) > errors else None

"""The headset client: a pose source streamed into one session, kept alive across drops.

A Headset wraps an SDK client (which reconnects and resumes by itself) and a pose
source. It waits for the first snapshot, moves to where the source must begin (a
replay starts where its trace starts), tells the source where the server placed the
avatar, then sends one pose per tick with the epoch the server gave last. It pings
once a second for the clock offset and round-trip time, and counts traffic for the
operator's view. Every body it sends can be written to a trace as it goes.
"""

from __future__ import annotations

import logging
import math
from contextlib import ExitStack, aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import trio

from metaworld import protocol, quant
from metaworld.layout import Room
from metaworld_headset.sources import BodySource, PoseSource, Start
from metaworld_headset.trace import TraceWriter
from metaworld_sdk.client import Client, ClientClosed, Pose
from metaworld_sdk.clock import ClockEstimator

log = logging.getLogger("metaworld.headset")

PING_EVERY_S: Final = 1.0
READY_TIMEOUT_S: Final = 10.0  # for the first snapshot, and for each positioning step
NEARBY_SHOWN: Final = 8


class HeadsetError(Exception):
    """The headset could not do what it was asked (enter the trace's room, say)."""


@dataclass(frozen=True, slots=True)
class Neighbour:
    avatar: int
    label: str
    role: str
    distance: float  # metres between heads, on the floor plane


@dataclass(frozen=True, slots=True)
class Status:
    """What the operator's view shows, taken at one moment."""

    room: str
    avatar: int
    connected: bool
    connects: int
    ping_ms: float | None
    packets_in_per_s: float
    packets_out_per_s: float
    poses_sent: int
    neighbours: list[Neighbour]


class Headset:
    def __init__(
        self,
        client: Client,
        source: PoseSource,
        *,
        trace_out: Path | None = None,
        ping_every_s: float = PING_EVERY_S,
    ) -> None:
        self.client = client
        self.source = source
        self.trace_out = trace_out
        self.ping_every_s = ping_every_s
        self.clock = ClockEstimator()
        self.poses_sent = 0
        self.skipped = 0  # replayed records from another room than the avatar's
        self.rates = (0.0, 0.0)  # messages per second in, out
        self.sent_body: bytes | None = None
        self._writer: TraceWriter | None = None
        self._stream_scope = trio.CancelScope()
        self._failure: ClientClosed | None = None
        self._previous_hook = client.on_message
        client.on_message = self._on_message

    # ------------------------------------------------------------ running

    def stop(self) -> None:
        """End the pose stream now; run() then leaves the session and returns."""
        self._stream_scope.cancel()

    async def run(self, duration: float | None = None) -> None:
        """Stream poses for `duration` seconds (or until the source ends or stop()).

        Raises ClientClosed when the server ends the session for good, HeadsetError when
        the source cannot begin where it must.
        """
        client = self.client
        await client.wait_for(lambda c: c.last_tick > 0, timeout=READY_TIMEOUT_S)
        self.source.tick_hz = client.tick_hz
        if isinstance(self.source, BodySource):
            await self._go_to(self.source.start())
        self.source.placed(self._room(), client.pose, "start")
        with ExitStack() as stack:
            if self.trace_out is not None:
                writer = TraceWriter(self.trace_out, room=client.room, tick_hz=client.tick_hz)
                self._writer = stack.enter_context(writer)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pinger)
                nursery.start_soon(self._counter)
                nursery.start_soon(self._watch_close, nursery.cancel_scope)
                with self._stream_scope, trio.move_on_after(_seconds(duration)):
                    await self._stream()
                nursery.cancel_scope.cancel()
        if self._failure is not None:
            raise self._failure
        await self._leave()

    async def _stream(self) -> None:
        if isinstance(self.source, BodySource):
            async with aclosing(self.source.bodies()) as records:
                async for record in records:
                    if record.room != self.client.room:
                        self.skipped += 1
                        continue
                    await self._send_body(record.body)
        else:
            async with aclosing(self.source.poses()) as poses:
                async for _, pose in poses:
                    await self._send_body(self._encode(pose))

    def _encode(self, pose: Pose) -> bytes:
        local = np.array(pose, dtype=np.float64)[None]
        local[:, :, :3] -= self.client.room_min()
        return quant.encode_bodies(local).tobytes()

    async def _send_body(self, body: bytes) -> None:
        client = self.client
        if not client.connected:
            return  # between connections: this tick's pose is gone, the next one counts
        seq = (self.poses_sent + 1) % 2**32
        await client.send_body(body, seq)
        self.poses_sent += 1
        self.sent_body = body
        pose = quant.decode_bodies(quant.body_from_bytes(body))[0]
        pose[:, :3] += client.room_min()
        client.pose = pose  # as send_pose() would: "my pose" is the one last sent
        if self._writer is not None:
            self._writer.write(trio.current_time(), client.room, body)

    async def _go_to(self, start: Start) -> None:
        """Stand where the source begins: enter its room, then teleport to its point."""
        client = self.client
        if client.room != start.room:
            errors = len(client.errors)
            await client.join_room(start.room)
            await client.wait_for(
                lambda c: c.room == start.room or len(c.errors) > errors,
                timeout=READY_TIMEOUT_S,
            )
            if client.room != start.room:
                code = client.errors[-1].code
                raise HeadsetError(f"cannot enter room {start.room!r}: {code}")
        room = self._room()
        placements, errors = len(client.placements), len(client.errors)
        await client.move_to(room.bounds.min[0] + start.x, room.bounds.min[2] + start.z)
        await client.wait_for(
            lambda c: len(c.placements) > placements or len(c.errors) > errors,
            timeout=READY_TIMEOUT_S,
        )
        if len(client.errors) > errors:
            code = client.errors[-1].code
            raise HeadsetError(f"cannot stand where the trace begins: {code}")

    async def _leave(self) -> None:
        if self.client.closed is not None:
            return
        # The server applies poses on its tick but a Leave at once: give the last pose
        # two ticks to land, or a replay would end one pose short.
        await trio.sleep(2.0 / self.client.tick_hz)
        await self.client.leave()
        with trio.move_on_after(1.0):
            await self.client.wait_for(lambda c: c.closed is not None, timeout=math.inf)

    # ------------------------------------------------------------ background tasks

    async def _pinger(self) -> None:
        while True:
            await self.client.ping()
            await trio.sleep(self.ping_every_s)

    async def _counter(self) -> None:
        client = self.client
        last = (trio.current_time(), client.messages_in, client.messages_out)
        while True:
            await trio.sleep(1.0)
            now = (trio.current_time(), client.messages_in, client.messages_out)
            elapsed = max(now[0] - last[0], 1e-9)
            self.rates = ((now[1] - last[1]) / elapsed, (now[2] - last[2]) / elapsed)
            last = now

    async def _watch_close(self, scope: trio.CancelScope) -> None:
        try:
            await self.client.wait_for(lambda c: c.closed is not None, timeout=math.inf)
        except ClientClosed as exc:
            self._failure = exc
        self._failure = self._failure or self.client.closed
        scope.cancel()

    # ------------------------------------------------------------ server messages

    def _on_message(self, message: protocol.ServerMessage) -> None:
        match message:
            case protocol.Pong():
                self.clock.observe_pong(message, trio.current_time())
            case protocol.Placed(reason="resume"):
                pass  # the avatar stays where our last pose put it; keep going
            case protocol.Placed() | protocol.Correction():
                if isinstance(message, protocol.Correction):
                    log.warning("the server corrected our pose (%s)", message.reason)
                self.source.placed(self._room(), self.client.pose, message.reason)
        if self._previous_hook is not None:
            self._previous_hook(message)

    def _room(self) -> Room:
        layout = self.client.layout
        assert layout is not None, "the room is known once Welcome arrived"
        return layout.room(self.client.room)

    # ------------------------------------------------------------ operator's view

    def status(self) -> Status:
        client = self.client
        rtt = self.clock.rtt
        return Status(
            room=client.room,
            avatar=client.avatar_id,
            connected=client.connected,
            connects=client.connects,
            ping_ms=None if rtt is None else rtt * 1000.0,
            packets_in_per_s=self.rates[0],
            packets_out_per_s=self.rates[1],
            poses_sent=self.poses_sent,
            neighbours=self.neighbours(),
        )

    def neighbours(self, limit: int = NEARBY_SHOWN) -> list[Neighbour]:
        """The nearest avatars in view, nearest first."""
        head = self.client.pose[0]
        near = [
            Neighbour(
                remote.info.id,
                remote.info.label,
                remote.info.role,
                float(np.hypot(remote.pose[0, 0] - head[0], remote.pose[0, 2] - head[2])),
            )
            for remote in self.client.view.values()
            if remote.pose is not None
        ]
        return sorted(near, key=lambda n: (n.distance, n.avatar))[:limit]


def _seconds(duration: float | None) -> float:
    return math.inf if duration is None else duration

"""The client: one session with a world server, resumed across dropped connections."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import trio
import trio_websocket

from metaworld import protocol, quant
from metaworld.layout import Layout
from metaworld.protocol import CloseCode
from metaworld.world import standing_pose
from metaworld.wslean import AnyWebSocket, WsEngine
from metaworld_sdk.transport import open_stream

log = logging.getLogger("metaworld_sdk")

Pose = npt.NDArray[np.float64]  # shape (3, 7): head, left, right; x y z qx qy qz qw
# Close codes after which resuming cannot help.
FINAL_CODES: Final = frozenset(
    {
        CloseCode.NORMAL,
        CloseCode.BAD_HANDSHAKE,
        CloseCode.TOKEN_REJECTED,
        CloseCode.VERSION_UNSUPPORTED,
        CloseCode.MALFORMED,
        CloseCode.REPLACED,
    }
)


class ClientClosed(Exception):
    """The server ended the session for good (or the client gave up reconnecting)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed ({code}): {reason}")
        self.code = code
        self.reason = reason


def neutral_pose(x: float, z: float, floor_y: float = 0.0, yaw: float = 0.0) -> Pose:
    """A standing pose at (x, z): a starting point for scripted motion."""
    return standing_pose(x, z, floor_y, yaw)


@dataclass
class RemoteAvatar:
    """An avatar in this client's view, with its latest pose in world coordinates."""

    info: protocol.AvatarInfo
    pose: Pose | None = None
    updated_at: float = 0.0  # trio.current_time() of the last pose
    history: list[tuple[float, Pose]] = field(default_factory=list)


@dataclass
class Client:
    url: str
    token: str
    kind: protocol.ClientKind = "sdk"
    reconnect: bool = True
    max_backoff_s: float = 5.0
    keep_history: int = 0  # poses kept per remote avatar for interpolation
    engine: WsEngine = "lean"  # the WebSocket implementation: "lean" or "trio-websocket"

    def __post_init__(self) -> None:
        self.session: str | None = None
        self.you: protocol.AvatarInfo | None = None
        self.layout: Layout | None = None
        self.tick_hz = 20
        self.room = ""
        self.epoch = 0
        self.pose: Pose = neutral_pose(0.0, 0.0)
        self.view: dict[int, RemoteAvatar] = {}
        self.presence: dict[int, protocol.AvatarInfo] = {}
        self.chat_log: list[protocol.ChatMessage] = []
        self.errors: list[protocol.Error] = []
        self.placements: list[protocol.Placed | protocol.Correction] = []
        # Record views this client holds, by patient avatar; a purge removes them.
        self.records: dict[int, protocol.RecordShown] = {}
        self.replies: dict[int, protocol.ServerMessage] = {}  # by request number
        self.purges: list[protocol.RecordPurge] = []
        self._request = 0
        self.connects = 0
        self.last_tick = 0
        self.clock_offset = 0.0  # server time minus local time, seconds
        self.rtt = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0
        self.on_enter: Callable[[RemoteAvatar], None] | None = None
        self.on_leave: Callable[[int], None] | None = None
        self.on_message: Callable[[protocol.ServerMessage], None] | None = None
        self.closed: ClientClosed | None = None
        self._ws: AnyWebSocket | None = None
        self._stream: trio.SocketStream | None = None
        self._nursery: trio.Nursery
        self._changed = trio.Event()
        self._connected = trio.Event()
        self._pings: dict[int, float] = {}

    # ------------------------------------------------------------ state

    @property
    def avatar_id(self) -> int:
        return self.you.id if self.you else 0

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def room_min(self) -> npt.NDArray[np.float64]:
        assert self.layout is not None
        return np.array(self.layout.room(self.room).bounds.min)

    async def wait_for(self, predicate: Callable[[Client], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate(self)` holds; raises TooSlowError after `timeout` s."""
        with trio.fail_after(timeout):
            while not predicate(self):
                if self.closed is not None:
                    raise self.closed
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ------------------------------------------------------------ sending

    async def _send(self, message: protocol.Tagged) -> None:
        ws = self._ws
        if ws is None:
            return  # between connections; poses are dropped, requests too
        data = protocol.encode(message)
        try:
            await ws.send_message(data)
        except trio_websocket.ConnectionClosed:
            return
        self.bytes_out += len(data)
        self.messages_out += 1

    async def send_pose(self, pose: Pose, seq: int = 0) -> None:
        """Send a world-coordinate pose of shape (3, 7)."""
        self.pose = np.array(pose, dtype=np.float64)
        local = self.pose[None].copy()
        local[:, :, :3] -= self.room_min()
        await self._send(protocol.Pose(self.epoch, quant.encode_bodies(local).tobytes(), seq))

    async def send_body(self, body: bytes, seq: int = 0) -> None:
        """Send a ready 28-byte room-local pose body (a recorded trace, say) as it is."""
        await self._send(protocol.Pose(self.epoch, body, seq))

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (for tests of the server's input handling)."""
        if self._ws is not None:
            await self._ws.send_message(data)

    async def move_to(self, x: float, z: float) -> None:
        await self._send(protocol.MoveTo(x, z))

    async def use_door(self, door: str) -> None:
        await self._send(protocol.UseDoor(door))

    async def join_room(self, room: str) -> None:
        await self._send(protocol.JoinRoom(room))

    async def admit(self, avatar: int) -> None:
        await self._send(protocol.Admit(avatar))

    async def chat(self, text: str) -> None:
        await self._send(protocol.Chat(text))

    async def ping(self) -> None:
        nonce = random.getrandbits(31)
        self._pings[nonce] = trio.current_time()
        await self._send(protocol.Ping(nonce, trio.current_time()))

    # ------------------------------------------------------------ records and consent

    def _next_request(self) -> int:
        self._request += 1
        return self._request

    async def request_record(
        self, patient: int, categories: list[str], purpose: str = "TREAT", room: str | None = None
    ) -> int:
        """Ask for part of a patient's record; the reply lands in `replies[number]`."""
        number = self._next_request()
        await self._send(protocol.RecordRequest(number, patient, categories, purpose, room))  # type: ignore[arg-type]
        return number

    async def grant_consent(
        self,
        categories: list[str],
        grantee: int | None = None,
        purpose: str = "TREAT",
        duration_s: int = 3600,
    ) -> int:
        number = self._next_request()
        message = protocol.ConsentGrant(number, categories, grantee, purpose, duration_s)  # type: ignore[arg-type]
        await self._send(message)
        return number

    async def revoke_consent(self, consent: str) -> int:
        number = self._next_request()
        await self._send(protocol.ConsentRevoke(number, consent))
        return number

    async def query_consent(self) -> int:
        number = self._next_request()
        await self._send(protocol.ConsentQuery(number))
        return number

    async def break_glass(self, patient: int, reason: str, duration_s: int = 900) -> int:
        number = self._next_request()
        await self._send(protocol.BreakGlass(number, patient, reason, duration_s))
        return number

    async def reply(self, number: int, timeout: float = 5.0) -> protocol.ServerMessage:
        """Wait for the reply to request `number`."""
        await self.wait_for(lambda c: number in c.replies, timeout)
        return self.replies[number]

    async def leave(self) -> None:
        self.reconnect = False
        await self._send(protocol.Leave())

    async def drop_connection(self) -> None:
        """Cut the TCP connection without a goodbye, as a network failure would."""
        if self._stream is not None:
            await self._stream.aclose()

    # ------------------------------------------------------------ receiving

    def _apply(self, message: protocol.ServerMessage) -> None:
        now = trio.current_time()
        match message:
            case protocol.Welcome():
                self.session, self.you, self.layout = message.session, message.you, message.layout
                self.tick_hz, self.room = message.tick_hz, message.room
            case protocol.Snapshot():
                self.room, self.epoch, self.last_tick = message.room, message.epoch, message.tick
                self._set_own(message.you)
                gone = [i for i in self.view if i not in {a.id for a in message.avatars}]
                self.view = {a.id: self.view.get(a.id) or RemoteAvatar(a) for a in message.avatars}
                for avatar_id in gone:
                    self._left(avatar_id)
                self._apply_records(message.poses, now)
            case protocol.Delta():
                self.last_tick = message.tick
                for avatar_id in message.left:
                    if self.view.pop(avatar_id, None) is not None:
                        self._left(avatar_id)
                for info in message.entered:
                    remote = RemoteAvatar(info)
                    self.view[info.id] = remote
                self._apply_records(message.poses, now)
                for info in message.entered:
                    if self.on_enter is not None:
                        self.on_enter(self.view[info.id])
            case protocol.Placed() | protocol.Correction():
                self.room, self.epoch = message.room, message.epoch
                self._set_own(message.body)
                self.placements.append(message)
            case protocol.Presence():
                if message.full:
                    self.presence = {}
                self.presence.update({a.id: a for a in message.joined})
                for avatar_id in message.left:
                    self.presence.pop(avatar_id, None)
            case protocol.ChatMessage():
                self.chat_log.append(message)
            case protocol.Error():
                self.errors.append(message)
            case protocol.RecordShown():
                self.records[message.patient] = message
                if message.request:
                    self.replies[message.request] = message
            case protocol.RecordPurge():
                self.records.pop(message.patient, None)
                self.purges.append(message)
            case protocol.RecordDenied() | protocol.ConsentResult() | protocol.ConsentState():
                self.replies[message.request] = message
            case protocol.Pong():
                sent = self._pings.pop(message.nonce, None)
                if sent is not None:
                    self.rtt = now - sent
                    self.clock_offset = message.server_time - (sent + self.rtt / 2)
        if self.on_message is not None:
            self.on_message(message)

    def _left(self, avatar_id: int) -> None:
        if self.on_leave is not None:
            self.on_leave(avatar_id)

    def _set_own(self, body: bytes) -> None:
        pose = quant.decode_bodies(quant.body_from_bytes(body))[0]
        pose[:, :3] += self.room_min()
        self.pose = pose

    def _apply_records(self, data: bytes, now: float) -> None:
        if not data:
            return
        records = quant.records_from_bytes(data)
        poses = quant.decode_bodies(records["body"])
        poses[:, :, :3] += self.room_min()
        for avatar_id, pose in zip(records["id"].tolist(), poses, strict=True):
            remote = self.view.get(avatar_id)
            if remote is None:
                continue
            remote.pose, remote.updated_at = pose, now
            if self.keep_history:
                remote.history.append((now, pose))
                del remote.history[: -self.keep_history]

    # ------------------------------------------------------------ connection loop

    async def _connect_once(self, nursery: trio.Nursery) -> AnyWebSocket:
        ws, self._stream = await open_stream(nursery, self.url, engine=self.engine)
        hello = protocol.Hello(self.token, self.kind, protocol.PROTOCOL_VERSION, self.session)
        await ws.send_message(protocol.encode(hello))
        return ws

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        backoff, started = 0.2, False
        while True:
            code: int | None = None
            reason = "connection failed"
            try:
                ws = await self._connect_once(self._nursery)
                self._ws = ws
                self.connects += 1
                while True:
                    data = await ws.get_message()
                    self.bytes_in += len(data)
                    self.messages_in += 1
                    message = protocol.decode_server(data)
                    self._apply(message)
                    if isinstance(message, protocol.Welcome):
                        backoff = 0.2
                        self._connected.set()
                        if not started:
                            started = True
                            task_status.started()
                    self._notify()
            except trio_websocket.ConnectionClosed as exc:
                if exc.reason is not None:
                    code, reason = exc.reason.code, exc.reason.reason or ""
            except (OSError, trio_websocket.HandshakeError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws = None
                if self._stream is not None:
                    await self._stream.aclose()
                    self._stream = None
            if code in FINAL_CODES or not self.reconnect:
                self.closed = ClientClosed(code, reason)
                self._notify()
                if not started:
                    raise self.closed
                return
            log.debug("connection lost (%s %s); retrying in %.1fs", code, reason, backoff)
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.max_backoff_s)
            if not started and backoff >= self.max_backoff_s:
                self.closed = ClientClosed(code, reason)
                raise self.closed

    async def aclose(self) -> None:
        self.reconnect = False
        if self._ws is not None:
            await self._ws.aclose()


@asynccontextmanager
async def connect(
    url: str,
    token: str,
    *,
    kind: protocol.ClientKind = "sdk",
    client_class: type[Client] = Client,
    **options: Any,
) -> AsyncIterator[Client]:
    """Open a session and keep it alive (resuming after drops) until the block ends.

    `client_class` may be a subclass of Client that handles messages its own way.
    """
    client = client_class(url, token, kind, **options)
    async with trio.open_nursery() as nursery:
        client._nursery = nursery
        await nursery.start(client._run)
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()

"""The world server: WebSocket sessions around the sans-io world, and the tick loop.

Theory of operation. One Trio nursery owns everything: the WebSocket listener, the
HTTP side, the tick loop, and a store writer. Each connection gets two tasks of its
own, a reader and a writer, in a nursery that lives exactly as long as the connection.
On the lean engine the readers lend their connections to one `ReadPump` task, which
reads every socket that has data in a single wake-up, and take them back for pings and
closes.

The reader decodes frames and never touches the world: the newest pose goes into the
session's pose slot (older ones are simply overwritten), other requests into a small
bounded inbox. The tick loop, at a fixed rate, drains inboxes and pose slots into the
world, asks the replicator for one state message per client, and puts each into that
client's outbox. The writer sends what the outbox holds: reliable messages (replies,
chat, presence) in order, then the newest state message. On the lean engine the tick
first tries to do that itself, with one non-blocking write per client (`_write_now`),
and wakes a writer only for what a busy or full socket cannot take. A client that
does not read never slows the tick: its state message is replaced by the next one, and
when its reliable queue passes its bound it is disconnected with CloseCode.TOO_SLOW.
"""

from __future__ import annotations

import enum
import gc
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import trio
import trio_websocket
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session as DbSession

from metaworld import protocol
from metaworld.auth import Identity, TokenError, Verifier
from metaworld.clinical import CALL_TIMEOUT_S, ClinicalDesk
from metaworld.consent import ConsentService
from metaworld.interest import InterestConfig, Visible, changes, compute_visible
from metaworld.layout import Layout
from metaworld.metrics import Metrics
from metaworld.protocol import CloseCode
from metaworld.replication import Outgoing, Replicator
from metaworld.store import Account, ChatRow, RoomState, SessionRow, utcnow
from metaworld.world import Placement, World, WorldError
from metaworld.wslean import (
    AnyRequest,
    AnyWebSocket,
    Connection,
    ReadPump,
    WsEngine,
    serve_lean,
)

log = logging.getLogger("metaworld.server")

HANDSHAKE_TIMEOUT_S = 5.0
RELIABLE_QUEUE_LIMIT = 512  # messages waiting for one slow client before it is dropped
INBOX_LIMIT = 32  # requests (not poses) one client may have waiting for the next tick
MESSAGES_PER_S = 150  # sustained inbound message rate before a client is dropped
MESSAGE_BURST = 300
CHAT_PER_S = 1.0  # chat messages per second, sustained
CHAT_BURST = 5.0
STORE_QUEUE = 1024  # pending database writes
CHECKPOINT_EVERY_S = 30.0  # seconds between signed checkpoints of the audit ledger
GC_YOUNG_THRESHOLD = 20_000  # allocations between young-generation collections


@dataclass(frozen=True)
class ServerConfig:
    layout: Layout
    verifier: Verifier
    engine: Engine
    data_dir: Path
    host: str = "127.0.0.1"
    ws_port: int = 8765
    http_port: int = 8080
    tick_hz: int = 20
    resume_grace_s: float = 30.0
    max_sessions: int = 2000
    interest: InterestConfig = field(default_factory=InterestConfig)
    dev_tokens: bool = True
    static_dir: Path | None = None
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S
    reliable_queue_limit: int = RELIABLE_QUEUE_LIMIT
    consent: ConsentService | None = None  # None: record and consent requests are refused
    consent_timeout_s: float = CALL_TIMEOUT_S
    tune_gc: bool = True  # freeze the start-up heap; off where many servers share a process
    ws_engine: WsEngine = "lean"  # "trio-websocket" is the reference implementation


class SessionState(enum.Enum):
    ACTIVE = "active"  # a connection is attached
    DETACHED = "detached"  # the connection dropped; the avatar waits for a resume
    CLOSED = "closed"  # gone for good


class _Close(Exception):
    """End this connection with a close code (raised inside connection tasks)."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Hold:
    """Shared by a server's outboxes: while held (during a tick), filling an outbox does
    not wake its writer. The tick writes what it can itself and then wakes the writers
    of the outboxes it could not empty, instead of every writer waking to find nothing."""

    def __init__(self) -> None:
        self.held = False


class Outbox:
    """What one connection's writer has to send: reliable messages and the newest state."""

    def __init__(self, limit: int = RELIABLE_QUEUE_LIMIT, hold: Hold | None = None) -> None:
        self.reliable: deque[bytes] = deque()
        self.state: Outgoing | None = None
        self.limit = limit
        self.flush = False  # the writer must send what its connection still owes
        self._hold = hold or Hold()
        self._wake = trio.Event()

    def push(self, data: bytes) -> bool:
        """Queue a reliable message; False when the queue is over its bound."""
        if len(self.reliable) >= self.limit:
            return False
        self.reliable.append(data)
        if not self._hold.held:
            self._wake.set()
        return True

    def put_state(self, out: Outgoing) -> None:
        self.state = out
        if not self._hold.held:
            self._wake.set()

    def wake(self) -> None:
        """Wake the writer (after a held tick) if there is something to send."""
        if self.reliable or self.state or self.flush:
            self._wake.set()

    def owed(self) -> None:
        """The connection kept part of a direct write: wake the writer to finish it."""
        self.flush = True
        self._wake.set()

    async def take(self) -> tuple[list[bytes], Outgoing | None]:
        while not (self.reliable or self.state or self.flush):
            await self._wake.wait()
            self._wake = trio.Event()
        self.flush = False
        return self.take_now()

    def take_now(self) -> tuple[list[bytes], Outgoing | None]:
        reliable = list(self.reliable)
        self.reliable.clear()
        state, self.state = self.state, None
        return reliable, state


@dataclass(eq=False)
class Session:
    id: str
    identity: Identity
    avatar_id: int
    state: SessionState = SessionState.ACTIVE
    outbox: Outbox | None = None
    direct: Connection | None = None  # a lean connection the tick may write to itself
    cancel: trio.CancelScope | None = None
    pose: tuple[int, bytes] | None = None  # newest (epoch, body) not yet applied
    inbox: deque[protocol.ClientMessage] = field(default_factory=deque)
    detached_at: float = 0.0
    too_slow: bool = False
    chat_allowance: float = CHAT_BURST
    chat_checked: float = 0.0
    allowance: float = MESSAGE_BURST  # inbound messages, refilled at MESSAGES_PER_S
    heard: float = 0.0  # when the last message came

    def send(self, message: protocol.Tagged) -> None:
        self.push(protocol.encode(message))

    def push(self, data: bytes) -> None:
        """Queue a reliable message; a client past the bound is cut off, never waited on."""
        if self.outbox is None or self.outbox.push(data):
            return
        self.too_slow = True
        if self.cancel is not None:
            self.cancel.cancel()


class WorldServer:
    def __init__(self, config: ServerConfig, *, label_secret: bytes) -> None:
        self.config = config
        self.world = World(config.layout, label_secret)
        self.replicator = Replicator(self.world, config.interest)
        self.desk = (
            ClinicalDesk(config.consent, self, config.consent_timeout_s)
            if config.consent is not None
            else None
        )
        self.metrics = Metrics()
        self.sessions: dict[str, Session] = {}
        self.by_avatar: dict[int, Session] = {}
        self.by_subject: dict[str, Session] = {}
        self.ready = trio.Event()
        self.shutting_down = False
        self._hold = Hold()  # writers stay asleep while the tick fills their outboxes
        # On the lean engine one task reads every connection that has only messages to give.
        self._pump = ReadPump() if config.ws_engine == "lean" else None
        self.ws_port = config.ws_port
        self.http_port = config.http_port
        self._store_send, self._store_recv = trio.open_memory_channel[Callable[[DbSession], None]](
            STORE_QUEUE
        )

    # ------------------------------------------------------------ running

    async def serve(
        self, *, task_status: trio.TaskStatus[WorldServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from metaworld.http import serve_http  # the HTTP side is optional for tests

        await trio.to_thread.run_sync(self._load_room_state)
        # Compile (or load from cache) the interest kernel now, not inside the first tick.
        await trio.to_thread.run_sync(warm_up)
        if self.config.tune_gc:
            quiet_garbage_collector()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._store_writer)
            if self._pump is not None:
                nursery.start_soon(self._pump.run)
            if self.desk is not None:
                await nursery.start(self.desk.run)
            if self.config.ws_engine == "lean":
                listener = await nursery.start(
                    partial(
                        serve_lean,
                        self._handle,
                        self.config.host,
                        self.config.ws_port,
                        max_message_size=protocol.MAX_MESSAGE_BYTES,
                        connect_timeout=HANDSHAKE_TIMEOUT_S,
                        disconnect_timeout=2,
                    )
                )
            else:
                listener = await nursery.start(
                    lambda task_status: trio_websocket.serve_websocket(
                        self._handle,
                        self.config.host,
                        self.config.ws_port,
                        None,
                        max_message_size=protocol.MAX_MESSAGE_BYTES,
                        message_queue_size=4,
                        connect_timeout=HANDSHAKE_TIMEOUT_S,
                        disconnect_timeout=2,
                        task_status=task_status,
                    )
                )
            self.ws_port = listener.port
            log.info("listening for clients on ws://%s:%d/", self.config.host, self.ws_port)
            if self.config.http_port >= 0:
                self.http_port = await nursery.start(serve_http, self)
            nursery.start_soon(self._tick_loop)
            checkpoint = getattr(self.config.consent, "checkpoint", None)
            if checkpoint is not None:
                nursery.start_soon(self._sign_checkpoints, checkpoint)
            self.ready.set()
            task_status.started(self)

    async def _sign_checkpoints(self, checkpoint: Callable[[], object]) -> None:
        """Sign the audit ledger's growth regularly: entries no checkpoint covers could be
        rewritten together with their hashes without anyone being able to tell."""
        while True:
            await trio.sleep(CHECKPOINT_EVERY_S)
            try:
                await trio.to_thread.run_sync(checkpoint)
            except Exception:
                log.exception("signing a ledger checkpoint failed")

    async def _store_writer(self) -> None:
        """Runs database writes one at a time in a worker thread, off the tick path."""
        async for job in self._store_recv:
            try:
                await trio.to_thread.run_sync(self._run_store_job, job)
            except Exception:
                log.exception("a database write failed")

    def _run_store_job(self, job: Callable[[DbSession], None]) -> None:
        with DbSession(self.config.engine) as db, db.begin():
            job(db)

    def _store(self, job: Callable[[DbSession], None]) -> None:
        try:
            self._store_send.send_nowait(job)
        except trio.WouldBlock:
            self.metrics.rejected.labels("store_backlog").inc()
            log.warning("database write queue is full; a write was dropped")

    def _load_room_state(self) -> None:
        with DbSession(self.config.engine) as db, db.begin():
            for row in db.scalars(select(RoomState)):
                if row.room in self.world.rooms:
                    self.world.admitted.setdefault(row.room, set()).update(row.allowed_patients)
            db.execute(
                update(SessionRow).where(SessionRow.closed.is_(None)).values(closed=utcnow())
            )

    # ------------------------------------------------------------ connections

    async def _handle(self, request: AnyRequest) -> None:
        if protocol.SUBPROTOCOL not in request.proposed_subprotocols:
            self.metrics.rejected.labels("subprotocol").inc()
            body = f"offer the WebSocket subprotocol {protocol.SUBPROTOCOL}\n".encode()
            await request.reject(400, body=body)
            return
        ws = await request.accept(subprotocol=protocol.SUBPROTOCOL)
        self.metrics.clients.inc()
        session: Session | None = None
        outbox: Outbox | None = None
        close: _Close | None = None
        try:
            session = await self._handshake(ws)
            outbox = session.outbox
            await self._run_connection(ws, session)
        except _Close as exc:
            close = exc
        except trio_websocket.ConnectionClosed:
            pass  # the client went away; its session waits for a resume
        finally:
            self.metrics.clients.dec()
            if session is not None and outbox is not None and session.outbox is outbox:
                if close is not None and close.code == CloseCode.NORMAL:
                    self._end(session)
                else:
                    self._detach(session)
            if close is not None:
                if close.code != CloseCode.NORMAL:
                    self.metrics.rejected.labels(close.code.name.lower()).inc()
                with trio.move_on_after(1):
                    await ws.aclose(close.code, close.reason)

    async def _handshake(self, ws: AnyWebSocket) -> Session:
        data: bytes | str | None = None
        with trio.move_on_after(self.config.handshake_timeout_s):
            data = await ws.get_message()
        if data is None:
            raise _Close(CloseCode.HANDSHAKE_TIMEOUT, "no hello in time")
        try:
            hello = protocol.decode_client(data)
        except protocol.ProtocolError as exc:
            raise _Close(CloseCode.BAD_HANDSHAKE, f"first message must be hello: {exc}") from exc
        if not isinstance(hello, protocol.Hello):
            raise _Close(CloseCode.BAD_HANDSHAKE, "first message must be hello")
        if hello.version != protocol.PROTOCOL_VERSION:
            raise _Close(
                CloseCode.VERSION_UNSUPPORTED, f"server speaks version {protocol.PROTOCOL_VERSION}"
            )
        try:
            identity = self.config.verifier.verify(hello.token)
        except TokenError as exc:
            raise _Close(CloseCode.TOKEN_REJECTED, str(exc)) from exc
        return self._open_session(identity, hello)

    def _open_session(self, identity: Identity, hello: protocol.Hello) -> Session:
        now = trio.current_time()
        old = self.by_subject.get(identity.subject)
        if (
            old is not None
            and hello.session == old.id
            and old.state != SessionState.CLOSED
            and identity.role == old.identity.role  # a role change is a new session
        ):
            if old.cancel is not None:  # a half-open connection still holds it
                old.outbox = None
                old.direct = None
                old.cancel.cancel()
            old.state = SessionState.ACTIVE
            old.identity = identity
            old.too_slow = False
            log.info("session resumed by avatar %d (%s)", old.avatar_id, identity.role)
            self._welcome(old, resumed=True)
            return old
        if old is not None:
            self._replace(old)
        if len(self.sessions) >= self.config.max_sessions:
            raise _Close(CloseCode.SERVER_FULL, "server is full")
        try:
            avatar = self.world.spawn(identity.subject, identity.role, identity.name, now)
        except WorldError as exc:
            raise _Close(CloseCode.SERVER_FULL, "the lobby is full") from exc
        session = Session(secrets.token_urlsafe(16), identity, avatar.id)
        self.sessions[session.id] = session
        self.by_avatar[avatar.id] = session
        self.by_subject[identity.subject] = session
        log.info("avatar %d joined as %s via %s", avatar.id, identity.role, hello.client)
        self._record_join(session, avatar.room)
        self._welcome(session, resumed=False)
        self._presence_joined(avatar.id, avatar.room)
        return session

    def _welcome(self, session: Session, *, resumed: bool) -> None:
        session.outbox = Outbox(self.config.reliable_queue_limit, self._hold)
        avatar = self.world.avatars[session.avatar_id]
        session.send(
            protocol.Welcome(
                session=session.id,
                you=self.replicator.info(avatar.id),
                tick_hz=self.config.tick_hz,
                room=avatar.room,
                layout=self.config.layout,
                resume_grace_s=self.config.resume_grace_s,
                server_time=trio.current_time(),
            )
        )
        session.send(self._full_presence(avatar.room))
        if resumed:
            avatar.epoch += 1
            session.send(
                protocol.Placed(avatar.epoch, avatar.room, self.world.body_of(avatar.id), "resume")
            )
        self.replicator.request_snapshot(avatar.id)

    def _replace(self, old: Session) -> None:
        """A second login of the same subject: the old session ends for good."""
        if old.cancel is not None and old.outbox is not None:
            old.outbox = None
            old.direct = None
            old.cancel.cancel()
        self._end(old)

    async def _run_connection(self, ws: AnyWebSocket, session: Session) -> None:
        outbox = session.outbox
        assert outbox is not None
        try:
            async with trio.open_nursery() as nursery:
                session.cancel = nursery.cancel_scope
                session.direct = ws if isinstance(ws, Connection) else None
                nursery.start_soon(self._writer, ws, outbox)
                await self._reader(ws, session)
        except BaseExceptionGroup as group:
            # Re-raise the one error that says how this connection ends.
            for kind in (_Close, trio_websocket.ConnectionClosed):
                match = group.subgroup(kind)
                if match is not None:
                    raise _first(match) from None
            raise
        finally:
            if session.cancel is nursery.cancel_scope:
                session.cancel = None
                session.direct = None
        if self.shutting_down:
            raise _Close(CloseCode.GOING_AWAY, "server is shutting down")
        if session.outbox is not outbox:  # replaced or resumed elsewhere
            raise _Close(CloseCode.REPLACED, "session continued on another connection")
        if session.too_slow:
            raise _Close(CloseCode.TOO_SLOW, "client fell too far behind")
        # Cancelled for no reason of the client's: it may resume its session.
        raise _Close(CloseCode.GOING_AWAY, "connection dropped by the server; resume")

    async def _reader(self, ws: AnyWebSocket, session: Session) -> None:
        session.allowance, session.heard = float(MESSAGE_BURST), trio.current_time()
        take = partial(self._take_message, session, session.outbox)
        if self._pump is not None and isinstance(ws, Connection):
            await self._pump.feed(ws, take)  # until the connection needs a reader of its own
        while True:
            take(await ws.get_message())

    def _take_message(self, session: Session, outbox: Outbox | None, data: bytes | str) -> None:
        """One message from a client, as it arrives: poses and requests wait for the tick.

        `outbox` is the one this connection was given: once the session has moved on
        (resumed on another connection), what the old one still sends is dropped.
        """
        if session.outbox is not outbox:
            return
        now = trio.current_time()
        allowance = min(MESSAGE_BURST, session.allowance + (now - session.heard) * MESSAGES_PER_S)
        session.allowance, session.heard = allowance - 1, now
        if allowance < 1:
            raise _Close(CloseCode.RATE_LIMITED, "too many messages")
        try:
            message = protocol.decode_client(data)
        except protocol.ProtocolError as exc:
            raise _Close(CloseCode.MALFORMED, f"malformed message: {exc}"[:120]) from exc
        self.metrics.received(type(message), len(data))
        match message:
            case protocol.Pose(epoch=epoch, body=body):
                session.pose = (epoch, body)
            case protocol.Ping(nonce=nonce, client_time=client_time):
                session.send(protocol.Pong(nonce, client_time, now))
            case protocol.Leave():
                raise _Close(CloseCode.NORMAL, "goodbye")
            case protocol.Hello():
                raise _Close(CloseCode.MALFORMED, "hello may only be sent once")
            case _ if len(session.inbox) >= INBOX_LIMIT:
                session.send(protocol.Error("rate_limited", "too many requests waiting"))
            case _:
                session.inbox.append(message)

    async def _writer(self, ws: AnyWebSocket, outbox: Outbox) -> None:
        while True:
            reliable, state = await outbox.take()
            if isinstance(ws, Connection):
                # The lean engine writes the whole batch with one send on the socket.
                if state is not None:
                    self.replicator.confirm(state.avatar, state.view)
                    reliable.append(state.data)
                await ws.send_messages(reliable)
                self.metrics.sent(len(reliable), sum(map(len, reliable)))
                continue
            for data in reliable:
                await self._send(ws, data)
            if state is not None:
                self.replicator.confirm(state.avatar, state.view)
                await self._send(ws, state.data)

    async def _send(self, ws: AnyWebSocket, data: bytes) -> None:
        await ws.send_message(data)
        self.metrics.sent(1, len(data))

    def _detach(self, session: Session) -> None:
        """The connection is gone but the session may be resumed within the grace period."""
        if session.state != SessionState.ACTIVE:
            return
        session.state = SessionState.DETACHED
        session.outbox = None
        session.direct = None
        session.pose = None
        session.inbox.clear()
        session.detached_at = trio.current_time()
        log.info("avatar %d disconnected; held for resume", session.avatar_id)

    def _end(self, session: Session) -> None:
        session.state = SessionState.CLOSED
        session.outbox = None
        session.direct = None
        self.sessions.pop(session.id, None)
        if self.by_subject.get(session.identity.subject) is session:
            del self.by_subject[session.identity.subject]
        self.by_avatar.pop(session.avatar_id, None)
        avatar = self.world.remove(session.avatar_id)
        self.replicator.forget(session.avatar_id)
        if avatar is not None:
            self._broadcast(avatar.room, protocol.Presence(avatar.room, [], [avatar.id]))
            log.info("avatar %d left", avatar.id)
        session_id = session.id

        def close_row(db: DbSession) -> None:
            db.execute(
                update(SessionRow).where(SessionRow.id == session_id).values(closed=utcnow())
            )

        self._store(close_row)

    # ------------------------------------------------------------ the tick

    async def _tick_loop(self) -> None:
        period = 1.0 / self.config.tick_hz
        deadline = trio.current_time()
        while True:
            deadline += period
            await trio.sleep_until(deadline)
            started = time.perf_counter()
            try:
                self.tick(trio.current_time())
            except Exception:
                # A bug must not take the clinic down: count it, say it, keep ticking.
                self.metrics.rejected.labels("tick_error").inc()
                log.exception("a tick failed; the world goes on")
            self.metrics.observe_tick(time.perf_counter() - started)
            self.metrics.flush()
            behind = trio.current_time() - deadline
            if behind >= period:
                missed = int(behind // period)
                self.metrics.ticks_skipped.inc(missed)
                deadline += missed * period
                log.warning("tick loop fell behind; skipped %d ticks", missed)

    def tick(self, now: float) -> None:
        """One step of the world: requests, poses, replication, then the writes."""
        self._hold.held = True
        try:
            self._step(now)
        finally:
            self._hold.held = False
            self._write_now()

    def _step(self, now: float) -> None:
        self._expire_detached(now)
        poses: list[tuple[int, int, bytes]] = []
        for session in list(self.sessions.values()):
            if session.state == SessionState.ACTIVE:
                self._apply_requests(session, now)
                if session.pose is not None:
                    poses.append((session.avatar_id, *session.pose))
                    session.pose = None
            self._note_unsent_state(session)
        self._apply_poses(poses, now)
        for avatar_id, out in self.replicator.step(now).items():
            owner = self.by_avatar.get(avatar_id)
            if owner is not None and owner.outbox is not None:
                owner.outbox.put_state(out)
        self.metrics.avatars.set(len(self.world.avatars))
        if self.world.admissions_changed:
            self._save_admissions()

    def _write_now(self) -> None:
        """Write each client's messages for this tick straight to its socket.

        A writer task per client would cost a task switch per client per tick, and the
        last client would hear from us only after every other writer ran. Where the
        socket takes the bytes now (the usual case), the tick writes them itself; a busy
        connection, a full socket buffer or the trio-websocket engine leave them in the
        outbox for its writer, which only then is woken.
        """
        for session in self.sessions.values():
            ws, outbox = session.direct, session.outbox
            if outbox is None or not (outbox.reliable or outbox.state):
                continue
            if ws is None:  # not a lean connection: its writer sends them
                outbox.wake()
                continue
            messages = list(outbox.reliable)
            state = outbox.state
            if state is not None:
                messages.append(state.data)
            if not ws.send_now(messages):
                outbox.wake()  # busy or full: its writer sends them
                continue
            outbox.take_now()
            if state is not None:
                self.replicator.confirm(state.avatar, state.view)
            self.metrics.sent(len(messages), sum(map(len, messages)))
            if ws.owes:
                outbox.owed()

    def _note_unsent_state(self, session: Session) -> None:
        """A state message still unsent will be replaced: the next one must be relative
        to what the client really has (or be a snapshot again)."""
        outbox = session.outbox
        if outbox is None or outbox.state is None:
            return
        if outbox.state.is_snapshot:
            self.replicator.request_snapshot(session.avatar_id)
        else:
            self.replicator.mark_lagging(session.avatar_id)

    def _expire_detached(self, now: float) -> None:
        for session in list(self.sessions.values()):
            if (
                session.state == SessionState.DETACHED
                and now - session.detached_at > self.config.resume_grace_s
            ):
                self._end(session)

    def _apply_requests(self, session: Session, now: float) -> None:
        while session.inbox and session.state == SessionState.ACTIVE:
            self._apply(session, session.inbox.popleft(), now)

    def _apply_poses(self, poses: list[tuple[int, int, bytes]], now: float) -> None:
        corrections, malformed = self.world.apply_poses(poses, now)
        for avatar_id in malformed:
            self.metrics.rejected.labels("bad_pose").inc()
            error = protocol.Error("bad_pose", protocol.ERROR_CODES["bad_pose"])
            self.by_avatar[avatar_id].send(error)
        for correction in corrections:
            self.metrics.rejected.labels(f"pose_{correction.reason}").inc()
            self._send_placement(self.by_avatar[correction.avatar], correction)

    def _apply(self, session: Session, message: protocol.ClientMessage, now: float) -> None:
        avatar_id = session.avatar_id
        try:
            match message:
                case protocol.MoveTo(x=x, z=z):
                    self._send_placement(session, self.world.move_to(avatar_id, x, z, now))
                case protocol.UseDoor(door=door):
                    self._send_placement(session, self.world.use_door(avatar_id, door, now))
                case protocol.JoinRoom(room=room):
                    self._send_placement(session, self.world.join_room(avatar_id, room, now))
                case protocol.Admit(avatar=patient):
                    self._admit(session, patient)
                case protocol.Chat(text=text):
                    self._chat(session, text, now)
                case (
                    protocol.RecordRequest()
                    | protocol.ConsentGrant()
                    | protocol.ConsentRevoke()
                    | protocol.ConsentQuery()
                    | protocol.BreakGlass()
                ):
                    self._clinical(session, message)
                case _:
                    raise WorldError("bad_target")
        except WorldError as exc:
            self.metrics.rejected.labels(exc.code).inc()
            session.send(protocol.Error(exc.code, protocol.ERROR_CODES[exc.code]))

    def _clinical(self, session: Session, message: protocol.ClientMessage) -> None:
        desk = self.desk
        if desk is None:
            if isinstance(message, protocol.RecordRequest):
                session.send(protocol.RecordDenied(message.request, "unavailable", "no records"))
            else:
                session.send(protocol.Error("busy", "this server keeps no records"))
            return
        match message:
            case protocol.RecordRequest():
                desk.request_record(session, message)
            case protocol.ConsentGrant():
                desk.grant(session, message)
            case protocol.ConsentRevoke():
                desk.revoke(session, message)
            case protocol.ConsentQuery():
                desk.query(session, message)
            case protocol.BreakGlass():
                desk.break_glass(session, message)

    def _send_placement(self, session: Session, placed: Placement) -> None:
        cls = protocol.Placed if placed.accepted else protocol.Correction
        session.send(cls(placed.epoch, placed.room, placed.body, placed.reason))
        if placed.previous_room is not None:
            self._room_changed(placed.avatar, placed.previous_room, placed.room)

    def _room_changed(self, avatar_id: int, old: str, new: str) -> None:
        self._broadcast(old, protocol.Presence(old, [], [avatar_id]))
        self._presence_joined(avatar_id, new)
        session = self.by_avatar[avatar_id]
        session.send(self._full_presence(new))
        self.replicator.request_snapshot(avatar_id)
        log.debug("avatar %d moved from %s to %s", avatar_id, old, new)

        def save(db: DbSession) -> None:
            db.execute(update(SessionRow).where(SessionRow.id == session.id).values(room=new))

        self._store(save)

    def _presence_joined(self, avatar_id: int, room: str) -> None:
        info = self.replicator.info(avatar_id)
        for other in self.world.room_members(room):
            if other != avatar_id and (session := self.by_avatar.get(other)):
                session.send(protocol.Presence(room, [info], []))

    def _full_presence(self, room: str) -> protocol.Presence:
        members = self.world.room_members(room)
        return protocol.Presence(room, [self.replicator.info(i) for i in members], [], True)

    def _broadcast(self, room: str, message: protocol.Tagged) -> None:
        data = protocol.encode(message)
        for avatar_id in self.world.room_members(room):
            session = self.by_avatar.get(avatar_id)
            if session is not None:
                session.push(data)

    def _admit(self, session: Session, patient: int) -> None:
        self.world.admit(session.avatar_id, patient)

    def _save_admissions(self) -> None:
        """Store the admission lists that changed this tick (admitted, or used up)."""
        for room in self.world.admissions_changed:
            allowed = sorted(self.world.admitted.get(room, set()))

            def save(db: DbSession, room: str = room, allowed: list[str] = allowed) -> None:
                row = db.get(RoomState, room) or RoomState(room=room)
                row.allowed_patients = allowed
                db.add(row)

            self._store(save)
        self.world.admissions_changed.clear()

    def _chat(self, session: Session, text: str, now: float) -> None:
        elapsed = now - session.chat_checked
        session.chat_checked = now
        session.chat_allowance = min(CHAT_BURST, session.chat_allowance + elapsed * CHAT_PER_S)
        if session.chat_allowance < 1.0:
            raise WorldError("rate_limited")
        session.chat_allowance -= 1.0
        avatar = self.world.avatars[session.avatar_id]
        self._broadcast(
            avatar.room, protocol.ChatMessage(avatar.room, avatar.id, avatar.label, text, now)
        )
        if self.world.rooms[avatar.room].keeps_chat:
            room, label = avatar.room, avatar.label
            self._store(lambda db: db.add(ChatRow(room=room, avatar_label=label, text=text)))

    def _record_join(self, session: Session, room: str) -> None:
        subject, role, session_id = session.identity.subject, session.identity.role, session.id

        def save(db: DbSession) -> None:
            account = db.get(Account, subject)
            if account is None:
                db.add(Account(subject=subject, role=role))
            else:
                account.role, account.last_seen = role, utcnow()
            db.add(SessionRow(id=session_id, subject=subject, room=room))

        self._store(save)

    async def shutdown(self) -> None:
        """Close every connection with GOING_AWAY; sessions end with the process."""
        self.shutting_down = True
        for session in list(self.sessions.values()):
            if session.cancel is not None:
                session.cancel.cancel()
        await trio.sleep(0.2)

    def status(self) -> dict[str, Any]:
        return {"sessions": len(self.sessions), "avatars": len(self.world.avatars)}


def quiet_garbage_collector() -> None:
    """Keep cyclic garbage collection from stalling the tick.

    After start-up the heap holds hundreds of thousands of long-lived objects (modules,
    ORM and FHIR models, compiled kernels); a full collection scans them all and was
    seen to stop the process for 200 ms. Freezing moves them out of the collector's
    sight. What a tick allocates is freed by reference counting, so young collections
    can also be rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def warm_up() -> None:
    """Run the compiled interest kernel once, so compiling happens at start-up."""
    ids = np.arange(3, dtype=np.int64)
    first = compute_visible(ids, np.zeros((3, 2)), Visible.empty(), InterestConfig())
    changes(first, compute_visible(ids, np.ones((3, 2)), first, InterestConfig()))


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first leaf exception of a (possibly nested) exception group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc

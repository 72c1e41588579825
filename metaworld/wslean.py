"""A lean WebSocket engine for Trio: the opening handshake with h11, frames with `wsframe`.

Theory of operation. trio-websocket gives every connection a reader task and a message
channel, and runs every frame through wsproto's event machinery; at one state message
and one pose per client per tick that costs more CPU than the world itself. Here a
connection has no task of its own. `get_message` reads the socket itself, in big
chunks, when its small local queue is empty, and answers pings and the peer's close as
it meets them; a task that wants to read while another is reading (a pinger, `aclose`)
waits for that read to finish and looks again. A server with many connections can
instead hand them to a `ReadPump`, one task that reads every socket with something to
read and gives each connection back to its own task when it needs more than reading
(a ping to answer, a close). Sends are serialized by a flag and a
parking lot, so the server's writer and a pong never interleave their bytes.

The surface copies trio-websocket's where the server and the SDK touch it: `Request`
with `proposed_subprotocols`, `accept` and `reject`; `Connection` with `get_message`,
`send_message`, `aclose` and `closed`; and trio-websocket's own `ConnectionClosed`,
`CloseReason` and `ConnectionRejected`, raised where it raises them. Either engine
fits `AnyRequest` and `AnyWebSocket`, which is what the server is written against.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import struct
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Final, Literal, NoReturn, Protocol

import h11
import trio
from trio_websocket import CloseReason, ConnectionClosed

from metaworld import wsframe
from metaworld.wsframe import Close, FrameError, Message, Ping, Pong, Role

log = logging.getLogger("metaworld.wslean")

WsEngine = Literal["lean", "trio-websocket"]

RECEIVE_BYTES: Final = 64 * 1024  # bytes asked of the socket per read
MAX_REQUEST_BYTES: Final = 16 * 1024  # bytes of HTTP request head before a 431-ish 400
CONNECT_TIMEOUT_S: Final = 5.0  # seconds for a client to send its upgrade request
CLOSE_TIMEOUT_S: Final = 2.0  # seconds to wait for the peer's answering close frame


class AnyWebSocket(Protocol):
    """What the server and the SDK use of a connection, from either engine."""

    @property
    def closed(self) -> CloseReason | None: ...

    async def get_message(self) -> bytes | str: ...

    async def send_message(self, message: bytes | str) -> None: ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None: ...


class AnyRequest(Protocol):
    """An upgrade request waiting for `accept` or `reject`, from either engine."""

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]: ...

    async def accept(self, *, subprotocol: str | None = None) -> AnyWebSocket: ...

    async def reject(self, status_code: int, *, body: bytes | None = None) -> None: ...


# ---------------------------------------------------------------- connections


class Connection(trio.abc.AsyncResource):
    """One open WebSocket on a stream, for either role; it owns and closes the stream."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        role: Role,
        *,
        max_message_size: int,
        subprotocol: str | None = None,
        path: str | None = None,
        received: bytes = b"",
        close_timeout: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self.role = role
        self.subprotocol = subprotocol
        self.path = path
        self.close_timeout = close_timeout
        self._stream = stream
        self._reader = wsframe.FrameReader(role, max_message_size)
        self._messages: deque[bytes | str] = deque()
        self._early = received  # bytes that came with the handshake
        self._close_reason: CloseReason | None = None
        self._close_due: tuple[int, str | None] | None = None  # a close frame to send
        self._close_sent = False
        self._peer_closed = False  # the peer's close frame has arrived
        self._ended = False  # no more bytes will come: EOF, a dead socket, or closed by us
        self._stream_closed = False
        self._send_broken = False  # a send was cut short; a frame may be half written
        self._receiving = False
        self._answer_due: bytes | None = None  # `read_now` met pongs to send or a close
        self._read_done = trio.lowlevel.ParkingLot()
        self._sending = False  # a task holds the turn to write to the socket
        self._owed = b""  # the rest of a `send_now` the socket did not take; goes out first
        self._send_turn = trio.lowlevel.ParkingLot()
        self._pings: OrderedDict[bytes, trio.Event] = OrderedDict()

    @property
    def closed(self) -> CloseReason | None:
        """Why the connection closed or is closing; None while it is open."""
        return self._close_reason

    def __repr__(self) -> str:
        return f"<wslean.Connection {self.role.value} closed={self._close_reason}>"

    # ------------------------------------------------------------ messages

    async def get_message(self) -> bytes | str:
        """The next message; ConnectionClosed once none is left and the socket is done.

        After the peer closes, messages it sent first are still returned; after we
        close, none are.
        """
        if self._answer_due is not None:  # what `read_now` left to the awaiting path
            pongs, self._answer_due = self._answer_due, None
            await self._answer(pongs)
        while not self._messages:
            if self._close_reason is not None:
                raise ConnectionClosed(self._close_reason)
            await self._receive()
        return self._messages.popleft()

    def read_now(self) -> bool:
        """Read what the socket holds without waiting, from synchronous code (a `ReadPump`).

        Complete messages join the local queue (`next_message` takes them). False when
        the connection needs an awaiting reader from now on, that is `get_message`: a
        ping to answer, the peer's close, a protocol error, the end of the stream, or
        another task in the middle of a read.
        """
        fd = self.socket_fd
        if (
            fd is None
            or self._receiving
            or self._answer_due is not None
            or self._ended
            or self._close_reason is not None
        ):
            return False
        data, self._early = self._early, b""
        if not data:
            try:
                data = os.read(fd, RECEIVE_BYTES)
            except BlockingIOError:
                return True
            except OSError:
                data = b""  # a broken socket ends the stream, as in `_receive`
        pongs = self._take_in(data)
        if pongs or self._ended or self._close_reason is not None:
            self._answer_due = pongs
            return False
        return True

    @property
    def socket_fd(self) -> int | None:
        """The socket's file descriptor while it is open; None on other streams."""
        if self._stream_closed or not isinstance(self._stream, trio.SocketStream):
            return None
        return self._stream.socket.fileno()

    def next_message(self) -> bytes | str | None:
        """The next message already read, or None: never reads, never waits."""
        return self._messages.popleft() if self._messages else None

    async def send_message(self, message: bytes | str) -> None:
        if self._close_reason is not None:
            raise ConnectionClosed(self._close_reason)
        await self._send(wsframe.encode_message(message, self.role))

    async def send_messages(self, messages: Iterable[bytes]) -> None:
        """Send binary messages, in order, with one write to the socket."""
        if self._close_reason is not None:
            raise ConnectionClosed(self._close_reason)
        await self._send(b"".join([wsframe.encode_message(m, self.role) for m in messages]))

    def send_now(self, messages: Iterable[bytes]) -> bool:
        """Write binary messages with one non-blocking write, from synchronous code.

        For a caller that must never wait (the server's tick). False, with nothing
        written, when the connection is closing, another send is under way, bytes are
        still owed, or the socket cannot take a byte now: the caller then sends through
        `send_messages` as usual. What the socket does not take at once is owed: it goes
        out, before anything else, with the next send, so call `send_messages([])` soon.
        """
        fd = self.socket_fd
        busy = self._sending or self._owed or self._send_broken
        if fd is None or busy or self._close_reason is not None:
            return False
        data = b"".join([wsframe.encode_message(m, self.role) for m in messages])
        try:
            written = os.write(fd, data)
        except OSError:  # would block, or broken: the awaiting path finds out which
            return False
        self._owed = data[written:]
        return True

    @property
    def owes(self) -> bool:
        """Whether part of a `send_now` is still waiting to be written."""
        return bool(self._owed)

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for its pong (a pong also answers earlier pings)."""
        if self._close_reason is not None:
            raise ConnectionClosed(self._close_reason)
        if payload is None:
            payload = struct.pack("!I", random.getrandbits(32))
        if payload in self._pings:
            raise ValueError(f"a ping with payload {payload!r} is already waiting")
        answered = self._pings[payload] = trio.Event()
        await self._send(wsframe.encode_frame(wsframe.Opcode.PING, payload, self.role))
        while not answered.is_set():
            if self._close_reason is not None:
                raise ConnectionClosed(self._close_reason)
            await self._receive()

    # ------------------------------------------------------------ closing

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close: send a close frame, wait a while for the peer's, close the stream.

        Idempotent. Messages not yet read are dropped, as trio-websocket drops them.
        """
        try:
            if self._close_reason is None:
                self._close_reason = CloseReason(code, reason)
                self._close_due = (code, reason)
                self._messages.clear()
            await self._send_close()
            if self._close_sent and not self._peer_closed:
                with trio.move_on_after(self.close_timeout):
                    while not (self._peer_closed or self._ended):
                        await self._receive()
        finally:
            await self._close_stream()

    async def _send_close(self) -> None:
        if self._close_due is None or self._close_sent or self._ended or self._send_broken:
            return
        self._close_sent = True
        code, reason = self._close_due
        try:
            await self._send(wsframe.encode_close(code, reason, self.role))
        except ConnectionClosed:
            pass
        except BaseException:
            if not self._send_broken:  # cancelled before a byte went out: aclose retries
                self._close_sent = False
            raise

    async def _close_stream(self) -> None:
        self._ended = True
        if not self._stream_closed:
            self._stream_closed = True
            await trio.aclose_forcefully(self._stream)

    # ------------------------------------------------------------ the socket

    async def _receive(self) -> None:
        """Read one chunk and take in what it completes, or wait for the task reading."""
        if self._receiving:
            await self._read_done.park()
            return
        if self._ended:
            raise ConnectionClosed(self._close_reason)
        self._receiving = True
        try:
            data, self._early = self._early, b""
            if not data:
                try:
                    data = bytes(await self._stream.receive_some(RECEIVE_BYTES))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            pongs = self._take_in(data)
        finally:
            self._receiving = False
            if self._read_done:  # someone waits for this read: a pinger, aclose
                self._read_done.unpark_all()
        if pongs or (self._close_due is not None and not self._close_sent):
            await self._answer(pongs)

    def _take_in(self, data: bytes) -> bytes:
        """Apply what `data` completes; return the pongs to send back, if any."""
        if not data:
            self._ended = True
            if self._close_reason is None:
                self._close_reason = CloseReason(wsframe.ABNORMAL, None)
            return b""
        error: FrameError | None = None
        try:
            events = self._reader.feed(data)
        except FrameError as exc:
            events, error = exc.events, exc
        pongs: list[bytes] = []
        for event in events:
            if type(event) is Message:
                if self._close_reason is None:
                    self._messages.append(event.data)
            elif type(event) is Ping:
                if self._close_reason is None:
                    pongs.append(
                        wsframe.encode_frame(wsframe.Opcode.PONG, event.payload, self.role)
                    )
            elif type(event) is Pong:
                self._got_pong(event.payload)
            elif type(event) is Close:
                self._got_close(event)
        if error is not None and self._close_reason is None:
            log.debug("%r: peer broke the protocol: %s", self, error)
            self._close_reason = CloseReason(error.code, error.reason)
            self._close_due = (error.code, error.reason)
        return b"".join(pongs)

    def _got_close(self, event: Close) -> None:
        self._peer_closed = True
        if self._close_reason is None:  # the peer starts the close; echo its code
            self._close_due = (event.code, event.reason)
        # As trio-websocket does, the peer's code is the reason from now on.
        self._close_reason = CloseReason(event.code, event.reason or None)

    def _got_pong(self, payload: bytes) -> None:
        if payload not in self._pings:
            return
        while self._pings:  # this pong answers every earlier ping too
            key, answered = self._pings.popitem(last=False)
            answered.set()
            if key == payload:
                break

    async def _answer(self, pongs: bytes) -> None:
        """Send pongs, the close we owe, and, as a server after the peer's close, hang up."""
        if pongs and self._close_reason is None:
            try:
                await self._send(pongs)
            except ConnectionClosed:
                return
        await self._send_close()
        if self._peer_closed and self.role is Role.SERVER:
            # RFC 6455 7.1.1: the server closes the TCP connection first.
            await self._close_stream()

    async def _send(self, data: bytes) -> None:
        if self._sending:
            await self._send_turn.park()  # the sender before us hands its turn over
        else:
            self._sending = True
        try:
            if self._send_broken or self._stream_closed:
                raise ConnectionClosed(self._close_reason or CloseReason(wsframe.ABNORMAL, None))
            # Cancelled here, nothing went out. send_all checks the same state before its
            # first byte, with no yield between, so once past this any cancellation may
            # have left half a frame on the wire.
            await trio.lowlevel.checkpoint_if_cancelled()
            data, self._owed = self._owed + data, b""
            try:
                if data:
                    await self._stream.send_all(data)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._send_broken = True
            except BaseException:
                self._send_broken = True  # cancelled part way: maybe half a frame went out
                raise
        finally:
            # Hand the turn straight to the next sender, so none can barge ahead of it.
            if self._send_turn:
                self._send_turn.unpark()
            else:
                self._sending = False
        if self._close_reason is None and not self._receiving:
            # A peer that hangs up on a big send often said why first (1009, say): its
            # close frame is already in our receive buffer, so read what is there.
            with trio.move_on_after(self.close_timeout):
                while self._close_reason is None:
                    await self._receive()
        if self._close_reason is None:
            self._close_reason = CloseReason(wsframe.ABNORMAL, None)
        raise ConnectionClosed(self._close_reason)


# ---------------------------------------------------------------- reading many at once


class _Fed:
    """A connection a `ReadPump` reads, and what becomes of it."""

    __slots__ = ("connection", "error", "handle", "released")

    def __init__(self, connection: Connection, handle: Callable[[bytes | str], None]) -> None:
        self.connection = connection
        self.handle = handle
        self.released = trio.Event()
        self.error: Exception | None = None


class ReadPump:
    """Reads many connections from one task.

    A connection read by a task of its own costs, per message, a readiness
    registration, a failed read, a task wake-up and a successful read; at one small
    message per client per tick that is most of what a server spends on receiving. A
    pump keeps one epoll set of sockets, wakes once for all those that are readable,
    reads each with `Connection.read_now`, and hands every message to that
    connection's handler, synchronously. When a connection needs more than that (a
    ping to answer, a close, the end of the stream) or its handler raises, the pump
    lets go of it and the connection's own task carries on.
    """

    def __init__(self, max_events: int = 64) -> None:
        self.max_events = max_events  # sockets read per wake-up before others may run
        self._epoll = select.epoll()
        self._fed: dict[int, _Fed] = {}

    async def run(self) -> NoReturn:
        """The pump's task; it closes the epoll set when cancelled."""
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll)
                for fd, _ in self._epoll.poll(0, self.max_events):
                    fed = self._fed.get(fd)
                    if fed is not None:
                        self._pump(fd, fed)
        finally:
            self._epoll.close()
            for fd, fed in list(self._fed.items()):  # their own tasks read from now on
                self._release(fd, fed)

    async def feed(self, connection: Connection, handle: Callable[[bytes | str], None]) -> None:
        """Hand `connection`'s messages to `handle` from the pump's task.

        Returns when the connection needs a reader of its own (go on with
        `get_message`, which also answers what the pump left unanswered); raises what
        `handle` raised. Cancelling the caller takes the connection out of the pump.
        """
        fd = connection.socket_fd
        if fd is None or self._epoll.closed:
            return
        stale = self._fed.get(fd)
        if stale is not None:  # its socket was closed under it and the number came back
            self._release(fd, stale)
        fed = _Fed(connection, handle)
        self._fed[fd] = fed
        self._epoll.register(fd, select.EPOLLIN)
        try:
            self._pump(fd, fed)  # bytes that came with the handshake, or are waiting
            await fed.released.wait()
        finally:
            self._release(fd, fed)
        error, fed.error = fed.error, None
        if error is not None:
            raise error

    def _pump(self, fd: int, fed: _Fed) -> None:
        connection = fed.connection
        try:
            more = connection.read_now()
            while (message := connection.next_message()) is not None:
                fed.handle(message)
        except Exception as exc:  # the handler's: raised again in the connection's task
            fed.error, more = exc, False
        if not more:
            self._release(fd, fed)

    def _release(self, fd: int, fed: _Fed) -> None:
        if self._fed.get(fd) is fed:
            del self._fed[fd]
            # The socket may already be closed, and with that out of the set.
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        fed.released.set()


# ---------------------------------------------------------------- the server


class HandshakeRefused(Exception):
    """An upgrade request the server answers with an HTTP error instead of 101."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"{status_code}: {reason}")
        self.status_code = status_code
        self.reason = reason


def _tokens(request: h11.Request, name: bytes) -> list[bytes]:
    """The comma-separated values of every `name` header, lower-cased."""
    return [
        token.strip().lower()
        for header, value in request.headers
        if header == name
        for token in value.split(b",")
        if token.strip()
    ]


def check_upgrade(request: h11.Request) -> tuple[bytes, tuple[str, ...]]:
    """Validate an RFC 6455 upgrade request; return its key and proposed subprotocols."""
    if request.method != b"GET" or request.http_version != b"1.1":
        raise HandshakeRefused(400, "a WebSocket upgrade is a GET over HTTP/1.1")
    if b"websocket" not in _tokens(request, b"upgrade"):
        raise HandshakeRefused(400, "no Upgrade: websocket header")
    if b"upgrade" not in _tokens(request, b"connection"):
        raise HandshakeRefused(400, "no Connection: upgrade header")
    if _tokens(request, b"sec-websocket-version") != [b"13"]:
        raise HandshakeRefused(426, "only WebSocket version 13 is spoken")
    keys = [value for header, value in request.headers if header == b"sec-websocket-key"]
    if len(keys) != 1 or not wsframe.is_valid_key(keys[0]):
        raise HandshakeRefused(400, "no valid Sec-WebSocket-Key header")
    protocols = [
        token.strip().decode("ascii", "replace")
        for header, value in request.headers
        if header == b"sec-websocket-protocol"
        for token in value.split(b",")
        if token.strip()
    ]
    return keys[0].strip(), tuple(protocols)


class Request:
    """A valid upgrade request; the handler must `accept` or `reject` it."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        http: h11.Connection,
        event: h11.Request,
        *,
        max_message_size: int,
        close_timeout: float,
    ) -> None:
        self._stream = stream
        self._http = http
        self._event = event
        self._key, self._subprotocols = check_upgrade(event)
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout
        self.connection: Connection | None = None
        self.answered = False

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        return self._subprotocols

    @property
    def path(self) -> str:
        return self._event.target.decode("ascii", "replace")

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return list(self._event.headers)

    async def accept(
        self,
        *,
        subprotocol: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> Connection:
        self._answer()
        headers = [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", wsframe.accept_key(self._key).encode("ascii")),
        ]
        if subprotocol is not None:
            headers.append((b"Sec-WebSocket-Protocol", subprotocol.encode("ascii")))
        headers += extra_headers or []
        reply = h11.InformationalResponse(
            status_code=101, headers=headers, reason=b"Switching Protocols"
        )
        data = self._http.send(reply)
        assert data is not None
        received, _ = self._http.trailing_data
        self.connection = Connection(
            self._stream,
            Role.SERVER,
            max_message_size=self._max_message_size,
            subprotocol=subprotocol,
            path=self.path,
            received=received,
            close_timeout=self._close_timeout,
        )
        await self._stream.send_all(data)
        return self.connection

    async def reject(
        self,
        status_code: int,
        *,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer with an HTTP error; the engine closes the stream afterwards."""
        self._answer()
        await _send_refusal(self._stream, self._http, status_code, body or b"", extra_headers)

    def _answer(self) -> None:
        if self.answered:
            raise RuntimeError("this request was already accepted or rejected")
        self.answered = True


async def _send_refusal(
    stream: trio.abc.Stream,
    http: h11.Connection,
    status_code: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", str(len(body)).encode("ascii")),
        (b"Connection", b"close"),
        *(extra_headers or []),
    ]
    if status_code == 426:
        headers.append((b"Sec-WebSocket-Version", b"13"))
    parts = [
        http.send(h11.Response(status_code=status_code, headers=headers)),
        http.send(h11.Data(data=body)) if body else b"",
        http.send(h11.EndOfMessage()),
    ]
    await stream.send_all(b"".join(p for p in parts if p))


class LeanServer:
    """What `serve_lean` reports when it is listening."""

    def __init__(self, listeners: list[trio.SocketListener]) -> None:
        self.listeners = listeners

    @property
    def port(self) -> int:
        port: int = self.listeners[0].socket.getsockname()[1]
        return port


Handler = Callable[[Request], Awaitable[None]]


async def serve_lean(
    handler: Handler,
    host: str | None,
    port: int,
    *,
    max_message_size: int,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    disconnect_timeout: float = CLOSE_TIMEOUT_S,
    task_status: trio.TaskStatus[LeanServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve WebSocket connections on host:port until cancelled; one handler call each."""
    serve = partial(
        _serve_connection,
        handler,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
    )
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, port, host=host))
        task_status.started(LeanServer(listeners))
        await trio.sleep_forever()
    raise AssertionError("unreachable")


async def _serve_connection(
    handler: Handler,
    stream: trio.SocketStream,
    *,
    max_message_size: int,
    connect_timeout: float,
    disconnect_timeout: float,
) -> None:
    try:
        request: Request | None = None
        with trio.move_on_after(connect_timeout):
            request = await _read_request(stream, max_message_size, disconnect_timeout)
        if request is None:
            return
        try:
            await handler(request)
        finally:
            if request.connection is not None:
                with trio.move_on_after(disconnect_timeout):
                    await request.connection.aclose()
    finally:
        await trio.aclose_forcefully(stream)


async def _read_request(
    stream: trio.SocketStream, max_message_size: int, close_timeout: float
) -> Request | None:
    """Read and check the upgrade request; answer a bad one here and return None."""
    http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    request: Request | None = None
    try:
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                try:
                    http.receive_data(await stream.receive_some(RECEIVE_BYTES))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
            elif isinstance(event, h11.Request):
                request = Request(
                    stream,
                    http,
                    event,
                    max_message_size=max_message_size,
                    close_timeout=close_timeout,
                )
            elif event is h11.PAUSED and request is not None:
                return request  # h11 waits for our 101 before reading frames
            elif isinstance(event, h11.ConnectionClosed):
                return None
    except h11.RemoteProtocolError as exc:
        refusal = HandshakeRefused(exc.error_status_hint, str(exc))
    except HandshakeRefused as exc:
        refusal = exc
    log.debug("refused an upgrade request: %s", refusal)
    if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        body = f"{refusal.reason}\n".encode()
        gone = (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError)
        with trio.move_on_after(close_timeout), contextlib.suppress(*gone):
            await _send_refusal(stream, http, refusal.status_code, body)
    return None

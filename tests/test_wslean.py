"""The lean engine against trio-websocket, over real sockets on 127.0.0.1.

Each exchange runs for every pairing: lean server with a trio-websocket client,
trio-websocket server with a lean client, and lean with lean.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.testing
import trio_websocket
from trio_websocket import ConnectionClosed

from metaworld import wsframe
from metaworld.wsframe import Role
from metaworld.wslean import Connection, ReadPump, serve_lean
from metaworld_sdk.transport import open_stream, open_websocket

PAIRS = [("lean", "trio-websocket"), ("trio-websocket", "lean"), ("lean", "lean")]
PAIR_IDS = ["lean-server", "lean-client", "lean-both"]
Handler = Callable[..., Awaitable[None]]


@pytest.fixture(params=PAIRS, ids=PAIR_IDS)
def pair(request):
    return request.param


async def start(nursery, engine: str, handler: Handler, max_size: int = 1 << 20) -> str:
    """A server of either engine on a free loopback port; returns its URL."""
    if engine == "lean":
        serve = partial(
            serve_lean, handler, "127.0.0.1", 0, max_message_size=max_size, disconnect_timeout=1
        )
    else:
        serve = partial(
            trio_websocket.serve_websocket,
            handler,
            "127.0.0.1",
            0,
            None,
            max_message_size=max_size,
            disconnect_timeout=1,
        )
    server = await nursery.start(serve)
    return f"ws://127.0.0.1:{server.port}/"


def echo(seen: list | None = None, subprotocol: str | None = "test.v1") -> Handler:
    """Accept, echo every message, and note how the connection ended."""

    async def handle(request) -> None:
        ws = await request.accept(subprotocol=subprotocol)
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed as exc:
            if seen is not None:
                seen.append(exc.reason)

    return handle


async def wait_for(predicate: Callable[[], object], timeout: float = 3) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_messages_both_ways(nursery, pair):
    server, client = pair
    url = await start(nursery, server, echo())
    messages = [b"", b"x", "text é€", b"y" * 125, b"z" * 126, bytes(range(256)) * 300]
    async with open_websocket(url, subprotocols=["test.v1"], engine=client) as ws:
        for message in messages:
            await ws.send_message(message)
        with trio.fail_after(5):
            assert [await ws.get_message() for _ in messages] == messages


@pytest.mark.parametrize("client", ["trio-websocket", "lean"])
async def test_a_batch_arrives_as_separate_messages(nursery, client):
    async def handle(request) -> None:
        ws = await request.accept()
        await ws.send_messages([b"a", b"bb", b"c" * 70000])
        await ws.get_message()

    url = await start(nursery, "lean", handle)
    async with open_websocket(url, subprotocols=[], engine=client) as ws:
        with trio.fail_after(5):
            assert [await ws.get_message() for _ in range(3)] == [b"a", b"bb", b"c" * 70000]


async def test_ping_pong(nursery, pair):
    server, client = pair
    pinged = trio.Event()

    async def handle(request) -> None:
        ws = await request.accept()
        async with trio.open_nursery() as reading:
            reading.start_soon(echo_until_closed, ws)
            with trio.fail_after(5):
                await ws.ping(b"from the server")
            pinged.set()

    async def echo_until_closed(ws) -> None:
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    url = await start(nursery, server, handle)
    async with trio.open_nursery() as inner:
        ws, stream = await open_stream(inner, url, subprotocols=[], engine=client)
        try:
            inner.start_soon(read_all, ws)
            with trio.fail_after(5):
                await ws.ping(b"from the client")
                await ws.ping()  # a random payload
                await pinged.wait()
            await ws.send_message(b"still open")
        finally:
            await ws.aclose()
            await stream.aclose()


async def read_all(ws) -> None:
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed:
        pass


async def test_the_server_closes_with_a_code(nursery, pair):
    server, client = pair
    closed_by_server: list = []

    async def handle(request) -> None:
        ws = await request.accept()
        await ws.send_message(b"last words")
        await ws.aclose(4001, "go away")
        closed_by_server.append(ws.closed)

    url = await start(nursery, server, handle)
    async with open_websocket(url, subprotocols=[], engine=client) as ws:
        with trio.fail_after(5):
            assert await ws.get_message() == b"last words"
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
        assert (info.value.reason.code, info.value.reason.reason) == (4001, "go away")
        with pytest.raises(ConnectionClosed):
            await ws.send_message(b"too late")
    await wait_for(lambda: closed_by_server)
    assert closed_by_server[0].code == 4001


async def test_the_client_closes_with_a_code(nursery, pair):
    server, client = pair
    seen: list = []
    url = await start(nursery, server, echo(seen))
    started = time.monotonic()
    async with open_websocket(url, subprotocols=["test.v1"], engine=client) as ws:
        await ws.send_message(b"hello")
        with trio.fail_after(5):
            assert await ws.get_message() == b"hello"
        await ws.aclose(4002, "done")
        assert ws.closed.code == 4002
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    await wait_for(lambda: seen)
    assert (seen[0].code, seen[0].reason) == (4002, "done")
    assert time.monotonic() - started < 0.9  # the handshake finished; no timeout ran out


async def test_the_client_vanishing_is_1006(nursery, pair):
    server, client = pair
    seen: list = []
    url = await start(nursery, server, echo(seen))
    async with trio.open_nursery() as inner:
        ws, stream = await open_stream(inner, url, subprotocols=["test.v1"], engine=client)
        await ws.send_message(b"hi")
        with trio.fail_after(5):
            assert await ws.get_message() == b"hi"
        await stream.aclose()  # TCP ends without a close frame
        with pytest.raises(ConnectionClosed):
            await ws.send_message(b"after")
        await ws.aclose()
        inner.cancel_scope.cancel()
    await wait_for(lambda: seen)
    assert seen[0].code == wsframe.ABNORMAL


@pytest.mark.parametrize("client", ["trio-websocket", "lean"])
async def test_the_server_vanishing_is_1006(nursery, client):
    async def upgrade_then_hang_up(stream: trio.SocketStream) -> None:
        request = await stream.receive_some(65536)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + wsframe.accept_key(key).encode()
            + b"\r\n\r\n"
            + wsframe.encode_message(b"one", Role.SERVER)
        )
        await stream.aclose()

    listeners = await nursery.start(
        partial(trio.serve_tcp, upgrade_then_hang_up, 0, host="127.0.0.1")
    )
    url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"
    async with open_websocket(url, subprotocols=[], engine=client) as ws:
        with trio.fail_after(5):
            assert await ws.get_message() == b"one"
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
    assert info.value.reason.code == wsframe.ABNORMAL


async def test_an_oversized_message_to_the_server_is_1009(nursery, pair):
    server, client = pair
    seen: list = []
    url = await start(nursery, server, echo(seen), max_size=1000)
    async with open_websocket(url, subprotocols=["test.v1"], engine=client) as ws:
        await ws.send_message(b"x" * 1000)
        with trio.fail_after(5):
            assert await ws.get_message() == b"x" * 1000
            await ws.send_message(b"x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
    assert info.value.reason.code == wsframe.MESSAGE_TOO_BIG
    await wait_for(lambda: seen)
    assert seen[0].code == wsframe.MESSAGE_TOO_BIG


async def test_an_oversized_message_to_the_client_is_1009(nursery, pair):
    server, client = pair
    seen: list = []
    url = await start(nursery, server, echo(seen))
    async with trio.open_nursery() as inner:
        ws, stream = await open_stream(
            inner, url, subprotocols=["test.v1"], max_message_size=1000, engine=client
        )
        try:
            await ws.send_message(b"y" * 1001)  # the server echoes what we may not receive
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason.code == wsframe.MESSAGE_TOO_BIG
        finally:
            with trio.move_on_after(2):
                await ws.aclose()
            await stream.aclose()
    await wait_for(lambda: seen)
    assert seen[0].code == wsframe.MESSAGE_TOO_BIG


async def test_subprotocols_are_negotiated(nursery, pair):
    server, client = pair
    offered: list = []

    async def handle(request) -> None:
        offered.append(request.proposed_subprotocols)
        ws = await request.accept(subprotocol="b.v2")
        await ws.send_message(b"ok")
        await read_all(ws)

    url = await start(nursery, server, handle)
    async with open_websocket(url, subprotocols=["a.v1", "b.v2"], engine=client) as ws:
        with trio.fail_after(5):
            assert await ws.get_message() == b"ok"
        assert ws.subprotocol == "b.v2"
    assert offered == [("a.v1", "b.v2")]


async def test_a_rejection_is_a_400_with_its_body(nursery, pair):
    server, client = pair

    async def handle(request) -> None:
        await request.reject(400, body=b"offer test.v1\n")

    url = await start(nursery, server, handle)
    rejected: list = []
    try:
        async with trio.open_nursery() as inner:  # trio-websocket raises from its own task
            await open_stream(inner, url, subprotocols=["other"], engine=client)
    except* trio_websocket.ConnectionRejected as group:
        rejected += group.exceptions
    assert [(r.status_code, r.body) for r in rejected] == [(400, b"offer test.v1\n")]


async def test_concurrent_senders_never_interleave_frames(nursery, pair):
    server, client = pair
    count = 300

    async def handle(request) -> None:
        ws = await request.accept()

        async def sender(tag: bytes) -> None:
            for i in range(count):
                await ws.send_message(tag * (i % 200 + 1))

        async with trio.open_nursery() as senders:
            senders.start_soon(sender, b"a")
            senders.start_soon(sender, b"b")
            senders.start_soon(read_all, ws)  # answers the client's pings meanwhile
        await ws.aclose()

    url = await start(nursery, server, handle)
    async with trio.open_nursery() as inner:
        ws, stream = await open_stream(inner, url, subprotocols=[], engine=client)
        got: list[bytes] = []
        try:
            with trio.fail_after(10):
                for i in range(2 * count):
                    got.append(await ws.get_message())
                    if client == "trio-websocket" and i % 50 == 0:
                        await ws.ping()
        finally:
            await ws.aclose()
            await stream.aclose()
    assert sorted(got) == sorted(t * (i % 200 + 1) for t in (b"a", b"b") for i in range(count))


# ---------------------------------------------------------------- the lean server's handshake


async def raw_request(url: str, head: bytes, then: bytes = b"") -> bytes:
    """Send raw bytes to a server; return all it answers until it hangs up."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    answer = b""
    try:
        await stream.send_all(head + then)
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                answer += chunk
    finally:
        await stream.aclose()
    return answer


def upgrade(**headers: str) -> bytes:
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = [f"{k}: {v}" for k, v in fields.items() if v]
    return ("GET /room HTTP/1.1\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (upgrade(Upgrade=""), b"400"),
        (upgrade(Connection="keep-alive"), b"400"),
        (upgrade(Sec_WebSocket_Key="short"), b"400"),
        (upgrade(Sec_WebSocket_Key=""), b"400"),
        (upgrade(Sec_WebSocket_Version="8"), b"426"),
        (upgrade().replace(b"GET", b"POST"), b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"\x16\x03\x01 a TLS hello\r\n\r\n", b"400"),
    ],
    ids=[
        "no upgrade",
        "no connection upgrade",
        "short key",
        "no key",
        "version 8",
        "POST",
        "plain GET",
        "not HTTP",
    ],
)
async def test_bad_upgrade_requests_are_refused(nursery, head, status):
    called: list = []

    async def handle(request) -> None:
        called.append(request)

    url = await start(nursery, "lean", handle)
    answer = await raw_request(url, head)
    assert answer.startswith(b"HTTP/1.1 " + status)
    if status == b"426":
        assert b"sec-websocket-version: 13" in answer.lower()
    assert not called


async def test_a_browser_upgrade_gets_no_extension_and_early_frames_are_kept(nursery):
    async def handle(request) -> None:
        ws = await request.accept(subprotocol="metaworld.v1")
        await ws.send_message(await ws.get_message())
        await ws.aclose()

    url = await start(nursery, "lean", handle)
    head = upgrade(
        Origin="http://localhost:5173",
        Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits",
        Sec_WebSocket_Protocol="metaworld.v1",
        User_Agent="Mozilla/5.0",
    )
    # The first frame is sent together with the request, before the 101 arrives.
    answer = await raw_request(url, head, wsframe.encode_message(b"early", Role.CLIENT))
    response, _, frames = answer.partition(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101 ")
    assert b"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in response.lower()
    assert b"sec-websocket-protocol: metaworld.v1" in response.lower()
    assert b"extensions" not in response.lower()
    reader = wsframe.FrameReader(Role.CLIENT, 1 << 20)
    events = reader.feed(frames)
    assert events == [wsframe.Message(b"early"), wsframe.Close(1000, "")]


async def test_a_peer_that_never_answers_the_close_is_hung_up_on(nursery):
    done: list = []

    async def handle(request) -> None:
        ws = await request.accept()
        started = trio.current_time()
        await ws.aclose(1001)
        done.append(trio.current_time() - started)

    port_url = await start(nursery, "lean", handle)
    answer = await raw_request(port_url, upgrade())  # reads until the server hangs up
    assert answer.endswith(wsframe.encode_close(1001, None, Role.SERVER))
    await wait_for(lambda: done)
    assert 0.9 <= done[0] < 2.5  # disconnect_timeout=1


async def test_the_handshake_must_come_in_time(nursery):
    async def handle(request) -> None:
        raise AssertionError("no request was complete")

    server = await nursery.start(
        partial(serve_lean, handle, "127.0.0.1", 0, max_message_size=100, connect_timeout=0.2)
    )
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    try:
        await stream.send_all(b"GET / HTTP/1.1\r\n")
        with trio.fail_after(3):
            assert await stream.receive_some(100) == b""
    finally:
        await stream.aclose()


async def test_a_lean_connection_is_what_the_lean_engines_hand_out(nursery):
    url = await start(nursery, "lean", echo())
    async with open_websocket(url, subprotocols=["test.v1"]) as ws:
        assert isinstance(ws, Connection) and ws.role is Role.CLIENT
        assert ws.subprotocol == "test.v1" and ws.closed is None


# ---------------------------------------------------------------- in memory


async def test_a_close_cancelled_before_it_went_out_is_sent_by_aclose():
    """The reader owes a 1009 close but is cancelled the moment the writer hands it the
    socket (the server cancels a connection's tasks when one of them fails): no byte of
    the close went out, so aclose must still send it."""
    server_end, client_end = trio.testing.lockstep_stream_pair()
    conn = Connection(server_end, Role.SERVER, max_message_size=10, close_timeout=5)
    peer = wsframe.FrameReader(Role.CLIENT, 1 << 20)
    reading = trio.CancelScope()

    async def read() -> None:
        with reading:
            await conn.get_message()

    async def write() -> None:
        await conn.send_message(b"state")  # holds the socket until the peer reads
        reading.cancel()  # the reader now has the turn but has not run

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(read)
        await client_end.send_all(wsframe.encode_message(b"x" * 11, Role.CLIENT))
        await trio.testing.wait_all_tasks_blocked()  # the reader waits for the socket
        assert peer.feed(await client_end.receive_some()) == [wsframe.Message(b"state")]
    assert reading.cancelled_caught and conn.closed.code == wsframe.MESSAGE_TOO_BIG

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.aclose)
        events = peer.feed(await client_end.receive_some())
        assert events == [wsframe.Close(wsframe.MESSAGE_TOO_BIG, "a message over 10 bytes")]
        await client_end.send_all(wsframe.encode_close(1009, None, Role.CLIENT))
    assert await client_end.receive_some() == b""  # then the server hung up


# ---------------------------------------------------------------- writing without waiting


@pytest.mark.parametrize("client", ["trio-websocket", "lean"])
async def test_send_now_keeps_order_when_the_socket_fills(nursery, client):
    """The server writes without waiting until the socket is full; what it could not
    write is owed and goes out first, so a slow reader still gets every message whole
    and in order, whichever engine it runs."""
    outcome: dict[str, object] = {}
    may_read = trio.Event()

    async def handle(request) -> None:
        ws = await request.accept()
        sent, direct, fallback, owed = 0, 0, 0, 0
        chunk = 40_000
        while sent < 200:
            batch = [sent.to_bytes(4, "big") + bytes(chunk)]
            if ws.send_now(batch):
                direct += 1
                if ws.owes:
                    owed += 1
                    assert not ws.send_now([b"never"]), "nothing may jump the owed bytes"
                    may_read.set()
                    await ws.send_messages([])  # finish the frame (waits for the reader)
            else:
                fallback += 1
                may_read.set()
                await ws.send_messages(batch)
            sent += 1
        outcome.update(direct=direct, fallback=fallback, owed=owed)
        await ws.get_message()

    url = await start(nursery, "lean", handle)
    async with open_websocket(url, subprotocols=[], engine=client) as ws:
        with trio.fail_after(10):
            await may_read.wait()  # the server's socket buffer is full by now
            for i in range(200):
                message = await ws.get_message()
                assert message[:4] == i.to_bytes(4, "big") and len(message) == 40_004
            await ws.send_message(b"done")
    assert outcome["direct"] and outcome["owed"], outcome


async def test_send_now_stands_aside_while_a_task_sends(nursery):
    server_end, client_end = trio.testing.lockstep_stream_pair()
    conn = Connection(server_end, Role.SERVER, max_message_size=10)
    assert not conn.send_now([b"x"]), "only over a socket"

    async with trio.open_nursery() as inner:
        inner.start_soon(conn.send_message, b"held")  # waits until the peer reads
        await trio.testing.wait_all_tasks_blocked()
        assert not conn.send_now([b"x"])
        await client_end.receive_some()


# ---------------------------------------------------------------- one task reads many


def pumped(pump: ReadPump, seen: list, ends: list, replies: bool = False) -> Handler:
    """Accept, let the pump read until the connection needs its own reader, then read on
    with `get_message`; note each message with where it was read, and how it ended."""

    async def handle(request) -> None:
        ws = await request.accept()

        def take(message) -> None:
            if message == b"bad":
                raise ValueError("a handler's own error")
            seen.append(("pump", message))

        try:
            await pump.feed(ws, take)
            while True:
                message = await ws.get_message()
                seen.append(("task", message))
                if replies:
                    await ws.send_message(message)
        except (ConnectionClosed, ValueError) as exc:
            ends.append(exc)

    return handle


async def start_pumped(
    nursery, *, replies: bool = False, max_events: int = 64
) -> tuple[str, list, list]:
    """A lean server whose connections a running pump reads; (url, seen, ends)."""
    pump = ReadPump(max_events)
    nursery.start_soon(pump.run)
    seen: list = []
    ends: list = []
    return await start(nursery, "lean", pumped(pump, seen, ends, replies)), seen, ends


@pytest.mark.parametrize("client", ["trio-websocket", "lean"])
async def test_a_pump_reads_many_connections_in_order(nursery, client):
    # Fewer events per wake-up than sockets: several wake-ups per burst.
    url, seen, _ = await start_pumped(nursery, max_events=2)
    async with trio.open_nursery() as clients:

        async def one(i: int) -> None:
            async with open_websocket(url, subprotocols=[], engine=client) as ws:
                for n in range(20):
                    await ws.send_message(f"{i}:{n}".encode())
                await wait_for(lambda: sum(1 for _, m in seen if m.startswith(b"%d:" % i)) == 20)

        for i in range(5):
            clients.start_soon(one, i)
    assert {where for where, _ in seen} == {"pump"}
    for i in range(5):
        mine = [m for _, m in seen if m.startswith(b"%d:" % i)]
        assert mine == [f"{i}:{n}".encode() for n in range(20)]


async def test_a_ping_hands_the_connection_back_to_its_task(nursery):
    url, seen, _ = await start_pumped(nursery, replies=True)
    async with trio.open_nursery() as inner:
        ws, stream = await open_stream(inner, url, subprotocols=[], engine="lean")
        try:
            await ws.send_message(b"before")
            await wait_for(lambda: seen)
            inner.start_soon(read_all, ws)
            with trio.fail_after(5):
                await ws.ping(b"are you there")  # answered although the pump read it
            await ws.send_message(b"after")
            await wait_for(lambda: len(seen) == 2)
        finally:
            await ws.aclose()
            await stream.aclose()
    assert seen == [("pump", b"before"), ("task", b"after")]


async def test_a_close_ends_a_pumped_connection_cleanly(nursery):
    url, seen, ends = await start_pumped(nursery)
    async with open_websocket(url, subprotocols=[], engine="trio-websocket") as ws:
        await ws.send_message(b"last words")
        await ws.aclose(4001, "bye")
    await wait_for(lambda: ends)
    assert seen == [("pump", b"last words")]
    assert isinstance(ends[0], ConnectionClosed) and ends[0].reason.code == 4001


async def test_what_a_handler_raises_is_raised_in_the_connections_task(nursery):
    url, seen, ends = await start_pumped(nursery)
    async with open_websocket(url, subprotocols=[], engine="lean") as ws:
        await ws.send_message(b"fine")
        await ws.send_message(b"bad")
        await wait_for(lambda: ends)
    assert seen == [("pump", b"fine")]
    assert isinstance(ends[0], ValueError)


async def test_frames_sent_with_the_upgrade_reach_the_pump(nursery):
    url, seen, _ = await start_pumped(nursery)
    early = wsframe.encode_message(b"early", Role.CLIENT) + wsframe.encode_close(
        1000, None, Role.CLIENT
    )
    await raw_request(url, upgrade(Sec_WebSocket_Protocol=""), early)
    assert seen == [("pump", b"early")]


async def test_a_cancelled_feed_leaves_the_pump():
    pump = ReadPump()
    left = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server_end = await listeners[0].accept()
        conn = Connection(server_end, Role.SERVER, max_message_size=100)

        async def fed() -> None:
            with trio.move_on_after(0.1):
                await pump.feed(conn, lambda message: None)
            left.set()

        nursery.start_soon(fed)
        await left.wait()
        assert not pump._fed
        # Read by its own task again: the pump does not take the bytes.
        await client.send_all(wsframe.encode_message(b"mine", Role.CLIENT))
        with trio.fail_after(3):
            assert await conn.get_message() == b"mine"
        await client.aclose()
        await conn.aclose()
        await listeners[0].aclose()
        nursery.cancel_scope.cancel()


async def test_a_socket_number_that_comes_back_is_read_for_its_new_connection():
    """A socket closed under the pump (not through its connection) leaves its number in
    the pump; a new socket given that number must be read for the new connection, and
    the old connection's task must get its reader back."""
    pump = ReadPump()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def accepted() -> Connection:
            server_end = await listeners[0].accept()
            return Connection(server_end, Role.SERVER, max_message_size=100)

        old_client = await trio.open_tcp_stream("127.0.0.1", port)
        old = await accepted()
        old_fd = old.socket_fd
        ended: list = []

        async def old_reader() -> None:
            await pump.feed(old, lambda message: None)
            with pytest.raises(ConnectionClosed):
                await old.get_message()
            ended.append(True)

        nursery.start_soon(old_reader)
        await trio.testing.wait_all_tasks_blocked()
        new_client = await trio.open_tcp_stream("127.0.0.1", port)
        old._stream.socket.close()  # behind the connection's back
        new = await accepted()
        assert new.socket_fd == old_fd
        got: list = []
        nursery.start_soon(pump.feed, new, got.append)
        await new_client.send_all(wsframe.encode_message(b"for the new one", Role.CLIENT))
        await wait_for(lambda: got and ended)
        assert got == [b"for the new one"]
        await trio.aclose_forcefully(new)
        for stream in (old_client, new_client, listeners[0]):
            await stream.aclose()
        nursery.cancel_scope.cancel()

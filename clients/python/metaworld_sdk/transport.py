"""Opening WebSocket connections whose TCP stream this package owns.

Two engines speak the same protocol. "lean" (the default) is `metaworld.wslean`: frames
masked and parsed by our own small codec, the upgrade done here with h11, and no task
per connection. "trio-websocket" is the library of that name, kept as the reference.

trio-websocket's URL helpers leave the TCP socket open when the *server* closes the
connection (the client reader stops without closing its stream), so we open the stream
ourselves, hand it to `wrap_client_stream`, and always close it when we are done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import h11
import trio
import trio_websocket

from metaworld import protocol, wsframe
from metaworld.wsframe import Role
from metaworld.wslean import RECEIVE_BYTES, AnyWebSocket, Connection, WsEngine

MAX_RESPONSE_BYTES = 16 * 1024  # bytes of the server's handshake response head


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"expected a ws:// URL, got {url!r}")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, resource


async def open_stream(
    nursery: trio.Nursery,
    url: str,
    *,
    subprotocols: list[str] | None = None,
    max_message_size: int = 4 * 1024 * 1024,
    engine: WsEngine = "lean",
) -> tuple[AnyWebSocket, trio.SocketStream]:
    """Connect; the caller must `aclose()` the returned stream when finished.

    The lean engine starts no task, so `nursery` is used only by trio-websocket.
    """
    host, port, resource = _split(url)
    offered = [protocol.SUBPROTOCOL] if subprotocols is None else subprotocols
    stream = await trio.open_tcp_stream(host, port)
    ws: AnyWebSocket
    try:
        if engine == "lean":
            ws = await _upgrade(stream, host, port, resource, offered, max_message_size)
        else:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                host,
                resource,
                subprotocols=offered,
                message_queue_size=64,
                max_message_size=max_message_size,
            )
    except BaseException:
        await stream.aclose()
        raise
    return ws, stream


async def _upgrade(
    stream: trio.SocketStream,
    host: str,
    port: int,
    resource: str,
    subprotocols: list[str],
    max_message_size: int,
) -> Connection:
    """The client's half of the opening handshake (RFC 6455 4.1), then a lean connection.

    A refusal raises trio-websocket's ConnectionRejected, anything else amiss its
    HandshakeError, so callers handle both engines alike.
    """
    key = wsframe.new_key()
    authority = f"[{host}]" if ":" in host else host
    headers = [
        ("Host", authority if port == 80 else f"{authority}:{port}"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if subprotocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_BYTES)
    request = http.send(h11.Request(method="GET", target=resource, headers=headers))
    try:
        await stream.send_all((request or b"") + (http.send(h11.EndOfMessage()) or b""))
        answer = await _read_answer(stream, http)
    except h11.RemoteProtocolError as exc:
        raise trio_websocket.HandshakeError(f"bad handshake response: {exc}") from exc
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise trio_websocket.HandshakeError("the connection broke during the handshake") from exc
    if answer.status_code != 101:
        raise trio_websocket.HandshakeError(f"unexpected status {answer.status_code}")
    fields = {name: value for name, value in answer.headers}
    if fields.get(b"sec-websocket-accept") != wsframe.accept_key(key).encode("ascii"):
        raise trio_websocket.HandshakeError("wrong Sec-WebSocket-Accept")
    chosen = fields.get(b"sec-websocket-protocol")
    subprotocol = chosen.decode("ascii") if chosen is not None else None
    if subprotocol is not None and subprotocol not in subprotocols:
        raise trio_websocket.HandshakeError(f"server chose subprotocol {subprotocol!r}")
    received, _ = http.trailing_data
    return Connection(
        stream,
        Role.CLIENT,
        max_message_size=max_message_size,
        subprotocol=subprotocol,
        path=resource,
        received=received,
    )


async def _read_answer(
    stream: trio.SocketStream, http: h11.Connection
) -> h11.InformationalResponse:
    """The server's 101; a refusal, with its body, raises ConnectionRejected."""
    refusal: h11.Response | None = None
    body = b""
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(await stream.receive_some(RECEIVE_BYTES))
        elif isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            return event
        elif isinstance(event, h11.Response):
            refusal = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) and refusal:
            headers = tuple((name, value) for name, value in refusal.headers)
            raise trio_websocket.ConnectionRejected(refusal.status_code, headers, body)
        elif isinstance(event, h11.ConnectionClosed):
            raise trio_websocket.HandshakeError("the server hung up during the handshake")


@asynccontextmanager
async def open_websocket(
    url: str, *, subprotocols: list[str] | None = None, engine: WsEngine = "lean"
) -> AsyncIterator[AnyWebSocket]:
    """A plain connection for tests and tools: closed, socket and all, on exit."""
    async with trio.open_nursery() as nursery:
        ws, stream = await open_stream(nursery, url, subprotocols=subprotocols, engine=engine)
        try:
            yield ws
        finally:
            with trio.move_on_after(1):
                await ws.aclose()
            await stream.aclose()

"""Opening WebSocket connections whose TCP stream this package owns.

trio-websocket's URL helpers leave the TCP socket open when the *server* closes the
connection (the client reader stops without closing its stream), so we open the stream
ourselves, hand it to `wrap_client_stream`, and always close it when we are done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
import trio_websocket

from metaworld import protocol


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
) -> tuple[trio_websocket.WebSocketConnection, trio.SocketStream]:
    """Connect; the caller must `aclose()` the returned stream when finished."""
    host, port, resource = _split(url)
    stream = await trio.open_tcp_stream(host, port)
    try:
        ws = await trio_websocket.wrap_client_stream(
            nursery,
            stream,
            host,
            resource,
            subprotocols=[protocol.SUBPROTOCOL] if subprotocols is None else subprotocols,
            message_queue_size=64,
            max_message_size=max_message_size,
        )
    except BaseException:
        await stream.aclose()
        raise
    return ws, stream


@asynccontextmanager
async def open_websocket(
    url: str, *, subprotocols: list[str] | None = None
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A plain connection for tests and tools: closed, socket and all, on exit."""
    async with trio.open_nursery() as nursery:
        ws, stream = await open_stream(nursery, url, subprotocols=subprotocols)
        try:
            yield ws
        finally:
            with trio.move_on_after(1):
                await ws.aclose()
            await stream.aclose()

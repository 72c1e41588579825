"""An SDK client that does not turn other avatars' poses into floats.

The stock `metaworld_sdk.Client` decodes every pose record it receives into float
arrays (`RemoteAvatar.pose`), which costs about as much CPU as the rest of its work put
together: at 50 bots it was two fifths of the swarm's time. Bots never look at other
avatars' poses, so `BotClient` only notes when each one was updated. Everything else,
the handshake, resume, views, presence and placements, is the SDK's own code.

`connect` is `metaworld_sdk.connect` with this class as its `client_class`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import metaworld_sdk
from metaworld import protocol, quant
from metaworld_sdk import Client


class BotClient(Client):
    """A client whose view tracks who is there and when they moved, not their poses."""

    def _apply_records(self, data: bytes, now: float) -> None:
        if not data:
            return
        view = self.view
        for avatar_id in quant.records_from_bytes(data)["id"].tolist():
            remote = view.get(avatar_id)
            if remote is not None:
                remote.updated_at = now


@asynccontextmanager
async def connect(
    url: str,
    token: str,
    *,
    kind: protocol.ClientKind = "bot",
    decode_poses: bool = False,
    **options: Any,
) -> AsyncIterator[Client]:
    """Like `metaworld_sdk.connect`; `decode_poses=True` gives the stock client."""
    client_class = Client if decode_poses else BotClient
    async with metaworld_sdk.connect(
        url, token, kind=kind, client_class=client_class, **options
    ) as client:
        yield client

"""Shared fixtures: a real world server on loopback, tokens, and SDK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio
from hypothesis import settings

# Shared CI machines stall at random; a per-example deadline measures them, not the code.
settings.register_profile("metaworld", deadline=None)
settings.load_profile("metaworld")

from metaworld.auth import mint_dev_token
from metaworld.roles import Role
from metaworld.server import WorldServer
from support import server_config

TokenFactory = Callable[..., str]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def make_token(data_dir: Path) -> TokenFactory:
    def make(sub: str, role: Role = "clinician", **kw: object) -> str:
        return mint_dev_token(data_dir, sub, role, **kw)  # type: ignore[arg-type]

    return make


ServerFactory = Callable[..., Awaitable[WorldServer]]


@pytest.fixture
def start_server(data_dir: Path, nursery: trio.Nursery) -> ServerFactory:
    """Start a server on a free loopback port; keyword arguments override its config."""

    async def start(**overrides: object) -> WorldServer:
        server = WorldServer(server_config(data_dir, **overrides), label_secret=b"test-secret")
        await nursery.start(server.serve)
        return server

    return start


@pytest.fixture
async def world_server(start_server: ServerFactory) -> AsyncIterator[WorldServer]:
    server = await start_server()
    yield server
    server.config.engine.dispose()


@pytest.fixture
def ws_url(world_server: WorldServer) -> str:
    return f"ws://127.0.0.1:{world_server.ws_port}/"

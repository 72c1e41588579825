"""Shared fixtures: a real world server on loopback, tokens, and SDK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio
from hypothesis import settings

from metaworld.auth import mint_dev_token
from metaworld.roles import Role
from metaworld.server import WorldServer
from support import WS_ENGINES, server_config

# Shared CI machines stall at random; a per-example deadline measures them, not the code.
settings.register_profile("metaworld", deadline=None)
settings.load_profile("metaworld")

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


@pytest.fixture(params=WS_ENGINES)
def ws_engine(request: pytest.FixtureRequest) -> str:
    """Each server test runs once on each WebSocket engine."""
    engine: str = request.param
    return engine


@pytest.fixture
def start_server(data_dir: Path, nursery: trio.Nursery, ws_engine: str) -> ServerFactory:
    """Start a server on a free loopback port; keyword arguments override its config."""

    async def start(**overrides: object) -> WorldServer:
        overrides.setdefault("ws_engine", ws_engine)
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

"""Shared fixtures: a real world server on loopback, tokens, and SDK clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from metaworld.auth import dev_verifier, mint_dev_token
from metaworld.interest import InterestConfig
from metaworld.layout import load_layout
from metaworld.roles import Role
from metaworld.server import ServerConfig, WorldServer
from metaworld.store import make_engine

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
PG_URL = os.environ.get("METAWORLD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

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


def server_config(data_dir: Path, db_url: str | None = None, **overrides: object) -> ServerConfig:
    engine = make_engine(db_url or f"sqlite:///{data_dir / 'test.db'}")
    options: dict[str, object] = {
        "layout": load_layout(),
        "verifier": dev_verifier(data_dir),
        "engine": engine,
        "data_dir": data_dir,
        "ws_port": 0,
        "http_port": -1,
        "resume_grace_s": 5.0,
        "interest": InterestConfig(),
    }
    options.update(overrides)
    return ServerConfig(**options)  # type: ignore[arg-type]


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

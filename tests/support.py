"""Helpers shared by test modules (conftest.py holds the fixtures)."""

from __future__ import annotations

import os
from pathlib import Path

from metaworld.auth import dev_verifier
from metaworld.interest import InterestConfig
from metaworld.layout import load_layout
from metaworld.server import ServerConfig
from metaworld.store import make_engine

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
PG_URL = os.environ.get("METAWORLD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WS_ENGINES = ["lean", "trio-websocket"]  # every server test runs on each


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
        "tune_gc": False,
        "interest": InterestConfig(),
    }
    options.update(overrides)
    return ServerConfig(**options)  # type: ignore[arg-type]

"""What must survive a restart does, on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy
import trio
from sqlalchemy.orm import Session

import metaworld_sdk
from metaworld.server import WorldServer
from metaworld.store import Account, ChatRow, RoomState, SessionRow, make_engine
from support import PG_URL, server_config


def pg_or_skip() -> str:
    try:
        engine = sqlalchemy.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure to reach it means: not available here
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}")
    return PG_URL


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, data_dir):
    if request.param == "sqlite":
        return f"sqlite:///{data_dir / 'store.db'}"
    url = pg_or_skip()
    engine = make_engine(url)
    with Session(engine) as db, db.begin():
        for table in (ChatRow, RoomState, SessionRow, Account):
            db.query(table).delete()
    engine.dispose()
    return url


async def wait_until(predicate, timeout=5.0):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def rows(engine, model):
    with Session(engine) as db:
        return list(db.scalars(sqlalchemy.select(model)))


async def test_accounts_sessions_allow_lists_and_chat_survive_a_restart(
    db_url, data_dir, make_token
):
    config = server_config(data_dir, db_url)
    async with trio.open_nursery() as nursery:
        server = WorldServer(config, label_secret=b"s")
        await nursery.start(server.serve)
        url = f"ws://127.0.0.1:{server.ws_port}/"
        async with (
            metaworld_sdk.connect(url, make_token("therapist-1", "therapist", name="T")) as t,
            metaworld_sdk.connect(url, make_token("patient-1", "patient", name="P One")) as p,
        ):
            await t.join_room("therapy")
            # The therapy room takes appointments; the therapist may enter, the patient not yet.
            await t.wait_for(lambda c: c.room == "therapy")
            await t.admit(p.avatar_id)
            await t.chat("welcome")
            await t.wait_for(lambda c: c.chat_log)
            await wait_until(lambda: len(rows(config.engine, ChatRow)) == 1)
            await wait_until(lambda: rows(config.engine, RoomState) != [])
        nursery.cancel_scope.cancel()

    accounts = {a.subject: a.role for a in rows(config.engine, Account)}
    assert accounts == {"therapist-1": "therapist", "patient-1": "patient"}
    assert {s.subject for s in rows(config.engine, SessionRow)} == {"therapist-1", "patient-1"}
    assert rows(config.engine, RoomState)[0].allowed_patients == ["patient-1"]
    assert rows(config.engine, ChatRow)[0].text == "welcome"
    assert all("P One" not in repr(vars(row)) for row in rows(config.engine, ChatRow))

    async with trio.open_nursery() as nursery:
        server = WorldServer(server_config(data_dir, db_url), label_secret=b"s")
        await nursery.start(server.serve)
        assert "patient-1" in server.world.admitted["therapy"]
        assert all(s.closed is not None for s in rows(server.config.engine, SessionRow))
        nursery.cancel_scope.cancel()
    config.engine.dispose()
    server.config.engine.dispose()

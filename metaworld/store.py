"""Storage: the SQLAlchemy engine, the declarative base and the world's own tables.

SQLite in the data directory is the default; any SQLAlchemy URL works, and PostgreSQL
(``postgresql+psycopg://...``) is tested. Sessions are short: one per unit of work, never
shared between tasks. Under Trio, call sync database code through ``trio.to_thread``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import JSON, DateTime, Engine, Integer, String, Text, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    """Every metaworld table derives from this base; `create_all` makes them all."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Account(Base):
    """A token subject the server has seen; no names of patients are stored here."""

    __tablename__ = "accounts"
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SessionRow(Base):
    """A world session, kept so that a restart can tell resumed from unknown sessions."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), index=True)
    room: Mapped[str] = mapped_column(String(64))
    opened: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RoomState(Base):
    """Per-room state that outlives a restart (the appointment allow-list)."""

    __tablename__ = "room_state"
    room: Mapped[str] = mapped_column(String(64), primary_key=True)
    allowed_patients: Mapped[list[str]] = mapped_column(JSON, default=list)


class ChatRow(Base):
    """Chat history of rooms whose layout says `keeps_chat`."""

    __tablename__ = "chat_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    room: Mapped[str] = mapped_column(String(64), index=True)
    avatar_label: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'metaworld.db'}"


def normalize_url(url: str) -> str:
    """Let people write postgresql://; we use the psycopg 3 driver for it."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """Create the engine and every table that does not exist yet."""
    engine = create_engine(normalize_url(url), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _import_all_models()
    Base.metadata.create_all(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker:  # type: ignore[type-arg]
    return sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _import_all_models() -> None:
    """Import modules that define tables so that create_all sees them."""
    import importlib

    for name in ("metaworld.ledger.store", "metaworld.records.store", "metaworld.consent.store"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise

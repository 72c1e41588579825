"""The consent tables: current consents, every version ever stored, emergency grants.

A consent is never edited in place: each change stores a new version in
`consent_history` and points `consent_consents` at it. `consent_settings` holds the
per-deployment salt that makes patient ids opaque in the ledger.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from metaworld.store import Base


class ConsentRow(Base):
    """The current version of one consent."""

    __tablename__ = "consent_consents"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)  # the consent as JSON (model.encode_consent)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class ConsentHistoryRow(Base):
    """One stored version of a consent, and who stored it."""

    __tablename__ = "consent_history"
    consent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    recorded_ms: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))


class BreakGlassRow(Base):
    """An emergency override. The reason is kept here for the reviewer; the ledger holds
    only its keyed hash, which pins the text."""

    __tablename__ = "consent_break_glass"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    actor: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    patient_id: Mapped[str] = mapped_column(String(64))
    room: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    reason_hash: Mapped[str] = mapped_column(String(64))
    end_logged: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_consent_break_glass_actor_patient", "actor", "patient_id"),
        Index("ix_consent_break_glass_open", "end_logged", "end_ms"),
    )


class SettingRow(Base):
    """Per-deployment secrets and settings of the consent service."""

    __tablename__ = "consent_settings"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)

"""The ledger's tables. `metaworld.store.make_engine` imports this module and creates them.

Only `ledger_entries.body` and `ledger_checkpoints.text` are evidence; every other column
is derived from them and kept for look-ups, and `verify_store` checks that they agree.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from metaworld.store import Base

# SQLite makes an INTEGER PRIMARY KEY the rowid (fast appends); elsewhere use 64 bits.
_Position = BigInteger().with_variant(Integer(), "sqlite")


class EntryRow(Base):
    """One leaf: the canonical entry bytes, their RFC 9162 leaf hash, and the hashes of the
    perfect subtrees this leaf completed.

    Leaf i completes one subtree per trailing one bit of i: levels 1, 2, ... t, each the
    subtree whose last leaf is i. Keeping them on the row (32 bytes per level, lowest
    first, empty when t = 0) lets roots of past sizes and proofs cost O(log n) look-ups by
    primary key, and costs an append no extra statement.
    """

    __tablename__ = "ledger_entries"
    idx: Mapped[int] = mapped_column(_Position, primary_key=True, autoincrement=False)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    subtrees: Mapped[bytes] = mapped_column(LargeBinary)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    patient: Mapped[str] = mapped_column(String(255), index=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class CheckpointRow(Base):
    """A signed checkpoint, in the order it was made."""

    __tablename__ = "ledger_checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)


# The same tables as Core objects, for plain inserts and for creating or dropping just these.
ENTRY_TABLE = Base.metadata.tables[EntryRow.__tablename__]
CHECKPOINT_TABLE = Base.metadata.tables[CheckpointRow.__tablename__]
LEDGER_TABLES = (ENTRY_TABLE, CHECKPOINT_TABLE)

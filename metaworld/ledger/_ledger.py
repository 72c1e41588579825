"""The appender: puts entries into the database as leaves of the tree and signs checkpoints.

Theory of operation. The database holds the leaves and, on each leaf's row, the hashes of
the perfect subtrees that leaf completed; so every complete subtree is one primary-key
look-up away, and a proof or a past root costs O(log n) reads. In memory the ledger keeps
only a `Frontier`: the hashes of the perfect subtrees that make up the current tree, one
per set bit of the size. An append computes the leaf hash, pushes it onto a copy of the
frontier (which yields the subtrees the new leaf completes), writes one row in one
transaction, and only after the commit swaps in the new frontier. A failed commit
therefore leaves memory and database agreeing on the old tree.

Appends hold a process-wide lock, so indices never collide within a process. One process
should append to a database: a second writer makes the first one's next append fail with
`LedgerConflictError`, after which the first reloads its state. Reads (roots of past sizes,
proofs, entry look-ups) touch only complete subtrees, which never change, so they take no
lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from metaworld.ledger.checkpoint import DEFAULT_KEY_NAME, Checkpoint, sign_checkpoint
from metaworld.ledger.entry import EntryError, LedgerEntry, decode_leaf, encode_leaf
from metaworld.ledger.store import (
    CHECKPOINT_TABLE,
    ENTRY_TABLE,
    CheckpointRow,
    EntryRow,
)
from metaworld.ledger.tree import (
    HASH_SIZE,
    Frontier,
    NodeId,
    TreeRangeError,
    consistency_path,
    fold,
    hash_spans,
    inclusion_path,
    leaf_hash,
    nodes_for,
)

log = logging.getLogger("metaworld.ledger")

DEFAULT_ORIGIN = "metaworld ledger"
# Sign a checkpoint each time the size crosses a multiple of this many entries. A signature
# costs about as much as one append; entries after the latest checkpoint are protected only
# by their hashes, so keep this small enough that a lost suffix would be noticed.
DEFAULT_CHECKPOINT_EVERY = 1000
# Most entries one `entries()` call returns, whatever the caller asks for.
MAX_QUERY_ROWS = 10_000

# Plain table inserts: the ORM's bulk path costs more than the commit itself, and the
# appender has no objects to track anyway.
_INSERT_ENTRIES = insert(ENTRY_TABLE)
_INSERT_CHECKPOINT = insert(CHECKPOINT_TABLE)


class LedgerError(Exception):
    """The ledger's store cannot do what was asked."""


class LedgerConflictError(LedgerError):
    """Another writer appended to the same database; state was reloaded, retry the append."""


class LedgerCorruptError(LedgerError):
    """The store lacks data it must have or holds unreadable data; run `verify_store`."""


class StoredEntry(msgspec.Struct, frozen=True):
    """An entry as the ledger holds it: its position and the leaf hash proofs start from."""

    index: int
    entry: LedgerEntry
    leaf_hash: bytes


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ledger:
    """The verifiable audit log over one database. Safe to share between threads."""

    def __init__(
        self,
        engine: Engine,
        key: Ed25519PrivateKey,
        origin: str = DEFAULT_ORIGIN,
        *,
        key_name: str = DEFAULT_KEY_NAME,
        checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError("checkpoint_every must be positive or None")
        self.origin = origin
        self.key_name = key_name
        self.checkpoint_every = checkpoint_every
        self._engine = engine
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        # Replaced whole, never mutated in place, so readers may take it without the lock.
        self._frontier = Frontier()
        with self._lock:
            self._reload()
        log.info("ledger %r opened at size %d", origin, self._frontier.size)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    # Writing

    def append(self, entry: LedgerEntry) -> int:
        """Record one entry, committed before this returns; its index."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[LedgerEntry]) -> list[int]:
        """Record several entries in one transaction; their indices, in order."""
        batch = list(entries)
        if not batch:
            return []
        with self._lock:
            frontier = self._frontier.copy()
            start = frontier.size
            rows = []
            for index, entry in enumerate(batch, start):
                body = encode_leaf(index, entry)
                leaf = leaf_hash(body)
                subtrees = b"".join(digest for _, digest in frontier.push(leaf))
                rows.append(_entry_row(index, entry, body, leaf, subtrees))

            every = self.checkpoint_every
            due = every is not None and frontier.size // every > start // every
            try:
                with Session(self._engine) as session, session.begin():
                    session.execute(_INSERT_ENTRIES, rows)
                    if due:
                        session.execute(_INSERT_CHECKPOINT, [self._sign(frontier)[1]])
            except IntegrityError as exc:
                self._reload()
                raise LedgerConflictError(
                    f"index {start} was taken by another writer; now at {self._frontier.size}"
                ) from exc
            except SQLAlchemyError as exc:
                raise LedgerError(f"appending entry {start} failed: {exc}") from exc
            self._frontier = frontier
        return list(range(start, start + len(batch)))

    def checkpoint(self) -> str:
        """Sign the current size and root now, store the checkpoint and return its text."""
        with self._lock:
            text, row = self._sign(self._frontier)
            with store_errors(), Session(self._engine) as session, session.begin():
                session.execute(_INSERT_CHECKPOINT, [row])
        log.debug("checkpoint at size %d", row["size"])
        return text

    # Reading

    def size(self) -> int:
        return self._frontier.size

    def root(self, size: int | None = None) -> bytes:
        """The root of the whole tree, or of its first `size` leaves."""
        frontier = self._frontier
        if size is None or size == frontier.size:
            return frontier.root()
        self._check_size(size, frontier)
        ids = Frontier.node_ids(size)
        nodes = self._fetch_nodes(ids)
        return fold([nodes[node] for node in ids])

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf `index` in the tree of `size` (default: now)."""
        size = self._check_size(size, self._frontier)
        spans = inclusion_path(index, size)
        return hash_spans(spans, self._fetch_nodes(nodes_for(spans)))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from `old_size` (> 0) to `new_size` (default: now)."""
        new_size = self._check_size(new_size, self._frontier)
        spans = consistency_path(old_size, new_size)
        return hash_spans(spans, self._fetch_nodes(nodes_for(spans)))

    def latest_checkpoint(self) -> str | None:
        """The most recently signed checkpoint's text, or None before the first one."""
        query = select(CheckpointRow.text).order_by(CheckpointRow.id.desc()).limit(1)
        with store_errors(), Session(self._engine) as session:
            return session.scalars(query).first()

    def get(self, index: int) -> StoredEntry:
        """The entry at `index`, with the leaf hash to check its inclusion proof against."""
        if not 0 <= index < self._frontier.size:
            raise TreeRangeError(f"no entry {index} in a ledger of {self._frontier.size}")
        with store_errors(), Session(self._engine) as session:
            row = session.get(EntryRow, index)
            if row is None:
                raise LedgerCorruptError(f"entry {index} is missing from the store")
            return _stored(row.idx, row.body, row.leaf_hash)

    def entries(
        self,
        patient: str | None = None,
        actor: str | None = None,
        since_ms: int | None = None,
        limit: int = 100,
        kind: str | None = None,
    ) -> list[StoredEntry]:
        """Entries matching every given filter, oldest first, at most `limit` of them
        (capped at `MAX_QUERY_ROWS`). `since_ms` keeps entries with ``at_ms >= since_ms``."""
        query = select(EntryRow.idx, EntryRow.body, EntryRow.leaf_hash)
        if patient is not None:
            query = query.where(EntryRow.patient == patient)
        if actor is not None:
            query = query.where(EntryRow.actor == actor)
        if kind is not None:
            query = query.where(EntryRow.kind == kind)
        if since_ms is not None:
            query = query.where(EntryRow.at_ms >= since_ms)
        query = query.order_by(EntryRow.idx).limit(max(0, min(limit, MAX_QUERY_ROWS)))
        with store_errors(), Session(self._engine) as session:
            rows = session.execute(query).all()
        return [_stored(idx, body, digest) for idx, body, digest in rows]

    # Internals

    def _reload(self) -> None:
        """Rebuild the frontier from the store (caller holds the lock)."""
        with store_errors(), Session(self._engine) as session:
            last = session.scalar(select(func.max(EntryRow.idx)))
        size = 0 if last is None else last + 1
        ids = Frontier.node_ids(size)
        nodes = self._fetch_nodes(ids)
        self._frontier = Frontier(size, [nodes[node] for node in ids])

    def _sign(self, frontier: Frontier) -> tuple[str, dict[str, Any]]:
        """A signed checkpoint of `frontier` and the row that stores it."""
        statement = Checkpoint(self.origin, frontier.size, frontier.root(), self._clock())
        text = sign_checkpoint(statement, self._key, self.key_name)
        row = {
            "size": statement.size,
            "root": statement.root,
            "timestamp_ms": statement.timestamp_ms,
            "text": text,
        }
        return text, row

    def _fetch_nodes(self, ids: Iterable[NodeId]) -> Mapping[NodeId, bytes]:
        """Hashes of perfect subtrees, each read from the row of its last leaf."""
        wanted = set(ids)
        rows = {_last_leaf(node) for node in wanted}
        query = select(EntryRow.idx, EntryRow.leaf_hash, EntryRow.subtrees).where(
            EntryRow.idx.in_(rows)
        )
        with store_errors(), Session(self._engine) as session:
            found = {idx: (leaf, subtrees) for idx, leaf, subtrees in session.execute(query)}

        nodes = {}
        for node in wanted:
            leaf, subtrees = found.get(_last_leaf(node), (b"", b""))
            if node.level == 0:
                digest = leaf
            else:
                digest = subtrees[(node.level - 1) * HASH_SIZE : node.level * HASH_SIZE]
            if len(digest) != HASH_SIZE:
                raise LedgerCorruptError(f"the store lacks subtree {node}; run verify_store")
            nodes[node] = digest
        return nodes

    @staticmethod
    def _check_size(size: int | None, frontier: Frontier) -> int:
        if size is None:
            return frontier.size
        if not 0 <= size <= frontier.size:
            raise TreeRangeError(f"size {size} is beyond the ledger's {frontier.size} entries")
        return size


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Report a failing database as the ledger's own error, not the driver's."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise LedgerError(f"the ledger store failed: {exc}") from exc


def _entry_row(
    index: int, entry: LedgerEntry, body: bytes, leaf: bytes, subtrees: bytes
) -> dict[str, Any]:
    return {
        "idx": index,
        "body": body,
        "leaf_hash": leaf,
        "subtrees": subtrees,
        "kind": entry.kind,
        "patient": entry.patient,
        "actor": entry.actor,
        "at_ms": entry.at_ms,
    }


def _last_leaf(node: NodeId) -> int:
    """The index of the leaf that completed `node`: the row that holds its hash."""
    return ((node.position + 1) << node.level) - 1


def _stored(index: int, body: bytes, digest: bytes) -> StoredEntry:
    try:
        leaf = decode_leaf(body)
    except EntryError as exc:
        raise LedgerCorruptError(f"entry {index} is unreadable; run verify_store") from exc
    return StoredEntry(index=index, entry=leaf.entry, leaf_hash=digest)

"""`verify_store`: re-derive the whole ledger from its evidence and compare.

The evidence is each entry's canonical bytes and each signed checkpoint's text; everything
else in the tables is derived. The audit reads the entries in index order, recomputes every
leaf hash from the bytes (not from the stored hash), rebuilds the tree, and then checks that
every checkpoint is signed by the ledger key and names the root the rebuilt tree had at that
size. An edited entry breaks its own hash; a moved or swapped entry carries its original
index inside its bytes; an entry rewritten together with its hash and index still changes
the root that every later checkpoint signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from metaworld.ledger._ledger import store_errors
from metaworld.ledger.checkpoint import (
    DEFAULT_KEY_NAME,
    Checkpoint,
    CheckpointError,
    verify_checkpoint,
)
from metaworld.ledger.entry import EntryError, decode_leaf, encode_leaf
from metaworld.ledger.store import CheckpointRow, EntryRow
from metaworld.ledger.tree import EMPTY_ROOT, HASH_SIZE, Frontier, NodeId, leaf_hash

# Entries read per database session while auditing.
_BATCH = 2000
# Problems spelled out in a report; the rest are only counted.
_MAX_PROBLEMS = 20


@dataclass
class VerifyReport:
    """What `verify_store` found. `ok` when there is nothing to report."""

    size: int = 0  # entries read before the first gap (all of them in an intact log)
    root: bytes = EMPTY_ROOT  # root recomputed from the entries' bytes
    checkpoints: int = 0  # checkpoints examined
    first_bad_entry: int | None = None
    first_bad_checkpoint: int | None = None  # the checkpoint's row id
    first_bad_node: NodeId | None = None  # a cached subtree hash that is wrong
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def _add(self, problem: str) -> None:
        self.problem_count += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)


def verify_store(
    engine: Engine,
    public_key: Ed25519PublicKey,
    *,
    key_name: str = DEFAULT_KEY_NAME,
    origin: str | None = None,
) -> VerifyReport:
    """Audit every entry and checkpoint in the store. `origin`, if given, must be named by
    every checkpoint. Reads the whole log once, in batches, with O(log n) memory for the
    tree plus one root per checkpoint. Raises `LedgerError` if the database fails."""
    report = VerifyReport()
    with store_errors():
        statements = _read_checkpoints(engine, public_key, key_name, origin, report)
        roots = _rebuild_tree(engine, {cp.size for _, cp in statements}, report)

    for row_id, statement in statements:
        if statement.size > report.size:
            _bad_checkpoint(report, row_id, f"covers {statement.size} entries, log has fewer")
        elif roots[statement.size] != statement.root:
            _bad_checkpoint(report, row_id, f"root differs from the entries' at {statement.size}")
    return report


def _read_checkpoints(
    engine: Engine,
    public_key: Ed25519PublicKey,
    key_name: str,
    origin: str | None,
    report: VerifyReport,
) -> list[tuple[int, Checkpoint]]:
    """Signature-checked checkpoints, each with its row id; bad ones go to the report."""
    query = select(
        CheckpointRow.id,
        CheckpointRow.size,
        CheckpointRow.root,
        CheckpointRow.timestamp_ms,
        CheckpointRow.text,
    ).order_by(CheckpointRow.id)
    with Session(engine) as session:
        rows = session.execute(query).all()

    statements = []
    for row_id, size, root, timestamp_ms, text in rows:
        report.checkpoints += 1
        try:
            statement = verify_checkpoint(text, public_key, key_name, origin)
        except CheckpointError as exc:
            _bad_checkpoint(report, row_id, str(exc))
            continue
        if (statement.size, statement.root, statement.timestamp_ms) != (size, root, timestamp_ms):
            _bad_checkpoint(report, row_id, "columns disagree with the signed text")
            continue
        statements.append((row_id, statement))
    return statements


def _rebuild_tree(engine: Engine, sizes: set[int], report: VerifyReport) -> dict[int, bytes]:
    """Recompute the tree from the entries' bytes; the root at each of `sizes` reached."""
    # `evidence` is the tree of hashes recomputed from the bytes; it decides the roots.
    # `cache` is the tree of the stored leaf hashes, which proofs are served from; it checks
    # each row's cached subtree hashes without repeating a fault `evidence` already found.
    evidence, cache = Frontier(), Frontier()
    roots = {0: EMPTY_ROOT}
    while True:
        query = (
            select(
                EntryRow.idx,
                EntryRow.body,
                EntryRow.leaf_hash,
                EntryRow.subtrees,
                EntryRow.kind,
                EntryRow.patient,
                EntryRow.actor,
                EntryRow.at_ms,
            )
            .where(EntryRow.idx >= evidence.size)
            .order_by(EntryRow.idx)
            .limit(_BATCH)
        )
        with Session(engine) as session:
            rows = session.execute(query).all()
        if not rows:
            break

        for idx, body, stored_hash, subtrees, *columns in rows:
            if idx != evidence.size:
                _bad_entry(report, evidence.size, "missing; nothing after it can be checked")
                report.size, report.root = evidence.size, evidence.root()
                return roots
            recomputed = leaf_hash(body)
            problem = _entry_problem(idx, body, stored_hash, recomputed, columns)
            if problem:
                _bad_entry(report, idx, problem)
            _check_subtrees(cache.push(stored_hash), subtrees, idx, report)
            evidence.push(recomputed)
            if evidence.size in sizes:
                roots[evidence.size] = evidence.root()

    report.size, report.root = evidence.size, evidence.root()
    return roots


def _entry_problem(
    idx: int, body: bytes, stored_hash: bytes, recomputed: bytes, columns: Sequence[object]
) -> str | None:
    try:
        leaf = decode_leaf(body)
    except EntryError:
        return "bytes are not a ledger leaf (altered)"
    if leaf.index != idx:
        return f"bytes belong at index {leaf.index} (moved or swapped)"
    if encode_leaf(leaf.index, leaf.entry) != body:
        return "bytes are not in canonical form (altered)"
    if stored_hash != recomputed:
        return "stored leaf hash does not match its bytes (altered)"
    entry = leaf.entry
    if list(columns) != [entry.kind, entry.patient, entry.actor, entry.at_ms]:
        return "look-up columns disagree with its bytes"
    return None


def _check_subtrees(
    completed: list[tuple[NodeId, bytes]], stored: bytes, idx: int, report: VerifyReport
) -> None:
    """Compare the subtree hashes cached on row `idx` with the ones its leaf completes."""
    if stored == b"".join(digest for _, digest in completed):
        return
    report._add(f"entry {idx}: cached subtree hashes are wrong; its proofs would fail")
    for level, (node, digest) in enumerate(completed):
        if report.first_bad_node is None and stored[level * HASH_SIZE :][:HASH_SIZE] != digest:
            report.first_bad_node = node


def _bad_entry(report: VerifyReport, index: int, problem: str) -> None:
    report._add(f"entry {index}: {problem}")
    if report.first_bad_entry is None:
        report.first_bad_entry = index


def _bad_checkpoint(report: VerifyReport, row_id: int, problem: str) -> None:
    report._add(f"checkpoint #{row_id}: {problem}")
    if report.first_bad_checkpoint is None:
        report.first_bad_checkpoint = row_id

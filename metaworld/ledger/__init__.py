"""The verifiable audit ledger: an append-only log of consent changes and record access
decisions, kept as an RFC 9162 Merkle tree with signed checkpoints.

    ledger = Ledger(engine, load_or_create_ledger_key(data_dir))
    index = ledger.append(LedgerEntry(kind="access", ...))
    proof = ledger.inclusion_proof(index)

Anyone holding a checkpoint can check the ledger's answers with `metaworld.ledger.verify`
(proofs) and `metaworld.ledger.checkpoint` (signatures), which need nothing else from here.

Errors, by who is at fault:

- `EntryError`: the caller built an entry the ledger must not record.
- `TreeRangeError`: the caller asked about an index or size the ledger does not have.
- `ProofError`: a proof does not verify; the log or whoever relayed it is wrong.
- `CheckpointError`: a checkpoint is malformed or its signature does not verify.
- `LedgerKeyError`: the signing key file is unreadable or not Ed25519.
- `LedgerError`: the store failed; `LedgerConflictError` (another writer appended, retry) and
  `LedgerCorruptError` (data missing or unreadable, run `verify_store`) are its kinds.
"""

from metaworld.ledger._audit import VerifyReport, verify_store
from metaworld.ledger._ledger import (
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_ORIGIN,
    Ledger,
    LedgerConflictError,
    LedgerCorruptError,
    LedgerError,
    StoredEntry,
)
from metaworld.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    LedgerKeyError,
    load_or_create_ledger_key,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from metaworld.ledger.entry import EntryError, LedgerEntry, reason_digest
from metaworld.ledger.tree import TreeRangeError
from metaworld.ledger.verify import ProofError, verify_consistency, verify_inclusion

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_ORIGIN",
    "Checkpoint",
    "CheckpointError",
    "EntryError",
    "Ledger",
    "LedgerConflictError",
    "LedgerCorruptError",
    "LedgerEntry",
    "LedgerError",
    "LedgerKeyError",
    "ProofError",
    "StoredEntry",
    "TreeRangeError",
    "VerifyReport",
    "load_or_create_ledger_key",
    "parse_checkpoint",
    "reason_digest",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_store",
]

"""Audit entries and their canonical bytes, the leaves of the ledger's Merkle tree.

An entry records who did what to whose record, why, and what the decision was. It holds
opaque ids and hashes only: never a name, never record contents, never free text.

Canonical encoding. The leaf bytes are the compact msgspec JSON of an envelope
``{"entry": {...}, "index": <int>, "v": 1}`` with every object's keys sorted (msgspec's
``order="sorted"``) and every field present, defaults and nulls included. The leaf's own
index is part of its bytes, so moving an entry to another position changes its hash.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Literal, get_args

import msgspec

__all__ = [
    "LEAF_FORMAT",
    "EntryError",
    "EntryKind",
    "LedgerEntry",
    "LedgerLeaf",
    "Outcome",
    "decode_leaf",
    "encode_leaf",
    "reason_digest",
]

EntryKind = Literal[
    "access", "consent_granted", "consent_revoked", "break_glass_start", "break_glass_end"
]
Outcome = Literal["permit", "deny", "recorded"]

LEAF_FORMAT: Final = 1

_KINDS = frozenset(get_args(EntryKind))
_OUTCOMES = frozenset(get_args(Outcome))
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class EntryError(ValueError):
    """The caller built an entry the ledger must not record."""


class LedgerEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One consent change or one access decision about one patient's record."""

    kind: EntryKind
    actor: str  # opaque actor id (token subject)
    role: str
    patient: str  # opaque patient id; never a name
    categories: list[str]  # record categories asked for or covered by the consent
    purpose: str  # purpose of use, e.g. "TREAT", "ETREAT", "HRESCH"
    room: str | None
    outcome: Outcome
    consent_version: str | None
    at_ms: int  # unix time in milliseconds
    review: bool = False  # flagged for human review, as break-the-glass access is
    reason_hash: str | None = None  # sha256 hex of a free-text reason, never the text

    def __post_init__(self) -> None:
        # msgspec checks these types when decoding, not when a caller constructs an entry.
        if self.kind not in _KINDS:
            raise EntryError(f"unknown entry kind {self.kind!r}")
        if self.outcome not in _OUTCOMES:
            raise EntryError(f"unknown outcome {self.outcome!r}")
        if self.at_ms < 0:
            raise EntryError("at_ms must not be negative")
        if not self.actor or not self.patient:
            raise EntryError("an entry needs an actor id and a patient id")
        if self.reason_hash is not None and not _SHA256_HEX.fullmatch(self.reason_hash):
            raise EntryError("reason_hash must be 64 lowercase hex digits")


class LedgerLeaf(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The envelope that is hashed: an entry pinned to its position in the log."""

    entry: LedgerEntry
    index: int
    v: int = LEAF_FORMAT


_decoder = msgspec.json.Decoder(LedgerLeaf)


def encode_leaf(index: int, entry: LedgerEntry) -> bytes:
    """The canonical leaf bytes of `entry` at position `index`."""
    return msgspec.json.encode(LedgerLeaf(entry=entry, index=index), order="sorted")


def decode_leaf(data: bytes) -> LedgerLeaf:
    """Read leaf bytes back; raise `EntryError` if they are not a well-formed leaf."""
    try:
        leaf = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise EntryError(f"not a ledger leaf: {exc}") from exc
    if leaf.v != LEAF_FORMAT:
        raise EntryError(f"unknown leaf format {leaf.v}")
    return leaf


def reason_digest(reason: str) -> str:
    """The value for `reason_hash`: keep the digest in the ledger, the text elsewhere."""
    return hashlib.sha256(reason.encode("utf-8")).hexdigest()

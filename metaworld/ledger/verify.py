"""A self-contained verifier of RFC 9162 inclusion and consistency proofs.

This module needs only the standard library and imports nothing else from metaworld, so an
auditor can copy it next to a checkpoint and check the ledger's answers without trusting
the server. Hashes are raw 32-byte SHA-256 digests; leaf indices count from 0.

    verify_inclusion(leaf_hash(entry_bytes), index, size, proof, root)
    verify_consistency(old_size, new_size, proof, old_root, new_root)

Both return None on success and raise `ProofError` otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["HASH_SIZE", "ProofError", "leaf_hash", "verify_consistency", "verify_inclusion"]

HASH_SIZE = 32
_EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """The proof does not show what it claims: the log, or whoever relayed it, is wrong."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256 of 0x00 followed by the entry bytes."""
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check_hashes(proof: Sequence[bytes]) -> None:
    for position, digest in enumerate(proof):
        if len(digest) != HASH_SIZE:
            raise ProofError(f"proof hash {position} is {len(digest)} bytes, not {HASH_SIZE}")


def _right_shift_until_odd(first: int, second: int) -> tuple[int, int]:
    """Shift both counters right while `first` is even and non-zero: those levels have
    no sibling in the proof because the node is a right edge of the tree."""
    while first and not first & 1:
        first >>= 1
        second >>= 1
    return first, second


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf` is leaf number `index` of the tree of `size` leaves with `root`.

    Follows RFC 9162 section 2.1.3.2.
    """
    if len(leaf) != HASH_SIZE:
        raise ProofError(f"leaf hash is {len(leaf)} bytes, not {HASH_SIZE}")
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} cannot be in a tree of size {size}")
    _check_hashes(proof)

    # `position` walks up from the leaf, `last` from the tree's last leaf; they meet at root.
    position, last = index, size - 1
    result = leaf
    for sibling in proof:
        if last == 0:
            raise ProofError("proof is longer than the path to the root")
        if position & 1 or position == last:
            result = _node_hash(sibling, result)
            if not position & 1:
                position, last = _right_shift_until_odd(position, last)
        else:
            result = _node_hash(result, sibling)
        position >>= 1
        last >>= 1

    if last != 0:
        raise ProofError("proof is shorter than the path to the root")
    if result != root:
        raise ProofError("proof leads to a different root")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree of `new_size` leaves with `new_root` extends the tree of
    `old_size` leaves with `old_root`, leaving its leaves untouched.

    Follows RFC 9162 section 2.1.4.2. Equal sizes need an empty proof and equal roots. An
    old size of 0 is refused: every tree extends the empty one, so there is nothing to check.
    """
    if not 0 <= old_size <= new_size:
        raise ProofError(f"size {new_size} cannot extend size {old_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        if old_size == 0 and old_root != _EMPTY_ROOT:
            raise ProofError("the root of an empty tree is the hash of nothing")
        return
    if old_size == 0:
        raise ProofError("an empty tree is consistent with any tree; nothing to prove")
    if not proof:
        raise ProofError("sizes differ but the proof is empty")
    _check_hashes(proof)

    hashes = list(proof)
    # A perfect old tree is itself a node of the new tree; the prover leaves it out.
    if old_size & (old_size - 1) == 0:
        hashes.insert(0, old_root)

    # Start at the largest perfect subtree that ends with the old tree's last leaf: drop
    # one level per trailing one bit of `old_size - 1`.
    position, last = old_size - 1, new_size - 1
    while position & 1:
        position >>= 1
        last >>= 1
    # Walking from the old tree's last leaf, `old_result` rebuilds the old root while
    # `new_result` rebuilds the new one from the same starting node.
    old_result = new_result = hashes[0]
    for sibling in hashes[1:]:
        if last == 0:
            raise ProofError("proof is longer than the path to the root")
        if position & 1 or position == last:
            old_result = _node_hash(sibling, old_result)
            new_result = _node_hash(sibling, new_result)
            if not position & 1:
                position, last = _right_shift_until_odd(position, last)
        else:
            new_result = _node_hash(new_result, sibling)
        position >>= 1
        last >>= 1

    if last != 0:
        raise ProofError("proof is shorter than the path to the root")
    if old_result != old_root:
        raise ProofError("proof does not lead to the old root")
    if new_result != new_root:
        raise ProofError("proof does not lead to the new root")

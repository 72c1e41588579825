"""Cross-check roots and proofs with an independent implementation, pymerkle 7.

pymerkle's default tree (``disable_security=False``) hashes leaves as SHA-256(0x00 || data)
and nodes as SHA-256(0x01 || left || right), exactly RFC 9162. Its inclusion path starts
with the leaf hash itself and then lists the RFC audit path; its consistency proofs have a
shape of their own, so for those only its roots are compared.
"""

from __future__ import annotations

from typing import Any

import pytest

from metaworld.ledger.tree import MemoryTree, leaf_hash
from metaworld.ledger.verify import verify_consistency, verify_inclusion

pymerkle = pytest.importorskip("pymerkle")

MAX_SIZE = 300


@pytest.fixture(scope="module")
def trees() -> tuple[Any, MemoryTree]:
    theirs = pymerkle.InmemoryTree(algorithm="sha256", disable_security=False)
    ours = MemoryTree()
    for i in range(MAX_SIZE):
        data = f"audit entry {i}".encode()
        theirs.append_entry(data)
        ours.append(leaf_hash(data))
    return theirs, ours


def test_pymerkle_uses_rfc_prefixes(trees: tuple[Any, MemoryTree]) -> None:
    theirs, _ = trees
    assert theirs.hash_buff(b"x") == leaf_hash(b"x")


def test_roots_agree_for_every_size(trees: tuple[Any, MemoryTree]) -> None:
    theirs, ours = trees
    for size in range(MAX_SIZE + 1):
        assert ours.root(size) == theirs.get_root(size), size


def test_inclusion_proofs_agree(trees: tuple[Any, MemoryTree]) -> None:
    theirs, ours = trees
    for size in [*range(1, 70), 127, 128, 129, 200, 255, 256, 257, MAX_SIZE]:
        root = theirs.get_root(size)
        for index in range(0, size, max(1, size // 40)):
            proof = ours.inclusion_proof(index, size)
            their_proof = theirs.prove_inclusion(index + 1, size)
            assert their_proof.path == [leaf_hash(f"audit entry {index}".encode()), *proof]
            verify_inclusion(their_proof.path[0], index, size, proof, root)


def test_our_consistency_proofs_join_their_roots(trees: tuple[Any, MemoryTree]) -> None:
    theirs, ours = trees
    for new in [*range(1, 40), 64, 65, 100, 255, 256, 257, MAX_SIZE]:
        new_root = theirs.get_root(new)
        for old in range(1, new + 1, max(1, new // 30)):
            old_root = theirs.get_root(old)
            verify_consistency(old, new, ours.consistency_proof(old, new), old_root, new_root)

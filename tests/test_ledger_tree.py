"""The sans-io tree math against RFC 9162's recursive definitions, and the verifier."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metaworld.ledger import verify
from metaworld.ledger.tree import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    NodeId,
    Span,
    TreeRangeError,
    consistency_path,
    inclusion_path,
    leaf_hash,
    node_hash,
    root_of,
    span_nodes,
    split_point,
)
from metaworld.ledger.verify import ProofError, verify_consistency, verify_inclusion

# The RFC's definitions, written as literally as possible, as the reference.


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = split_point(n)
    if m <= k:
        return [*subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def leaves_of(count: int) -> list[bytes]:
    return [leaf_hash(f"leaf {i}".encode()) for i in range(count)]


def test_hashes_use_rfc_9162_prefixes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert verify.leaf_hash(b"x") == leaf_hash(b"x")


def test_split_point_is_largest_power_of_two_below() -> None:
    assert [split_point(n) for n in range(2, 10)] == [1, 2, 2, 4, 4, 4, 4, 8]


def test_roots_match_the_definition() -> None:
    leaves = leaves_of(140)
    tree = MemoryTree()
    for size in range(len(leaves) + 1):
        assert root_of(leaves[:size]) == mth(leaves[:size])
        assert tree.root() == mth(leaves[:size])
        if size < len(leaves):
            tree.append(leaves[size])
    for size in range(len(leaves) + 1):
        assert tree.root(size) == mth(leaves[:size])


def test_proofs_match_the_definition_and_verify() -> None:
    leaves = leaves_of(70)
    tree = MemoryTree(leaves)
    for size in range(1, len(leaves) + 1):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == path(index, leaves[:size])
            verify_inclusion(leaves[index], index, size, proof, root)
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert proof == (subproof(old, leaves[:size], True) if old < size else [])
            verify_consistency(old, size, proof, tree.root(old), root)


@given(st.integers(min_value=1, max_value=5000), st.data())
def test_proofs_verify_for_large_trees(size: int, data: st.DataObject) -> None:
    tree = MemoryTree(leaves_of(size))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    old = data.draw(st.integers(min_value=1, max_value=size))
    proof = tree.inclusion_proof(index, size)
    verify_inclusion(tree.node(NodeId(0, index)), index, size, proof, tree.root())
    verify_consistency(old, size, tree.consistency_proof(old), tree.root(old), tree.root())
    assert len(proof) <= size.bit_length()


@given(st.integers(min_value=2, max_value=600), st.data())
def test_altered_inclusion_proofs_are_rejected(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size)
    tree = MemoryTree(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = tree.inclusion_proof(index)
    root = tree.root()
    wrong_index = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], wrong_index, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[(index + 1) % size], index, size, proof, root)
    if proof:
        flipped = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bad = list(proof)
        bad[flipped] = bytes([bad[flipped][0] ^ 1]) + bad[flipped][1:]
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, bad, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, size, proof[:-1], root)


@given(st.integers(min_value=2, max_value=600), st.data())
def test_altered_consistency_proofs_are_rejected(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size)
    tree = MemoryTree(leaves)
    old = data.draw(st.integers(min_value=1, max_value=size - 1))
    proof = tree.consistency_proof(old)
    old_root, new_root = tree.root(old), tree.root()
    # A log that rewrote its first leaf cannot show its new root extends the old one.
    forged = MemoryTree([leaf_hash(b"forged"), *leaves[1:]])
    with pytest.raises(ProofError):
        verify_consistency(old, size, forged.consistency_proof(old), old_root, forged.root())
    with pytest.raises(ProofError):
        verify_consistency(old, size, proof, new_root, old_root)
    with pytest.raises(ProofError):
        verify_consistency(old, size, [*proof, EMPTY_ROOT], old_root, new_root)
    flipped = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    bad = list(proof)
    bad[flipped] = bytes([bad[flipped][0] ^ 0x80]) + bad[flipped][1:]
    with pytest.raises(ProofError):
        verify_consistency(old, size, bad, old_root, new_root)


def test_frontier_holds_one_subtree_per_set_bit() -> None:
    assert Frontier.node_ids(0) == []
    assert Frontier.node_ids(13) == [NodeId(3, 0), NodeId(2, 2), NodeId(0, 12)]
    frontier = Frontier()
    completed = [frontier.push(leaf) for leaf in leaves_of(8)]
    assert [[node for node, _ in done] for done in completed] == [
        [],
        [NodeId(1, 0)],
        [],
        [NodeId(1, 1), NodeId(2, 0)],
        [],
        [NodeId(1, 2)],
        [],
        [NodeId(1, 3), NodeId(2, 1), NodeId(3, 0)],
    ]
    assert frontier.root() == mth(leaves_of(8))
    with pytest.raises(TreeRangeError):
        Frontier(3, [EMPTY_ROOT])


def test_spans_split_into_aligned_perfect_subtrees() -> None:
    assert span_nodes(Span(8, 15)) == [NodeId(2, 2), NodeId(1, 6), NodeId(0, 14)]
    assert span_nodes(Span(4, 4)) == []
    with pytest.raises(TreeRangeError):
        span_nodes(Span(2, 6))


def test_out_of_range_requests_are_refused() -> None:
    with pytest.raises(TreeRangeError):
        inclusion_path(5, 5)
    with pytest.raises(TreeRangeError):
        inclusion_path(-1, 5)
    with pytest.raises(TreeRangeError):
        consistency_path(0, 5)
    with pytest.raises(TreeRangeError):
        consistency_path(6, 5)
    tree = MemoryTree(leaves_of(4))
    with pytest.raises(TreeRangeError):
        tree.root(5)
    assert consistency_path(4, 4) == []


def test_verifier_edge_cases() -> None:
    leaf = leaf_hash(b"only")
    verify_inclusion(leaf, 0, 1, [], leaf)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, 0, 0, [], leaf)
    with pytest.raises(ProofError):
        verify_inclusion(leaf[:31], 0, 1, [], leaf[:31])
    with pytest.raises(ProofError):
        verify_inclusion(leaf, 0, 2, [b"short"], leaf)
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(0, 3, [], EMPTY_ROOT, leaf)
    with pytest.raises(ProofError):
        verify_consistency(2, 1, [], leaf, leaf)
    with pytest.raises(ProofError):
        verify_consistency(1, 2, [], leaf, leaf)

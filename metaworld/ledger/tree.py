"""Sans-io Merkle tree math of RFC 9162 (SHA-256, 0x00 leaf and 0x01 node prefixes).

Theory of operation. Every hash a proof or a root needs is the hash of a *span* of leaves,
``MTH(D[start:end])``, and every span RFC 9162 ever asks for is aligned: its start is a
multiple of the smallest power of two not below its width. Such a span splits, by the binary
digits of its width, into perfect subtrees, each named by a `NodeId` (level, position)
covering leaves ``[position * 2**level, (position + 1) * 2**level)``. Perfect subtrees
never change once complete, so a store can keep them forever and answer any proof with
O(log n) look-ups.

The functions here only plan (which spans, which nodes) and combine (hashes in, hashes out);
whoever holds the nodes (a database, a list in memory) fetches them. `Frontier` is the
appender's state: the perfect subtrees of the current tree, enough for an O(log n) root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

HASH_SIZE = 32
# MTH({}) in RFC 9162: the hash of no input at all, without a prefix.
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class TreeRangeError(ValueError):
    """A caller asked about a leaf or a tree size that the tree cannot have."""


class NodeId(NamedTuple):
    """A perfect subtree: ``2**level`` leaves starting at leaf ``position * 2**level``."""

    level: int
    position: int  # counted from the left within its level


class Span(NamedTuple):
    """The leaves ``[start, end)``; its hash is ``MTH(D[start:end])``."""

    start: int
    end: int


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def split_point(width: int) -> int:
    """The largest power of two strictly below `width` (RFC 9162's k); `width` must be > 1."""
    return 1 << ((width - 1).bit_length() - 1)


def span_nodes(span: Span) -> list[NodeId]:
    """The perfect subtrees of an aligned span, left to right, largest first."""
    nodes = []
    position, width = span.start, span.end - span.start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            if position % (1 << level):
                raise TreeRangeError(f"span {span} is not aligned")
            nodes.append(NodeId(level, position >> level))
            position += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Combine subtree hashes, left to right, the way MTH nests them: right to left."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_path(index: int, size: int) -> list[Span]:
    """The spans of RFC 9162 ``PATH(index, D[0:size])``, nearest the leaf first."""
    if not 0 <= index < size:
        raise TreeRangeError(f"leaf {index} is not in a tree of size {size}")
    spans = []
    start, end = 0, size
    while end - start > 1:
        middle = start + split_point(end - start)
        if index < middle:
            spans.append(Span(middle, end))
            end = middle
        else:
            spans.append(Span(start, middle))
            start = middle
    spans.reverse()
    return spans


def consistency_path(old_size: int, new_size: int) -> list[Span]:
    """The spans of RFC 9162 ``PROOF(old_size, D[0:new_size])``, deepest first.

    Equal sizes need no proof. An empty old tree is consistent with everything, so there is
    nothing to prove and the request is refused.
    """
    if not 0 < old_size <= new_size:
        raise TreeRangeError(f"no consistency proof from size {old_size} to {new_size}")
    spans: list[Span] = []
    start, end = 0, new_size
    # Whether the old tree is still a left edge of the current span (RFC 9162's b flag):
    # then its hash is the verifier's own old root and need not be sent.
    on_left_edge = True
    while end != old_size:
        middle = start + split_point(end - start)
        if old_size <= middle:
            spans.append(Span(middle, end))
            end = middle
        else:
            spans.append(Span(start, middle))
            start = middle
            on_left_edge = False
    if not on_left_edge:
        spans.append(Span(start, end))
    spans.reverse()
    return spans


def nodes_for(spans: Iterable[Span]) -> set[NodeId]:
    """Every perfect subtree whose hash the given spans need."""
    return {node for span in spans for node in span_nodes(span)}


def hash_spans(spans: Iterable[Span], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """Turn planned spans into hashes, given at least `nodes_for(spans)`."""
    return [fold([nodes[node] for node in span_nodes(span)]) for span in spans]


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of a whole list of leaf hashes, in O(n) time and O(log n) memory."""
    frontier = Frontier()
    for leaf in leaf_hashes:
        frontier.push(leaf)
    return frontier.root()


class Frontier:
    """The perfect subtrees that make up the current tree, largest (leftmost) first.

    One hash per set bit of `size`, so appending and taking the root cost O(log n).
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise TreeRangeError(f"a tree of size {size} has {size.bit_count()} subtrees")
        self.size = size
        self.hashes = list(hashes)

    @staticmethod
    def node_ids(size: int) -> list[NodeId]:
        """Which perfect subtrees a frontier of `size` leaves holds."""
        return span_nodes(Span(0, size))

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def push(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        """Append one leaf hash; return the perfect subtrees (level >= 1) it completed."""
        completed = []
        current, node = leaf, NodeId(0, self.size)
        # Each trailing one bit of the old size is a subtree the new leaf now completes.
        while self.size >> node.level & 1:
            current = node_hash(self.hashes.pop(), current)
            node = NodeId(node.level + 1, node.position >> 1)
            completed.append((node, current))
        self.hashes.append(current)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold(self.hashes)


class MemoryTree:
    """Every perfect subtree of a tree, kept in memory: proofs of any size, for tests and
    for tools that already hold all leaf hashes. Uses about two hashes per leaf."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._frontier = Frontier()
        for leaf in leaf_hashes:
            self.append(leaf)

    def __len__(self) -> int:
        return self._frontier.size

    def append(self, leaf: bytes) -> int:
        index = self._frontier.size
        self._levels[0].append(leaf)
        for node, digest in self._frontier.push(leaf):
            if node.level == len(self._levels):
                self._levels.append([])
            self._levels[node.level].append(digest)
        return index

    def node(self, node: NodeId) -> bytes:
        return self._levels[node.level][node.position]

    def root(self, size: int | None = None) -> bytes:
        size = len(self) if size is None else size
        self._check_size(size)
        return fold([self.node(node) for node in Frontier.node_ids(size)])

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = len(self) if size is None else size
        self._check_size(size)
        return self._hash(inclusion_path(index, size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = len(self) if new_size is None else new_size
        self._check_size(new_size)
        return self._hash(consistency_path(old_size, new_size))

    def _hash(self, spans: list[Span]) -> list[bytes]:
        return [fold([self.node(node) for node in span_nodes(span)]) for span in spans]

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self):
            raise TreeRangeError(f"size {size} is beyond the tree's {len(self)} leaves")

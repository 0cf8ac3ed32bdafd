"""RFC 9162 §2.1 Merkle trees for the ledger: hashing, proofs, and appends that reread nothing.

Pure code: bytes in, bytes out, no ORM and no settings; every failure raises ProofError.
Leaves are numbered from 0. A complete subtree is named (level, index) and covers the leaves
[index * 2**level, (index + 1) * 2**level); level 0 is a single leaf. The database stores the
hashes of complete subtrees only, and every node of an RFC 9162 tree is a right fold of a few
of them, so a proof costs one query of O(log n) rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

SubtreeId: TypeAlias = tuple[int, int]
"""(level, index) of a complete subtree."""
LeafRange: TypeAlias = tuple[int, int]
"""[start, end) leaf range of one node of an RFC 9162 tree."""
Frontier: TypeAlias = list[tuple[int, bytes]]
"""(level, hash) of the complete subtrees covering a tree, left to right, largest first."""
NewNode: TypeAlias = tuple[int, int, bytes]
"""(level, index, hash) of a complete subtree that an append finished."""
SubtreeLookup: TypeAlias = Callable[[list[SubtreeId]], Mapping[SubtreeId, bytes]]
"""Fetches the stored hashes of the given complete subtrees, in one round trip."""


class ProofError(ValueError):
    """The one exception of this module: bad input, a malformed proof or a root that differs."""


def leaf_hash(data: bytes) -> bytes:
    """Return SHA-256(0x00 || data), the RFC 9162 hash of one leaf's bytes."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right), the RFC 9162 hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 tree head of already-hashed leaves; SHA-256 of nothing if empty."""
    for position, hash_value in enumerate(leaf_hashes):
        _require_hash(hash_value, f"leaf hash {position}")
    if not leaf_hashes:
        return EMPTY_ROOT
    # Pairing neighbours level by level and lifting an odd last node unchanged builds the same
    # left-balanced tree as the recursive definition, without recursion.
    level_hashes = list(leaf_hashes)
    while len(level_hashes) > 1:
        parents = [
            node_hash(level_hashes[position], level_hashes[position + 1])
            for position in range(0, len(level_hashes) - 1, 2)
        ]
        if len(level_hashes) % 2:
            parents.append(level_hashes[-1])
        level_hashes = parents
    return level_hashes[0]


def root_from_inclusion(leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """Return the root that an inclusion proof implies (RFC 9162 §2.1.3.2), or raise ProofError."""
    _require_leaf_index(leaf_index, tree_size)
    _require_hash(leaf_hash, "leaf hash")
    for position, sibling in enumerate(proof):
        _require_hash(sibling, f"proof element {position}")

    node_index = leaf_index
    last_node_index = tree_size - 1
    computed = leaf_hash
    for sibling in proof:
        if last_node_index == 0:
            raise ProofError("inclusion proof is longer than the path from the leaf to the root")
        if node_index & 1 or node_index == last_node_index:
            computed = node_hash(sibling, computed)
            # On the right border a node can have no right sibling: climb past those levels.
            while node_index and not node_index & 1:
                node_index >>= 1
                last_node_index >>= 1
        else:
            computed = node_hash(computed, sibling)
        node_index >>= 1
        last_node_index >>= 1
    if last_node_index != 0:
        raise ProofError("inclusion proof is shorter than the path from the leaf to the root")
    return computed


def verify_inclusion(
    leaf_hash: bytes,
    leaf_index: int,
    tree_size: int,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Raise ProofError unless the proof puts leaf_hash at leaf_index in the tree with this root."""
    _require_hash(root, "root")
    if root_from_inclusion(leaf_hash, leaf_index, tree_size, proof) != root:
        raise ProofError("inclusion proof leads to a different root")


def verify_consistency(
    first_size: int,
    second_size: int,
    proof: Sequence[bytes],
    first_root: bytes,
    second_root: bytes,
) -> None:
    """Raise ProofError unless the first tree is a prefix of the second (RFC 9162 §2.1.4.2).

    A tree of size 0 must have the root SHA-256(b"") and needs an empty proof. Equal sizes need
    an empty proof and identical roots.
    """
    _require_size(first_size, "first size")
    _require_size(second_size, "second size")
    if first_size > second_size:
        raise ProofError(f"first size {first_size} is larger than second size {second_size}")
    if first_size == 0:
        # Every tree extends the empty tree; only the roots can still be wrong.
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        if first_root != EMPTY_ROOT:
            raise ProofError("the root of the empty tree must be SHA-256 of no bytes")
        _require_hash(second_root, "second root")
        if second_size == 0 and second_root != EMPTY_ROOT:
            raise ProofError("the root of the empty tree must be SHA-256 of no bytes")
        return
    if first_size == second_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("equal tree sizes with different roots")
        return

    _require_hash(first_root, "first root")
    _require_hash(second_root, "second root")
    for position, element in enumerate(proof):
        _require_hash(element, f"proof element {position}")
    if not proof:
        raise ProofError("a consistency proof between different sizes cannot be empty")

    path = list(proof)
    if first_size & (first_size - 1) == 0:
        # The first tree is then a complete subtree of the second, and its root starts the path.
        path.insert(0, first_root)
    node_index = first_size - 1
    last_node_index = second_size - 1
    while node_index & 1:
        node_index >>= 1
        last_node_index >>= 1

    first_computed = second_computed = path[0]
    for element in path[1:]:
        if last_node_index == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if node_index & 1 or node_index == last_node_index:
            first_computed = node_hash(element, first_computed)
            second_computed = node_hash(element, second_computed)
            while node_index and not node_index & 1:
                node_index >>= 1
                last_node_index >>= 1
        else:
            second_computed = node_hash(second_computed, element)
        node_index >>= 1
        last_node_index >>= 1
    if last_node_index != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if first_computed != first_root:
        raise ProofError("consistency proof leads to a different first root")
    if second_computed != second_root:
        raise ProofError("consistency proof leads to a different second root")


def complete_subtrees(start: int, end: int) -> list[SubtreeId]:
    """Split the RFC 9162 tree node covering leaves [start, end) into complete subtrees, left first.

    The node's width is end - start, and start must be a multiple of the smallest power of two
    that is at least that width, as it is for every node of an RFC 9162 tree.
    """
    if start < 0 or end <= start:
        raise ProofError(f"leaf range [{start}, {end}) is empty or negative")
    width = end - start
    if start % (1 << (width - 1).bit_length()):
        raise ProofError(f"leaf range [{start}, {end}) is not a node of an RFC 9162 tree")
    subtrees: list[SubtreeId] = []
    position = start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            subtrees.append((level, position >> level))
            position += 1 << level
    return subtrees


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """Return the hash of a node from its complete-subtree hashes: h0 ⊕ (h1 ⊕ (… ⊕ hk))."""
    if not hashes:
        raise ProofError("cannot fold an empty list of subtree hashes")
    folded = hashes[-1]
    for position in range(len(hashes) - 2, -1, -1):
        folded = node_hash(hashes[position], folded)
    return folded


def inclusion_proof_ranges(leaf_index: int, tree_size: int) -> list[LeafRange]:
    """Return the leaf ranges whose hashes form the inclusion proof (RFC 9162 §2.1.3.1), in order."""
    _require_leaf_index(leaf_index, tree_size)
    ranges: list[LeafRange] = []
    start, end = 0, tree_size
    while end - start > 1:
        split = start + _largest_power_of_two_below(end - start)
        if leaf_index < split:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            start = split
    # The walk went from the root down; the proof lists siblings from the leaf up.
    ranges.reverse()
    return ranges


def consistency_proof_ranges(first_size: int, second_size: int) -> list[LeafRange]:
    """Return the leaf ranges whose hashes form the consistency proof (RFC 9162 §2.1.4.1)."""
    _require_size(first_size, "first size")
    _require_size(second_size, "second size")
    if first_size > second_size:
        raise ProofError(f"first size {first_size} is larger than second size {second_size}")
    if first_size == 0 or first_size == second_size:
        return []
    ranges: list[LeafRange] = []
    start, end = 0, second_size
    # RFC 9162's flag b: the verifier already knows the first root only while the walk stays on
    # the left edge of the tree.
    on_left_edge = True
    while first_size != end:
        split = start + _largest_power_of_two_below(end - start)
        if first_size <= split:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            start = split
            on_left_edge = False
    if not on_left_edge:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def build_proof(ranges: Sequence[LeafRange], lookup: SubtreeLookup) -> list[bytes]:
    """Return the hash of each leaf range, fetching all needed subtrees with at most one lookup.

    lookup receives each needed (level, index) once and must return a hash for every one of
    them; it is not called when no subtree is needed.
    """
    decompositions = [complete_subtrees(start, end) for start, end in ranges]
    needed = list(dict.fromkeys(subtree for parts in decompositions for subtree in parts))
    found = lookup(needed) if needed else {}
    for subtree in needed:
        if subtree not in found:
            raise ProofError(f"no stored hash for subtree (level, index) = {subtree}")
        _require_hash(found[subtree], f"stored hash of subtree {subtree}")
    return [fold_subtrees([found[subtree] for subtree in parts]) for parts in decompositions]


def _require_frontier_of(frontier: Sequence[tuple[int, bytes]], size: int) -> None:
    """The frontier of a tree of `size` leaves has one subtree per set bit of size, highest first."""
    levels = _frontier_levels(frontier)
    expected_levels = [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]
    if levels != expected_levels:
        raise ProofError(f"frontier levels {levels} do not describe a tree of {size} leaves")


def frontier_append(
    frontier: Sequence[tuple[int, bytes]], leaf_hash: bytes, leaf_index: int
) -> tuple[Frontier, list[NewNode]]:
    """Append leaf leaf_index to a tree of leaf_index leaves; return its frontier and new nodes.

    The new nodes are the complete subtrees of level >= 1 that this leaf finished, lowest level
    first. The given frontier is not modified.
    """
    _require_hash(leaf_hash, "leaf hash")
    _require_size(leaf_index, "leaf index")
    _require_frontier_of(frontier, leaf_index)

    new_frontier = list(frontier)
    new_nodes: list[NewNode] = []
    level, carried = 0, leaf_hash
    while new_frontier and new_frontier[-1][0] == level:
        _, left = new_frontier.pop()
        carried = node_hash(left, carried)
        level += 1
        # This leaf is the last one of the subtree it just finished.
        new_nodes.append((level, leaf_index >> level, carried))
    new_frontier.append((level, carried))
    return new_frontier, new_nodes


def frontier_extend(
    frontier: Sequence[tuple[int, bytes]], leaf_hashes: Sequence[bytes], first_index: int
) -> tuple[Frontier, list[NewNode]]:
    """`frontier_append` of each leaf in turn, from leaf first_index on: the frontier after the
    last one, and every node they completed (per leaf lowest level first, in leaf order).

    The frontier is checked once, not per leaf, so a large batch costs little more than its hashes.
    """
    _require_size(first_index, "leaf index")
    _require_frontier_of(frontier, first_index)
    stack = list(frontier)
    new_nodes: list[NewNode] = []
    sha256 = hashlib.sha256
    for leaf_index, leaf in enumerate(leaf_hashes, first_index):
        _require_hash(leaf, "leaf hash")
        level, carried = 0, leaf
        while stack and stack[-1][0] == level:
            carried = sha256(_NODE_PREFIX + stack.pop()[1] + carried).digest()
            level += 1
            new_nodes.append((level, leaf_index >> level, carried))
        stack.append((level, carried))
    return stack, new_nodes


def frontier_root(frontier: Sequence[tuple[int, bytes]]) -> bytes:
    """Return the RFC 9162 root of the tree a frontier covers; SHA-256 of nothing if empty."""
    _frontier_levels(frontier)
    if not frontier:
        return EMPTY_ROOT
    return fold_subtrees([hash_value for _, hash_value in frontier])


def _frontier_levels(frontier: Sequence[tuple[int, bytes]]) -> list[int]:
    levels = [level for level, _ in frontier]
    for position, (level, hash_value) in enumerate(frontier):
        _require_hash(hash_value, f"frontier hash {position}")
        if level < 0 or (position and level >= levels[position - 1]):
            raise ProofError(f"frontier levels {levels} are not strictly decreasing")
    return levels


def _largest_power_of_two_below(size: int) -> int:
    return 1 << ((size - 1).bit_length() - 1)


def _require_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes):
        raise ProofError(f"{what} is a {type(value).__name__}, not bytes")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _require_size(value: int, what: str) -> None:
    if value < 0:
        raise ProofError(f"{what} {value} is negative")


def _require_leaf_index(leaf_index: int, tree_size: int) -> None:
    if leaf_index < 0 or leaf_index >= tree_size:
        raise ProofError(f"leaf index {leaf_index} is outside a tree of {tree_size} leaves")

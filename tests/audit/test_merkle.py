"""Tests of audit.merkle against third-party vectors and a naive recursive RFC 9162 tree."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from audit import merkle
from audit.merkle import ProofError
from tests.conftest import DATA_DIR

VECTOR_DIR = DATA_DIR / "merkle"
MAX_TREE_SIZE = 70
TAMPER_TREE_SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 70]


# --- A deliberately naive reference, written straight from the RFC 9162 §2.1 definitions. ---


def _reference_split(size: int) -> int:
    power = 1
    while power * 2 < size:
        power *= 2
    return power


def _reference_mth(leaf_hashes: Sequence[bytes]) -> bytes:
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    split = _reference_split(len(leaf_hashes))
    left = _reference_mth(leaf_hashes[:split])
    right = _reference_mth(leaf_hashes[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def _reference_path(leaf_index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    if len(leaf_hashes) <= 1:
        return []
    split = _reference_split(len(leaf_hashes))
    if leaf_index < split:
        return _reference_path(leaf_index, leaf_hashes[:split]) + [_reference_mth(leaf_hashes[split:])]
    return _reference_path(leaf_index - split, leaf_hashes[split:]) + [_reference_mth(leaf_hashes[:split])]


def _reference_subproof(first_size: int, leaf_hashes: Sequence[bytes], first_root_known: bool) -> list[bytes]:
    if first_size == len(leaf_hashes):
        return [] if first_root_known else [_reference_mth(leaf_hashes)]
    split = _reference_split(len(leaf_hashes))
    if first_size <= split:
        return _reference_subproof(first_size, leaf_hashes[:split], first_root_known) + [
            _reference_mth(leaf_hashes[split:])
        ]
    return _reference_subproof(first_size - split, leaf_hashes[split:], False) + [_reference_mth(leaf_hashes[:split])]


LEAF_HASHES = [
    hashlib.sha256(b"\x00" + f"ledger entry {leaf_index}".encode()).digest() for leaf_index in range(MAX_TREE_SIZE)
]
REFERENCE_ROOTS = [_reference_mth(LEAF_HASHES[:tree_size]) for tree_size in range(MAX_TREE_SIZE + 1)]
# Every complete subtree of the largest tree, as the database would store it.
ALL_SUBTREES: dict[tuple[int, int], bytes] = {
    (level, index): _reference_mth(LEAF_HASHES[index << level : (index + 1) << level])
    for level in range(MAX_TREE_SIZE.bit_length())
    for index in range(MAX_TREE_SIZE >> level)
}


class RecordingLookup:
    """A stand-in for the database: serves ALL_SUBTREES and records every call."""

    def __init__(self, tree_size: int) -> None:
        self.tree_size = tree_size
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, subtrees: list[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        self.calls.append(list(subtrees))
        for level, index in subtrees:
            assert (index + 1) << level <= self.tree_size, "asked for a node outside the tree"
        return {subtree: ALL_SUBTREES[subtree] for subtree in subtrees}


def _inclusion_proof(leaf_index: int, tree_size: int) -> list[bytes]:
    ranges = merkle.inclusion_proof_ranges(leaf_index, tree_size)
    return merkle.build_proof(ranges, RecordingLookup(tree_size))


def _consistency_proof(first_size: int, second_size: int) -> list[bytes]:
    ranges = merkle.consistency_proof_ranges(first_size, second_size)
    return merkle.build_proof(ranges, RecordingLookup(second_size))


def _flip_bit(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


# --- Conformance vectors from transparency-dev/merkle. ---


def _vector_files(kind: str) -> list[Path]:
    files = sorted((VECTOR_DIR / kind).glob("*/*.json"))
    # A missing folder must fail the run, not turn into an empty, skipped parametrization.
    return files or [VECTOR_DIR / kind / "NO-VECTORS-FOUND.json"]


def _vector_id(path: Path) -> str:
    return str(path.relative_to(VECTOR_DIR))


def _load_vector(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"conformance vectors are missing: {path}"
    vector: dict[str, Any] = json.loads(path.read_text())
    return vector


def _decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def test_conformance_vectors_cover_valid_and_invalid_proofs() -> None:
    for kind in ("inclusion", "consistency"):
        outcomes = {_load_vector(path)["wantErr"] for path in _vector_files(kind)}
        assert outcomes == {True, False}, kind


@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=_vector_id)
def test_inclusion_vector(path: Path) -> None:
    vector = _load_vector(path)
    arguments = (
        _decode(vector["leafHash"]),
        vector["leafIdx"],
        vector["treeSize"],
        [_decode(element) for element in vector["proof"] or []],
        _decode(vector["root"]),
    )
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*arguments)
    else:
        merkle.verify_inclusion(*arguments)


@pytest.mark.parametrize("path", _vector_files("consistency"), ids=_vector_id)
def test_consistency_vector(path: Path) -> None:
    vector = _load_vector(path)
    arguments = (
        vector["size1"],
        vector["size2"],
        [_decode(element) for element in vector["proof"] or []],
        _decode(vector["root1"]),
        _decode(vector["root2"]),
    )
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*arguments)
    else:
        merkle.verify_consistency(*arguments)


# --- Hashing. ---


def test_leaf_and_node_hashes_use_rfc_9162_domain_prefixes() -> None:
    # Known value: the RFC 6962/9162 hash of the empty leaf.
    assert merkle.leaf_hash(b"").hex() == ("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    left, right = LEAF_HASHES[0], LEAF_HASHES[1]
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert merkle.node_hash(left, right) != merkle.node_hash(right, left)


def test_empty_tree_root_is_sha256_of_no_bytes() -> None:
    assert merkle.root_hash([]).hex() == ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert merkle.frontier_root([]) == merkle.EMPTY_ROOT == merkle.root_hash([])


@pytest.mark.parametrize("tree_size", range(MAX_TREE_SIZE + 1))
def test_root_hash_matches_recursive_definition(tree_size: int) -> None:
    assert merkle.root_hash(LEAF_HASHES[:tree_size]) == REFERENCE_ROOTS[tree_size]


def test_root_hash_rejects_a_leaf_hash_of_the_wrong_length() -> None:
    with pytest.raises(ProofError):
        merkle.root_hash([LEAF_HASHES[0], b"short"])


# --- Complete subtrees and folding. ---


def test_complete_subtrees_follow_the_binary_digits_of_the_width() -> None:
    assert merkle.complete_subtrees(0, 1) == [(0, 0)]
    assert merkle.complete_subtrees(0, 8) == [(3, 0)]
    assert merkle.complete_subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.complete_subtrees(64, 70) == [(2, 16), (1, 34)]
    assert merkle.complete_subtrees(8, 11) == [(1, 4), (0, 10)]


@pytest.mark.parametrize("leaf_range", [(1, 3), (2, 5), (4, 9), (3, 3), (5, 4), (-1, 0)])
def test_complete_subtrees_rejects_ranges_that_are_no_tree_node(
    leaf_range: tuple[int, int],
) -> None:
    with pytest.raises(ProofError):
        merkle.complete_subtrees(*leaf_range)


@pytest.mark.parametrize("tree_size", range(1, MAX_TREE_SIZE + 1))
def test_folded_complete_subtrees_give_the_root(tree_size: int) -> None:
    parts = merkle.complete_subtrees(0, tree_size)
    folded = merkle.fold_subtrees([ALL_SUBTREES[subtree] for subtree in parts])
    assert folded == REFERENCE_ROOTS[tree_size]


def test_fold_subtrees_rejects_an_empty_list() -> None:
    with pytest.raises(ProofError):
        merkle.fold_subtrees([])


# --- Proofs built from stored subtrees. ---


@pytest.mark.parametrize("tree_size", range(1, MAX_TREE_SIZE + 1))
def test_inclusion_proofs_from_stored_subtrees_match_rfc_and_verify(
    tree_size: int,
) -> None:
    tree_leaves = LEAF_HASHES[:tree_size]
    root = REFERENCE_ROOTS[tree_size]
    for leaf_index in range(tree_size):
        lookup = RecordingLookup(tree_size)
        proof = merkle.build_proof(merkle.inclusion_proof_ranges(leaf_index, tree_size), lookup)
        assert proof == _reference_path(leaf_index, tree_leaves)
        assert len(lookup.calls) == (1 if proof else 0)
        merkle.verify_inclusion(LEAF_HASHES[leaf_index], leaf_index, tree_size, proof, root)
        assert merkle.root_from_inclusion(LEAF_HASHES[leaf_index], leaf_index, tree_size, proof) == root


@pytest.mark.parametrize("second_size", range(1, MAX_TREE_SIZE + 1))
def test_consistency_proofs_from_stored_subtrees_match_rfc_and_verify(
    second_size: int,
) -> None:
    second_leaves = LEAF_HASHES[:second_size]
    second_root = REFERENCE_ROOTS[second_size]
    for first_size in range(0, second_size + 1):
        lookup = RecordingLookup(second_size)
        proof = merkle.build_proof(merkle.consistency_proof_ranges(first_size, second_size), lookup)
        expected = [] if first_size in (0, second_size) else _reference_subproof(first_size, second_leaves, True)
        assert proof == expected
        assert len(lookup.calls) == (1 if proof else 0)
        merkle.verify_consistency(first_size, second_size, proof, REFERENCE_ROOTS[first_size], second_root)


def test_build_proof_asks_for_each_subtree_once_in_a_single_lookup() -> None:
    lookup = RecordingLookup(MAX_TREE_SIZE)
    hashes = merkle.build_proof([(0, 7), (4, 7), (6, 7), (8, 12)], lookup)
    assert lookup.calls == [[(2, 0), (1, 2), (0, 6), (2, 2)]]
    assert hashes == [
        REFERENCE_ROOTS[7],
        _reference_mth(LEAF_HASHES[4:7]),
        LEAF_HASHES[6],
        _reference_mth(LEAF_HASHES[8:12]),
    ]


def test_build_proof_fails_when_the_store_lacks_a_subtree() -> None:
    def incomplete_lookup(
        subtrees: list[tuple[int, int]],
    ) -> Mapping[tuple[int, int], bytes]:
        return {subtree: ALL_SUBTREES[subtree] for subtree in subtrees[1:]}

    with pytest.raises(ProofError, match="no stored hash"):
        merkle.build_proof(merkle.inclusion_proof_ranges(3, 70), incomplete_lookup)


def test_build_proof_fails_when_the_store_returns_a_malformed_hash() -> None:
    def corrupt_lookup(
        subtrees: list[tuple[int, int]],
    ) -> Mapping[tuple[int, int], bytes]:
        return {subtree: b"\x00" * 31 for subtree in subtrees}

    with pytest.raises(ProofError):
        merkle.build_proof([(0, 4)], corrupt_lookup)


def test_ranges_reject_impossible_sizes() -> None:
    for leaf_index, tree_size in [(0, 0), (5, 5), (-1, 3)]:
        with pytest.raises(ProofError):
            merkle.inclusion_proof_ranges(leaf_index, tree_size)
    for first_size, second_size in [(5, 4), (-1, 3)]:
        with pytest.raises(ProofError):
            merkle.consistency_proof_ranges(first_size, second_size)


# --- Frontier appends. ---


def test_frontier_appends_give_the_rfc_root_and_every_complete_subtree_once() -> None:
    frontier: list[tuple[int, bytes]] = []
    stored: dict[tuple[int, int], bytes] = {}
    for leaf_index, leaf in enumerate(LEAF_HASHES):
        frontier, new_nodes = merkle.frontier_append(frontier, leaf, leaf_index)
        tree_size = leaf_index + 1
        assert merkle.frontier_root(frontier) == REFERENCE_ROOTS[tree_size]
        assert frontier == [
            (level, ALL_SUBTREES[(level, index)]) for level, index in merkle.complete_subtrees(0, tree_size)
        ]
        for level, index, node in new_nodes:
            assert level >= 1
            assert (index + 1) << level == tree_size, "only subtrees ending at this leaf finish"
            assert (level, index) not in stored
            stored[(level, index)] = node
    brute_force = {subtree: node for subtree, node in ALL_SUBTREES.items() if subtree[0] >= 1}
    assert stored == brute_force


def test_frontier_extend_is_frontier_append_leaf_by_leaf_from_any_start() -> None:
    for first in range(len(LEAF_HASHES) + 1):
        start: list[tuple[int, bytes]] = []
        for leaf_index in range(first):
            start, _ = merkle.frontier_append(start, LEAF_HASHES[leaf_index], leaf_index)
        expected_frontier, expected_nodes = list(start), []
        for leaf_index in range(first, len(LEAF_HASHES)):
            expected_frontier, new_nodes = merkle.frontier_append(expected_frontier, LEAF_HASHES[leaf_index], leaf_index)
            expected_nodes.extend(new_nodes)
        given = list(start)
        frontier, nodes = merkle.frontier_extend(given, LEAF_HASHES[first:], first)
        assert (frontier, nodes) == (expected_frontier, expected_nodes)
        assert merkle.frontier_root(frontier) == REFERENCE_ROOTS[len(LEAF_HASHES)]
        assert given == start  # the input is not modified
    with pytest.raises(ProofError):
        merkle.frontier_extend([], LEAF_HASHES[:1], 1)  # a frontier of 0 leaves does not start at leaf 1
    with pytest.raises(ProofError):
        merkle.frontier_extend([], [b"short"], 0)


def test_frontier_append_does_not_modify_its_input() -> None:
    frontier, _ = merkle.frontier_append([], LEAF_HASHES[0], 0)
    snapshot = list(frontier)
    merkle.frontier_append(frontier, LEAF_HASHES[1], 1)
    assert frontier == snapshot


def test_frontier_append_reports_new_nodes_lowest_level_first() -> None:
    frontier: list[tuple[int, bytes]] = []
    for leaf_index in range(7):
        frontier, _ = merkle.frontier_append(frontier, LEAF_HASHES[leaf_index], leaf_index)
    _, new_nodes = merkle.frontier_append(frontier, LEAF_HASHES[7], 7)
    assert [(level, index) for level, index, _ in new_nodes] == [(1, 3), (2, 1), (3, 0)]


def test_frontier_append_rejects_a_leaf_index_that_does_not_follow_the_tree() -> None:
    frontier, _ = merkle.frontier_append([], LEAF_HASHES[0], 0)
    for wrong_index in (0, 2, 3):
        with pytest.raises(ProofError):
            merkle.frontier_append(frontier, LEAF_HASHES[1], wrong_index)


def test_frontier_append_rejects_malformed_frontiers_and_leaves() -> None:
    node = LEAF_HASHES[0]
    with pytest.raises(ProofError):
        merkle.frontier_append([(0, node), (1, node)], node, 3)
    with pytest.raises(ProofError):
        merkle.frontier_append([(1, b"short")], node, 2)
    with pytest.raises(ProofError):
        merkle.frontier_append([], b"short", 0)
    with pytest.raises(ProofError):
        merkle.frontier_root([(0, node), (0, node)])


# --- Tampered inclusion proofs. ---


def _inclusion_cases() -> list[tuple[int, int]]:
    return [(leaf_index, tree_size) for tree_size in TAMPER_TREE_SIZES for leaf_index in range(tree_size)]


@pytest.mark.parametrize(("leaf_index", "tree_size"), _inclusion_cases())
def test_inclusion_proof_with_a_flipped_bit_is_rejected(leaf_index: int, tree_size: int) -> None:
    proof = _inclusion_proof(leaf_index, tree_size)
    root = REFERENCE_ROOTS[tree_size]
    for position in range(len(proof)):
        for bit in (0, 100, 255):
            tampered = list(proof)
            tampered[position] = _flip_bit(proof[position], bit)
            with pytest.raises(ProofError):
                merkle.verify_inclusion(LEAF_HASHES[leaf_index], leaf_index, tree_size, tampered, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(_flip_bit(LEAF_HASHES[leaf_index], 7), leaf_index, tree_size, proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(LEAF_HASHES[leaf_index], leaf_index, tree_size, proof, _flip_bit(root, 7))


@pytest.mark.parametrize(("leaf_index", "tree_size"), _inclusion_cases())
def test_inclusion_proof_with_an_extra_or_missing_element_is_rejected(leaf_index: int, tree_size: int) -> None:
    proof = _inclusion_proof(leaf_index, tree_size)
    root = REFERENCE_ROOTS[tree_size]
    leaf = LEAF_HASHES[leaf_index]
    for extra in (root, leaf, b"\x00" * 32):
        for tampered in ([*proof, extra], [extra, *proof]):
            with pytest.raises(ProofError, match="longer than the path"):
                merkle.verify_inclusion(leaf, leaf_index, tree_size, tampered, root)
    for dropped in range(len(proof)):
        tampered = proof[:dropped] + proof[dropped + 1 :]
        with pytest.raises(ProofError, match="shorter than the path"):
            merkle.verify_inclusion(leaf, leaf_index, tree_size, tampered, root)


@pytest.mark.parametrize(("leaf_index", "tree_size"), _inclusion_cases())
def test_inclusion_proof_for_another_index_is_rejected(leaf_index: int, tree_size: int) -> None:
    proof = _inclusion_proof(leaf_index, tree_size)
    root = REFERENCE_ROOTS[tree_size]
    for wrong_index in range(tree_size + 2):
        if wrong_index == leaf_index:
            continue
        with pytest.raises(ProofError):
            merkle.verify_inclusion(LEAF_HASHES[leaf_index], wrong_index, tree_size, proof, root)


def test_inclusion_rejects_bad_sizes_and_hash_lengths() -> None:
    proof = _inclusion_proof(2, 5)
    leaf, root = LEAF_HASHES[2], REFERENCE_ROOTS[5]
    merkle.verify_inclusion(leaf, 2, 5, proof, root)
    bad_calls: list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]] = [
        ("leaf index 5 is outside", (leaf, 5, 5, proof, root)),
        ("leaf index -1 is outside", (leaf, -1, 5, proof, root)),
        ("leaf index 0 is outside", (leaf, 0, 0, [], merkle.EMPTY_ROOT)),
        ("leaf hash is 31 bytes", (leaf[:31], 2, 5, proof, root)),
        ("proof element 0 is 33 bytes", (leaf, 2, 5, [proof[0] + b"\x00", *proof[1:]], root)),
        ("proof element 1 is a str", (leaf, 2, 5, [proof[0], "x" * 32, *proof[2:]], root)),  # type: ignore[list-item]
        ("root is 33 bytes", (leaf, 2, 5, proof, root + b"\x00")),
    ]
    for message, arguments in bad_calls:
        with pytest.raises(ProofError, match=message):
            merkle.verify_inclusion(*arguments)


def test_consistency_rejects_hashes_of_the_wrong_length() -> None:
    proof = _consistency_proof(3, 7)
    root_3, root_7 = REFERENCE_ROOTS[3], REFERENCE_ROOTS[7]
    merkle.verify_consistency(3, 7, proof, root_3, root_7)
    with pytest.raises(ProofError, match="proof element 1 is 31 bytes"):
        merkle.verify_consistency(3, 7, [proof[0], proof[1][:31], *proof[2:]], root_3, root_7)
    with pytest.raises(ProofError, match="first root is 33 bytes"):
        merkle.verify_consistency(3, 7, proof, root_3 + b"\x00", root_7)
    with pytest.raises(ProofError, match="second root is 31 bytes"):
        merkle.verify_consistency(0, 7, [], merkle.EMPTY_ROOT, root_7[:31])


def test_single_leaf_tree_needs_an_empty_proof() -> None:
    merkle.verify_inclusion(LEAF_HASHES[0], 0, 1, [], LEAF_HASHES[0])
    with pytest.raises(ProofError):
        merkle.verify_inclusion(LEAF_HASHES[0], 0, 1, [LEAF_HASHES[1]], LEAF_HASHES[0])


# --- Tampered consistency proofs. ---


def _consistency_cases() -> list[tuple[int, int]]:
    return [(first_size, second_size) for second_size in TAMPER_TREE_SIZES for first_size in range(1, second_size)]


@pytest.mark.parametrize(("first_size", "second_size"), _consistency_cases())
def test_consistency_proof_with_a_flipped_bit_or_wrong_root_is_rejected(first_size: int, second_size: int) -> None:
    proof = _consistency_proof(first_size, second_size)
    first_root, second_root = REFERENCE_ROOTS[first_size], REFERENCE_ROOTS[second_size]
    for position in range(len(proof)):
        for bit in (0, 100, 255):
            tampered = list(proof)
            tampered[position] = _flip_bit(proof[position], bit)
            with pytest.raises(ProofError):
                merkle.verify_consistency(first_size, second_size, tampered, first_root, second_root)
    for wrong_first, wrong_second in [
        (_flip_bit(first_root, 7), second_root),
        (first_root, _flip_bit(second_root, 7)),
        (second_root, first_root),
    ]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(first_size, second_size, proof, wrong_first, wrong_second)


@pytest.mark.parametrize(("first_size", "second_size"), _consistency_cases())
def test_consistency_proof_with_an_extra_or_missing_element_is_rejected(first_size: int, second_size: int) -> None:
    proof = _consistency_proof(first_size, second_size)
    first_root, second_root = REFERENCE_ROOTS[first_size], REFERENCE_ROOTS[second_size]
    for extra in (first_root, second_root, b"\x00" * 32):
        for tampered in ([*proof, extra], [extra, *proof]):
            with pytest.raises(ProofError, match="longer than the path"):
                merkle.verify_consistency(first_size, second_size, tampered, first_root, second_root)
    for dropped in range(len(proof)):
        tampered = proof[:dropped] + proof[dropped + 1 :]
        with pytest.raises(ProofError, match="shorter than the path|cannot be empty"):
            merkle.verify_consistency(first_size, second_size, tampered, first_root, second_root)


@pytest.mark.parametrize(("first_size", "second_size"), _consistency_cases())
def test_consistency_proof_for_another_first_size_is_rejected(first_size: int, second_size: int) -> None:
    proof = _consistency_proof(first_size, second_size)
    first_root, second_root = REFERENCE_ROOTS[first_size], REFERENCE_ROOTS[second_size]
    for wrong_first in range(1, second_size + 1):
        if wrong_first != first_size:
            with pytest.raises(ProofError):
                merkle.verify_consistency(wrong_first, second_size, proof, first_root, second_root)


def test_consistency_edge_sizes() -> None:
    root_3, root_5 = REFERENCE_ROOTS[3], REFERENCE_ROOTS[5]
    merkle.verify_consistency(0, 5, [], merkle.EMPTY_ROOT, root_5)
    merkle.verify_consistency(0, 0, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
    merkle.verify_consistency(5, 5, [], root_5, root_5)
    rejected: list[tuple[str, tuple[int, int, list[bytes], bytes, bytes]]] = [
        ("from the empty tree must be empty", (0, 5, [root_3], merkle.EMPTY_ROOT, root_5)),
        ("root of the empty tree", (0, 5, [], root_3, root_5)),
        ("root of the empty tree", (0, 0, [], merkle.EMPTY_ROOT, root_5)),
        ("between equal sizes must be empty", (5, 5, [root_5], root_5, root_5)),
        ("equal tree sizes with different roots", (5, 5, [], root_5, root_3)),
        ("first size 5 is larger than second size 3", (5, 3, [root_3], root_5, root_3)),
        ("cannot be empty", (3, 5, [], root_3, root_5)),
        ("first size -1 is negative", (-1, 5, [], root_3, root_5)),
    ]
    for message, arguments in rejected:
        with pytest.raises(ProofError, match=message):
            merkle.verify_consistency(*arguments)

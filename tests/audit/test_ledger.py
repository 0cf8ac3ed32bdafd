"""The append path: chain links, seq, batch atomicity, Merkle storage, checkpoints and proofs."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC

import pytest
from django.db import transaction

from audit import merkle, note
from audit.keys import verifiers
from audit.ledger import (
    ZERO_HASH,
    checkpoint_create,
    consistency_proof,
    draft,
    inclusion_proof,
    ledger_append,
    ledger_append_many,
    root_at,
)
from audit.models import Checkpoint, LedgerEntry, LedgerHead, node_key
from audit.verify import verify_ledger
from core.errors import InvalidInput

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_ledger")]


def _append(count: int, *, prefix: str = "item") -> list[LedgerEntry]:
    return [ledger_append(actor="system:test", action="test.appended", subject=("test.item", f"{prefix}{index}"),
                          payload={"index": index}) for index in range(count)]


def test_genesis_links_to_zero_hash_and_entries_chain():
    entries = _append(5)
    assert [entry.seq for entry in entries] == [0, 1, 2, 3, 4]
    assert bytes(entries[0].prev_hash) == ZERO_HASH
    for previous, entry in zip(entries, entries[1:], strict=False):
        assert bytes(entry.prev_hash) == bytes(previous.entry_hash)
    for entry in LedgerEntry.objects.all():
        canonical = bytes(entry.canonical)
        assert hashlib.sha256(canonical).digest() == bytes(entry.entry_hash)
        assert merkle.leaf_hash(canonical) == bytes(entry.leaf_hash)


def test_canonical_bytes_are_jcs_of_every_field_but_entry_hash():
    entry = ledger_append(actor="system:test", action="x.y", subject=("t", "1"), payload={"b": 2, "a": "é"})
    document = json.loads(bytes(entry.canonical))
    assert set(document) == {"seq", "recorded_at", "actor", "action", "subject", "payload", "prev_hash",
                             "subject_prev"}
    assert document["subject"] == {"type": "t", "id": "1"}
    assert document["prev_hash"] == "00" * 32
    assert bytes(entry.canonical) == json.dumps(document, sort_keys=True, separators=(",", ":"),
                                                ensure_ascii=False).encode()
    assert document["recorded_at"].endswith("Z")


def test_append_joins_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        ledger_append(actor="system:test", action="t", subject=("t", "1"))
        raise RuntimeError("caller fails after appending")
    assert LedgerEntry.objects.count() == 0
    assert LedgerHead.objects.get(pk=1).tree_size == 0
    entry = ledger_append(actor="system:test", action="t", subject=("t", "1"))
    assert entry.seq == 0


def test_batch_is_all_or_nothing():
    _append(3)
    head_before = LedgerHead.objects.get(pk=1).tree_size
    drafts = [draft(actor="system:test", action="batch", subject=("t", str(i)), payload={"i": i}) for i in range(50)]
    drafts.append(draft(actor="system:test", action="batch", subject=("t", "bad"), payload={"n": float("nan")}))
    with pytest.raises(ValueError):
        ledger_append_many(drafts)
    assert LedgerEntry.objects.count() == 3
    assert LedgerHead.objects.get(pk=1).tree_size == head_before == 3
    assert verify_ledger().ok


def test_batch_appends_then_checkpoints_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ledger_append_many([draft(actor="system:test", action="batch", subject=("t", str(i))) for i in range(37)])
    assert len(callbacks) == 1
    checkpoint = Checkpoint.objects.get()
    assert checkpoint.tree_size == 37
    body, _ = note.open_note(checkpoint.note, verifiers())
    parsed = note.parse_checkpoint(body)
    leaves = list(LedgerEntry.objects.order_by("seq").values_list("leaf_hash", flat=True))
    assert parsed.root_hash == merkle.root_hash([bytes(leaf) for leaf in leaves])


def test_entry_without_actor_is_refused():
    with pytest.raises(InvalidInput) as caught:
        ledger_append(actor="", action="t", subject=("t", "1"))
    assert caught.value.code == "ledger_actor_missing"
    assert LedgerEntry.objects.count() == 0


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 17, 33])
def test_inclusion_and_consistency_proofs_verify_against_recomputed_roots(size):
    _append(size)
    leaves = [bytes(leaf) for leaf in LedgerEntry.objects.order_by("seq").values_list("leaf_hash", flat=True)]
    for tree_size in range(1, size + 1):
        root = merkle.root_hash(leaves[:tree_size])
        assert root_at(tree_size) == root
        for leaf_index in range(tree_size):
            proof = inclusion_proof(leaf_index=leaf_index, tree_size=tree_size)
            merkle.verify_inclusion(leaves[leaf_index], leaf_index, tree_size, proof, root)
        for first in range(1, tree_size + 1):
            proof = consistency_proof(first_size=first, second_size=tree_size)
            merkle.verify_consistency(first, tree_size, proof, merkle.root_hash(leaves[:first]), root)


def test_proof_requests_outside_the_log_are_refused_with_codes():
    _append(4)
    with pytest.raises(InvalidInput) as too_large:
        inclusion_proof(leaf_index=0, tree_size=5)
    assert too_large.value.code == "tree_size_too_large"
    with pytest.raises(InvalidInput) as outside:
        inclusion_proof(leaf_index=4, tree_size=4)
    assert outside.value.code == "leaf_index_out_of_range"
    with pytest.raises(InvalidInput) as bad_sizes:
        consistency_proof(first_size=3, second_size=2)
    assert bad_sizes.value.code == "invalid_tree_sizes"


def test_checkpoint_is_idempotent_per_tree_size_and_consistency_between_any_two():
    _append(3)
    first = checkpoint_create()
    assert checkpoint_create().pk == first.pk
    _append(10, prefix="more")
    second = checkpoint_create()
    assert (first.tree_size, second.tree_size) == (3, 13)
    proof = consistency_proof(first_size=3, second_size=13)
    merkle.verify_consistency(3, 13, proof, bytes(first.root_hash), bytes(second.root_hash))
    assert verify_ledger().checkpoints_checked == 2


def test_rotation_keeps_old_checkpoints_verifiable():
    from audit.models import SigningKey
    from audit.services import signing_key_rotate

    _append(2)
    old = checkpoint_create()
    rotated = signing_key_rotate(purpose=SigningKey.Purpose.CHECKPOINT)
    _append(2, prefix="after")
    new = checkpoint_create()
    assert old.key_id != new.key_id == rotated.pk
    retired = SigningKey.objects.get(pk=old.key_id)
    assert retired.valid_until is not None
    result = verify_ledger()
    assert result.ok, result.problems
    assert result.checkpoints_checked == 2
    assert LedgerEntry.objects.filter(action="signing_key.rotated").count() == 1


def test_spliced_canonical_bytes_equal_the_reference_rfc8785_encoding():
    import rfc8785

    from audit.ledger import entry_document

    entry = ledger_append(actor="user:zoë", action="x.ÿ", subject=("t", "ü/1"),
                          payload={"z": [1, 2.5, None], "é": "\u2028", "a": {"b": True}})
    document = json.loads(bytes(entry.canonical))
    reference = rfc8785.dumps(entry_document(
        seq=document["seq"], recorded_at=document["recorded_at"], actor=document["actor"],
        action=document["action"], subject_type="t", subject_id="ü/1", payload=document["payload"],
        prev_hash=bytes(entry.prev_hash), subject_prev=document["subject_prev"]))
    assert bytes(entry.canonical) == reference


def test_recorded_at_matches_orm_equality_filters():
    entry = ledger_append(actor="system:test", action="t", subject=("t", "time"))
    assert LedgerEntry.objects.filter(recorded_at=entry.recorded_at).values_list("seq", flat=True).get() == entry.seq


# --- The two PostgreSQL append paths ---------------------------------------------------------
# Up to SERVER_APPEND_MAX entries are appended by the server-side function (migration
# audit/0003), larger batches are hashed in Python and sent with COPY. Both must produce the same
# bytes, chain and tree as the reference code, in any interleaving.

needs_postgresql = pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
                                      reason="the server-side append exists only on PostgreSQL")

def _naive_nodes(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every complete subtree of level >= 1, computed level by level from the leaves."""
    nodes: dict[tuple[int, int], bytes] = {}
    level, row = 0, leaves
    while len(row) > 1:
        row = [merkle.node_hash(row[index], row[index + 1]) for index in range(0, len(row) - 1, 2)]
        level += 1
        nodes.update({(level, index): node for index, node in enumerate(row)})
    return nodes


def _batch(size: int, tag: str) -> list:
    return [draft(actor="user:zoë", action="test.batch", subject=("t", f"{tag}/ü{index}"),
                  payload={"index": index, "tag": tag, "text": "\u2028é\"\\", "nested": {"b": [1, None], "a": True}})
            for index in range(size)]


def test_server_and_client_append_paths_interleave_into_one_verifiable_tree():
    from audit import ledger
    from audit.models import MerkleNode

    sizes = [1, 3, ledger.SERVER_APPEND_MAX, ledger.SERVER_APPEND_MAX + 1, 1, 2, 130, 7, 1]
    returned = []
    for step, size in enumerate(sizes):
        with transaction.atomic():
            returned.extend(ledger_append_many(_batch(size, f"s{step}"), checkpoint=False))
    checkpoint_create()
    stored = list(LedgerEntry.objects.order_by("seq"))
    assert [entry.seq for entry in stored] == list(range(sum(sizes)))
    import rfc8785

    from audit.ledger import entry_document

    previous = ZERO_HASH
    for mine, entry in zip(returned, stored, strict=True):
        # What the append returned is what was stored.
        assert (mine.seq, bytes(mine.canonical), bytes(mine.entry_hash), mine.recorded_at) == \
            (entry.seq, bytes(entry.canonical), bytes(entry.entry_hash), entry.recorded_at)
        document = json.loads(bytes(entry.canonical))
        assert bytes(entry.canonical) == rfc8785.dumps(entry_document(
            seq=entry.seq, recorded_at=document["recorded_at"], actor=entry.actor, action=entry.action,
            subject_type=entry.subject_type, subject_id=entry.subject_id, payload=document["payload"],
            prev_hash=previous, subject_prev=document["subject_prev"]))
        assert document["recorded_at"] == entry.recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert bytes(entry.prev_hash) == previous
        assert bytes(entry.entry_hash) == hashlib.sha256(bytes(entry.canonical)).digest()
        assert bytes(entry.leaf_hash) == merkle.leaf_hash(bytes(entry.canonical))
        previous = bytes(entry.entry_hash)
    # recorded_at never goes backwards along the chain, whichever path wrote the entry.
    times = [entry.recorded_at for entry in stored]
    assert times == sorted(times)
    leaves = [bytes(entry.leaf_hash) for entry in stored]
    expected = {node_key(level, index): node for (level, index), node in _naive_nodes(leaves).items()}
    assert {node.node_id: bytes(node.hash) for node in MerkleNode.objects.all()} == expected
    head = LedgerHead.objects.get(pk=1)
    assert head.tree_size == len(leaves) and bytes(head.head_hash) == previous
    assert root_at(len(leaves)) == merkle.root_hash(leaves)
    result = verify_ledger()
    assert result.ok, result.problems


@needs_postgresql
def test_postgresql_small_appends_run_in_the_server_function(django_assert_num_queries):
    from django.db import connection

    from audit import ledger

    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_proc WHERE proname = 'audit_ledger_append'")
        assert cursor.fetchone()[0] == 1
    # The server path sends nothing through Django's cursor: no lock, no INSERT, no UPDATE.
    with django_assert_num_queries(0):
        entries = ledger_append_many(_batch(ledger.SERVER_APPEND_MAX, "server"), checkpoint=False)
    assert [entry.seq for entry in entries] == list(range(ledger.SERVER_APPEND_MAX))
    # One more than that goes the client way: the head lock, the server clock and the latest
    # entry about each subject of the batch (subject_prev), through Django.
    with django_assert_num_queries(3):
        ledger_append_many(_batch(ledger.SERVER_APPEND_MAX + 1, "client"), checkpoint=False)
    assert verify_ledger().ok


@needs_postgresql
def test_postgresql_append_function_refuses_arrays_of_different_lengths():
    from django.db import DatabaseError, connection

    with pytest.raises(DatabaseError, match="differ in length"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM audit_ledger_append(ARRAY['{'::bytea], ARRAY['{}'::bytea], ARRAY['a'], "
                       "ARRAY['b'], ARRAY['c'], ARRAY['d', 'e'])")
    assert LedgerEntry.objects.count() == 0


def _protocol_trace(action):  # type: ignore[no-untyped-def]
    """What the client sent to the server while `action()` ran: libpq's trace of the messages."""
    import tempfile

    from django.db import connection
    from psycopg import pq

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            result = action()
        finally:
            pgconn.untrace()
        trace.seek(0)
        lines = trace.read().decode("utf-8", "replace").splitlines()
    sent = [line.split("\t")[2].strip() for line in lines if line.startswith("F\t")]
    queries = [line.split("\t", 3)[3] for line in lines if line.startswith("F\t") and "\tQuery\t" in line]
    return result, sent, queries


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_postgresql_append_outside_a_transaction_is_one_statement_and_its_own_transaction():
    from django.db import connection

    assert not connection.in_atomic_block
    entry, sent, queries = _protocol_trace(
        lambda: ledger_append(actor="system:test", action="t.auto", subject=("t", "auto"), payload={"a": 1}))
    # One extended-protocol statement (Parse, Bind, Describe, Execute, Sync): no BEGIN, no COMMIT.
    assert sent.count("Sync") == 1 and sent.count("Execute") == 1, sent
    assert queries == []
    assert connection.connection.info.transaction_status == 0  # IDLE: committed, the head let go
    assert entry.seq == 0 and LedgerEntry.objects.get(seq=0).entry_hash == entry.entry_hash
    # Inside a transaction the same call joins it: the caller's BEGIN, and its COMMIT at the end.
    _, _, queries = _protocol_trace(lambda: _in_transaction(
        lambda: ledger_append(actor="system:test", action="t.auto", subject=("t", "auto"))))
    assert [query.strip('" ') for query in queries] == ["BEGIN", "COMMIT"]
    second = LedgerEntry.objects.get(seq=1)
    assert second.subject_prev == 0 and bytes(second.prev_hash) == bytes(entry.entry_hash)
    assert verify_ledger().ok


def _in_transaction(action):  # type: ignore[no-untyped-def]
    with transaction.atomic():
        return action()


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_postgresql_append_outside_a_transaction_that_fails_writes_nothing_and_leaves_the_connection_usable():
    from django.db import DataError

    with pytest.raises(DataError):
        ledger_append(actor="system:" + "x" * 300, action="t.auto", subject=("t", "long"))  # actor is varchar(200)
    assert LedgerEntry.objects.count() == 0
    assert LedgerHead.objects.get(pk=1).tree_size == 0
    entry = ledger_append(actor="system:test", action="t.auto", subject=("t", "after"))
    assert entry.seq == 0 and verify_ledger().ok


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_postgresql_batch_outside_a_transaction_is_checkpointed_once_it_is_committed():
    entries = ledger_append_many([draft(actor="system:test", action="t.auto", subject=("t", str(index)))
                                  for index in range(3)])
    assert [entry.seq for entry in entries] == [0, 1, 2]
    checkpoint = Checkpoint.objects.get()
    assert checkpoint.tree_size == 3 and bytes(checkpoint.root_hash) == root_at(3)

"""verify_ledger's bulk path (PostgreSQL, a chunk at a time) against its entry-by-entry path.

The bulk path must pass every intact ledger on its own (no chunk handed to the entry-by-entry
path), agree with the entry-by-entry path on what it reports, and hand over every chunk that
holds a tampered entry, so that the entry-by-entry path names it.
"""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection

from audit import verify
from audit.ledger import checkpoint_create, draft, ledger_append, ledger_append_many
from audit.models import LedgerEntry, LedgerHead
from audit.verify import verify_ledger

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_ledger")]

TRICKY = ['a"b', "back\\slash", "tab\tnew\nline", "\u2028é✓", "\x7f\x01", ',"prev_hash":"x', "plain", "}"]
CHUNK = 7


@pytest.fixture
def handed_over(monkeypatch):
    """The seqs at which a bulk chunk was handed to the entry-by-entry path."""
    seqs: list[int] = []
    real = verify._Walk.chunk

    def spy(self, low, high, chunk):  # type: ignore[no-untyped-def]
        passed = real(self, low, high, chunk)
        if not passed:
            seqs.append(self.expected_seq)
        return passed

    monkeypatch.setattr(verify._Walk, "chunk", spy)
    return seqs


def _outcome(result: verify.VerificationResult) -> tuple:
    return (result.ok, result.entries_checked, result.tree_size, result.root_hash, result.checkpoints_checked,
            result.first_bad_seq, [(problem.seq, problem.code, problem.message) for problem in result.problems])


def _both(**kwargs) -> verify.VerificationResult:  # type: ignore[no-untyped-def]
    """Verify both ways; they must report the same. Returns the bulk result."""
    bulk = verify_ledger(chunk_size=CHUNK, **kwargs)
    assert _outcome(bulk) == _outcome(verify_ledger(chunk_size=CHUNK, bulk=False, **kwargs))
    return bulk


def _fill(count: int, *, subjects: int = 3) -> None:
    for index in range(count):
        text = TRICKY[index % len(TRICKY)]
        ledger_append(actor=f"user:{text}", action=f"x.{index % 4}", subject=(f"t{index % subjects}", text),
                      payload={"nested": {"prev_hash": text, "seq": 1, "subject_prev": 3}, "s": text})


def _as_superuser(statement: str, params: list) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
            cursor.execute(statement, params)
        else:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit_%'")
            saved = cursor.fetchall()
            for name, _ in saved:
                cursor.execute(f'DROP TRIGGER "{name}"')
            cursor.execute(statement, params)
            for _, sql in saved:
                cursor.execute(sql)


def test_an_intact_ledger_passes_in_bulk_across_chunks_checkpoints_and_subjects(handed_over):
    _fill(10)
    checkpoint_create()  # inside the second chunk
    _fill(12, subjects=2)
    checkpoint_create()
    ledger_append_many([draft(actor="system:test", action="test.batch", subject=("t1", TRICKY[index % 8]),
                              payload=[index, 0.1, None]) for index in range(30)], checkpoint=False)
    checkpoint_create()  # the tree ends inside a chunk
    result = _both()
    assert result.ok, result.problems
    assert (result.entries_checked, result.checkpoints_checked) == (52, 3)
    assert handed_over == []
    published = verify.Checkpoint.objects.get(tree_size=22).note
    assert _both(trusted_checkpoints=[published]).checkpoints_checked == 4
    incremental = _both(from_tree_size=10)
    assert (incremental.ok, incremental.started_from, incremental.entries_checked) == (True, 10, 42)
    assert handed_over == []


def test_a_ledger_with_legacy_entries_before_the_cut_over_passes_in_bulk(handed_over, monkeypatch):
    from audit import ledger

    real_splice = ledger._splice

    def legacy_splice(prefix, subject, *, prev_hash, recorded_at, seq, subject_prev):  # type: ignore[no-untyped-def]
        spliced = real_splice(prefix, subject, prev_hash=prev_hash, recorded_at=recorded_at, seq=seq,
                              subject_prev=subject_prev)
        return spliced[:spliced.rindex(b',"subject_prev":')] + b"}"

    monkeypatch.setattr(ledger, "_splice", legacy_splice)
    ledger_append_many([draft(actor="system:test", action="old", subject=("t", str(index % 3)))
                        for index in range(ledger.SERVER_APPEND_MAX + 4)], checkpoint=False)
    cut_over = LedgerEntry.objects.count()
    LedgerHead.objects.filter(pk=1).update(subject_prev_from=cut_over)
    monkeypatch.setattr(ledger, "_splice", real_splice)
    ledger_append_many([draft(actor="system:test", action="new", subject=("t", str(index % 4)))
                        for index in range(9)], checkpoint=False)
    assert _both().ok
    assert handed_over == []
    LedgerHead.objects.filter(pk=1).update(subject_prev_from=cut_over - 1)
    assert _both().first_bad_seq == cut_over - 1
    if connection.vendor == "postgresql":
        assert handed_over and handed_over[0] <= cut_over - 1


@pytest.mark.parametrize(("seq", "assignment", "params"), [
    (9, "actor = %s", ["user:mallory"]),
    (15, "subject_id = %s", ['a"b!']),
    (15, "subject_type = %s", ["t9"]),
    (3, "action = %s", ["x.9"]),
    (20, "recorded_at = recorded_at + interval '1 microsecond'", []),
    (13, "prev_hash = %s", [bytes(32)]),
    (6, "entry_hash = %s", [bytes(32)]),
    (6, "leaf_hash = %s", [bytes(32)]),
    (14, "seq = 1000", []),
])
def test_a_tampered_column_hands_its_chunk_over_and_is_named(handed_over, seq, assignment, params):
    if connection.vendor != "postgresql" and "interval" in assignment:
        assignment = "recorded_at = '2001-01-01 00:00:00'"
    _fill(22)
    _as_superuser(f"UPDATE audit_ledgerentry SET {assignment} WHERE seq = {seq}", params)
    result = _both()
    assert not result.ok
    assert result.first_bad_seq == seq
    if connection.vendor == "postgresql":
        assert handed_over and handed_over[0] <= seq < handed_over[0] + CHUNK


@pytest.mark.parametrize("forge", [
    lambda canonical: canonical.replace(b'"subject_prev":', b'"subject_prev" :'),  # another spelling
    lambda canonical: canonical[:canonical.rindex(b',"subject_prev":')] + b"}",   # the field dropped
    lambda canonical: canonical[:canonical.rindex(b":") + 1] + b"01}",             # a leading zero
    lambda canonical: canonical[:canonical.rindex(b":") + 1] + b"1}",              # another seq
    lambda canonical: canonical[:canonical.rindex(b":") + 1] + b"null}",           # null
    lambda canonical: canonical.replace(b'{"action":', b'{"action": '),            # a space in the head
    lambda canonical: canonical.replace(b',"prev_hash":"', b',"prev_hash":"0'),    # a longer middle
    lambda canonical: canonical.replace(b'"payload":', b'"payload":[],"x":'),      # keys inside the payload
    lambda canonical: canonical[:-1],                                              # no closing brace
])
def test_forged_bytes_at_the_tip_hand_the_chunk_over(handed_over, forge):
    """The tip can be rewritten with its hashes recomputed (only checkpoints cover it): the bytes
    around the payload must still be the columns' and the chain's, in the one canonical spelling."""
    _fill(12, subjects=1)
    tip = 11
    canonical = bytes(LedgerEntry.objects.get(seq=tip).canonical)
    assert canonical.endswith(b',"subject_prev":3}')
    forged = forge(canonical)
    assert forged != canonical
    _as_superuser("UPDATE audit_ledgerentry SET canonical = %s, entry_hash = %s, leaf_hash = %s WHERE seq = %s",
                  [forged, hashlib.sha256(forged).digest(), hashlib.sha256(b"\x00" + forged).digest(), tip])
    result = _both()
    if forged.replace(b'"payload":[],"x":', b'"payload":') == canonical:
        # Keys the payload value spells are not the document's: the entry-by-entry path accepts
        # them as well (a duplicate top-level key would be another matter; see test_tamper).
        assert result.ok == verify_ledger(bulk=False).ok
        return
    assert (result.ok, result.first_bad_seq) == (False, tip)
    if connection.vendor == "postgresql":
        assert handed_over == [tip - tip % CHUNK] or handed_over == [tip]


# --- The stored Merkle nodes, a level at a time (PostgreSQL) ----------------------------------

@pytest.fixture
def nodes_compared_one_by_one(monkeypatch):
    """How many times the node-by-node comparison (the path that names a bad node) ran."""
    runs: list[int] = []
    real = verify._stream_nodes

    def spy(start):  # type: ignore[no-untyped-def]
        runs.append(start)
        return real(start)

    monkeypatch.setattr(verify, "_stream_nodes", spy)
    return runs


def test_intact_stored_nodes_pass_a_level_at_a_time(nodes_compared_one_by_one):
    _fill(21)  # nodes at levels 1 to 4
    assert verify_ledger().ok
    assert nodes_compared_one_by_one == ([] if connection.vendor == "postgresql" else [0])


_SHIFT = verify.NODE_LEVEL_SHIFT


@pytest.mark.parametrize(("statement", "params", "code"), [
    ("UPDATE audit_merklenode SET hash = %s WHERE node_id = %s", [bytes(32), (2 << _SHIFT) | 3], "merkle_node_mismatch"),
    ("DELETE FROM audit_merklenode WHERE node_id = %s", [(1 << _SHIFT) | 9], "merkle_node_missing"),
    ("INSERT INTO audit_merklenode (node_id, hash) VALUES (%s, %s)", [(5 << _SHIFT), bytes(32)],
     "merkle_node_unexpected"),  # a level the tree of 21 leaves does not have
    ("INSERT INTO audit_merklenode (node_id, hash) VALUES (%s, %s)", [(1 << _SHIFT) | 10, bytes(32)],
     "merkle_node_unexpected"),  # one past the last node of its level
    ("INSERT INTO audit_merklenode (node_id, hash) VALUES (%s, %s)", [3, bytes(32)], "merkle_node_unexpected"),
])
def test_a_stored_node_forged_missing_or_extra_is_named(nodes_compared_one_by_one, statement, params, code):
    _fill(21)
    _as_superuser(statement, params)
    result = verify_ledger()
    assert not result.ok
    assert result.problems[0].code == code, result.problems
    assert nodes_compared_one_by_one == [0]  # the level check handed over to the path that names it


@pytest.mark.skipif(connection.vendor != "postgresql", reason="planner settings of PostgreSQL")
def test_the_bulk_walk_reads_chunks_without_bitmap_scans_and_restores_the_planner(monkeypatch):
    """A ledger filled since its last ANALYZE had each chunk planned as a bitmap scan and a sort on
    disk; the walk turns bitmap scans off for its own transaction and puts the setting back."""
    _fill(10)
    seen: list[tuple[str, str]] = []
    real = verify._chunks

    def explained(raw, position, chunk_size):  # type: ignore[no-untyped-def]
        with raw.cursor() as cursor:
            cursor.execute("SELECT current_setting('enable_bitmapscan')")
            setting = cursor.fetchone()[0]
            cursor.execute("EXPLAIN " + verify._PG_CHUNK_SQL, [position, position + chunk_size])
            seen.append((setting, "\n".join(row[0] for row in cursor.fetchall())))
        return real(raw, position, chunk_size)

    monkeypatch.setattr(verify, "_chunks", explained)
    with connection.cursor() as cursor:
        assert verify_ledger(chunk_size=CHUNK).ok
        cursor.execute("SELECT current_setting('enable_bitmapscan')")
        assert cursor.fetchone()[0] == "on"
    assert seen and all(setting == "off" and "Bitmap" not in plan for setting, plan in seen), seen

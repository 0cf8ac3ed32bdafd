"""Tampering as a database superuser would: each case must fail verification at the right seq."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.db import connection

from audit import note
from audit.ledger import checkpoint_create, ledger_append
from audit.models import Checkpoint
from audit.verify import verify_ledger

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_ledger")]

SIZE = 12


@pytest.fixture
def ledger():
    for index in range(SIZE):
        ledger_append(actor=f"user:alice{index % 3}", action="model_version.updated",
                      subject=("governance.modelversion", str(index)), payload={"after": {"status": f"s{index}"}})
    checkpoint_create()
    assert verify_ledger().ok


def _as_superuser(*statements: str, params: list | None = None) -> None:
    """Run raw SQL with the append-only triggers switched off, as a database superuser can."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
            for statement in statements:
                cursor.execute(statement, params)
        else:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit_%'")
            saved = cursor.fetchall()
            for name, _ in saved:
                cursor.execute(f'DROP TRIGGER "{name}"')
            for statement in statements:
                cursor.execute(statement, params)
            for _, sql in saved:
                cursor.execute(sql)


def _fails_at(seq: int, code: str | None = None) -> None:
    result = verify_ledger()
    assert not result.ok
    assert result.first_bad_seq == seq, result.problems
    if code:
        assert result.problems[0].code == code, result.problems


def _canonical(seq: int) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute("SELECT canonical FROM audit_ledgerentry WHERE seq = %s", [seq])
        return bytes(cursor.fetchone()[0])


def test_editing_one_payload_byte_is_caught(ledger):
    forged = _canonical(5).replace(b'"s5"', b'"s6"')
    _as_superuser("UPDATE audit_ledgerentry SET canonical = %s WHERE seq = 5", params=[forged])
    _fails_at(5, "entry_hash_mismatch")


def test_editing_payload_and_recomputing_its_hashes_breaks_the_chain(ledger):
    import hashlib

    forged = _canonical(5).replace(b'"s5"', b'"s6"')
    entry_hash = hashlib.sha256(forged).digest()
    leaf = hashlib.sha256(b"\x00" + forged).digest()
    _as_superuser("UPDATE audit_ledgerentry SET canonical = %s, entry_hash = %s, leaf_hash = %s WHERE seq = 5",
                  params=[forged, entry_hash, leaf])
    _fails_at(6, "chain_broken")


def test_changing_an_actor_is_caught(ledger):
    _as_superuser("UPDATE audit_ledgerentry SET actor = 'user:mallory' WHERE seq = 7")
    _fails_at(7, "columns_mismatch")


@pytest.mark.parametrize("assignment", [
    "action = 'model_version.approved'",
    "subject_type = 'governance.registeredmodel'",
    "subject_id = '99'",
    "recorded_at = recorded_at + interval '1 microsecond'",
])
def test_changing_any_indexed_column_alone_is_caught(ledger, assignment):
    if connection.vendor != "postgresql" and "interval" in assignment:
        assignment = "recorded_at = '2001-01-01 00:00:00'"
    _as_superuser(f"UPDATE audit_ledgerentry SET {assignment} WHERE seq = 9")
    _fails_at(9, "columns_mismatch")


def test_only_the_first_of_several_column_edits_is_named(ledger):
    _as_superuser("UPDATE audit_ledgerentry SET actor = 'user:mallory' WHERE seq IN (4, 8)")
    result = verify_ledger()
    assert [(problem.seq, problem.code) for problem in result.problems] == [(4, "columns_mismatch")]


def test_bytes_that_are_not_json_are_caught_even_with_their_hashes_recomputed_at_the_tip(ledger):
    """The last entry (no successor to break the chain): its bytes hash right but are no document."""
    import hashlib

    forged = _canonical(SIZE - 1)[:-1]  # the closing brace cut off: no JSON parser accepts it
    _as_superuser("UPDATE audit_ledgerentry SET canonical = %s, entry_hash = %s, leaf_hash = %s WHERE seq = %s",
                  params=[forged, hashlib.sha256(forged).digest(), hashlib.sha256(b"\x00" + forged).digest(),
                          SIZE - 1])
    result = verify_ledger()
    assert not result.ok
    assert (result.problems[0].seq, result.problems[0].code) == (SIZE - 1, "columns_mismatch")


def test_deleting_an_entry_is_caught(ledger):
    _as_superuser("DELETE FROM audit_ledgerentry WHERE seq = 4")
    _fails_at(4, "seq_gap")


def test_swapping_two_entries_is_caught(ledger):
    _as_superuser(
        "UPDATE audit_ledgerentry SET seq = -1 WHERE seq = 3",
        "UPDATE audit_ledgerentry SET seq = 3 WHERE seq = 4",
        "UPDATE audit_ledgerentry SET seq = 4 WHERE seq = -1",
    )
    _fails_at(3)


def test_truncating_the_tail_is_caught_against_the_last_checkpoint(ledger):
    _as_superuser(f"DELETE FROM audit_ledgerentry WHERE seq >= {SIZE - 3}")
    _fails_at(SIZE - 3, "ledger_truncated")


def test_truncating_entries_and_checkpoints_is_caught_against_a_published_checkpoint(ledger, tmp_path):
    from audit.models import NODE_LEVEL_SHIFT, MerkleNode, node_key

    published = Checkpoint.objects.get(tree_size=SIZE).note
    keep = SIZE - 2
    # A careful attacker also removes the Merkle nodes that cover the removed entries.
    beyond = [node_id for node_id in MerkleNode.objects.values_list("node_id", flat=True)
              if ((node_id & ((1 << NODE_LEVEL_SHIFT) - 1)) + 1) << (node_id >> NODE_LEVEL_SHIFT) > keep]
    assert node_key(1, keep // 2) in beyond
    _as_superuser(f"DELETE FROM audit_ledgerentry WHERE seq >= {keep}", "DELETE FROM audit_checkpoint",
                  *[f"DELETE FROM audit_merklenode WHERE node_id = {node_id}" for node_id in beyond])
    assert verify_ledger().ok  # what is left is self-consistent...
    result = verify_ledger(trusted_checkpoints=[published])
    assert not result.ok  # ...but shorter than what was published
    assert result.first_bad_seq == SIZE - 2
    assert result.problems[0].code == "ledger_truncated"


def test_replacing_a_checkpoint_signature_is_caught(ledger):
    checkpoint = Checkpoint.objects.get(tree_size=SIZE)
    body, _, signature_line = checkpoint.note.rpartition("\n\n")
    prefix, _, encoded = signature_line.strip().rpartition(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 0x01
    forged = f"{body}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    _as_superuser("UPDATE audit_checkpoint SET note = %s WHERE tree_size = %s", params=[forged, SIZE])
    _fails_at(SIZE - 1, "checkpoint_signature_invalid")


def test_a_checkpoint_signed_by_an_unknown_key_is_caught(ledger):
    checkpoint = Checkpoint.objects.get(tree_size=SIZE)
    body = checkpoint.note.split("\n\n")[0] + "\n"
    name = note.parse_checkpoint(body).origin
    forged = note.sign_note(body, name=name, private_key=Ed25519PrivateKey.generate())
    _as_superuser("UPDATE audit_checkpoint SET note = %s WHERE tree_size = %s", params=[forged, SIZE])
    _fails_at(SIZE - 1, "checkpoint_signature_invalid")


def test_a_forged_merkle_node_is_caught(ledger):
    _as_superuser("UPDATE audit_merklenode SET hash = %s WHERE node_id = (SELECT MIN(node_id) FROM audit_merklenode)",
                  params=[bytes(32)])
    result = verify_ledger()
    assert not result.ok and result.problems[0].code in {"merkle_node_mismatch", "checkpoint_root_mismatch"}


def test_verify_ledger_command_exit_status_and_json(ledger, capsys):
    call_command("verify_ledger", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["entries_checked"] == SIZE and report["checkpoints_checked"] == 1
    _as_superuser("UPDATE audit_ledgerentry SET action = 'forged' WHERE seq = 2")
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_ledger")
    assert exit_info.value.code == 1
    assert "seq 2" in capsys.readouterr().err


def test_incremental_verification_from_a_checkpoint(ledger):
    for index in range(5):
        ledger_append(actor="system:test", action="later", subject=("t", str(index)))
    result = verify_ledger(from_tree_size=SIZE)
    assert result.ok and result.started_from == SIZE and result.entries_checked == 5
    _as_superuser("UPDATE audit_ledgerentry SET actor = 'user:mallory' WHERE seq = 14")
    result = verify_ledger(from_tree_size=SIZE)
    assert result.first_bad_seq == 14


def test_nightly_task_records_its_outcome_in_the_ledger(ledger):
    from audit.models import LedgerEntry
    from audit.tasks import ledger_verify_task

    assert ledger_verify_task.delay().get() is True
    entry = LedgerEntry.objects.order_by("-seq").first()
    assert entry.action == "ledger.verified" and entry.actor == "system:ledger_verify_task"
    assert entry.payload["entries_checked"] == SIZE


def test_command_line_exit_code_in_a_real_process(ledger, tmp_path):
    # The command's exit status is what operators script against; check it in a subprocess too.
    completed = subprocess.run([sys.executable, "manage.py", "verify_ledger", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0 and "--from-checkpoint" in completed.stdout


TRICKY = ['a"b', "back\\slash", "tab\tnew\nline", "\u2028é✓", "\x7f\x01", ',"prev_hash":"x', "plain"]


@pytest.mark.parametrize("edited", TRICKY)
def test_columns_with_escaped_strings_verify_and_an_edit_to_one_is_caught(edited):
    # verify_ledger compares the columns with the hashed bytes without parsing JSON (the bytes
    # around the payload are rendered from the columns); strings that need escaping, and a payload
    # that spells a top-level key, must neither fail an intact ledger nor hide an edit.
    for index, text in enumerate(TRICKY):
        ledger_append(actor=f"user:{text}", action=f"x.{index}", subject=(f"t{text}", text),
                      payload={"nested": {"prev_hash": text, "seq": 1, "subject": {"id": text}}, "s": ',"prev_hash":"'})
    checkpoint_create()
    result = verify_ledger()
    assert result.ok, result.problems
    position = TRICKY.index(edited)
    replacement = edited + "!"
    _as_superuser("UPDATE audit_ledgerentry SET subject_id = %s WHERE seq = %s", params=[replacement, position])
    _fails_at(position, "columns_mismatch")

"""End to end: the service pushes checkpoints to a real witness process; bundles carry its cosignatures.

Each attack is made the way an operator with full database rights would make it, then pushed
to the witness by the service's own code (the witness must refuse it), and exported as a bundle
that `verify.py --policy` must fail, even with the honest bundle's cosignatures grafted in and
the manifest signed again with the operator's key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection

from audit import witnesses
from audit.keys import active_key
from audit.ledger import checkpoint_create, ledger_append
from audit.models import LedgerEntry, SigningKey, WitnessCosignature
from tests.conftest import uses_postgres
from tests.reports.bundle_helpers import (
    SUBJECTS,
    load_verifier,
    make_bundle,
    members,
    run_verify,
    tamper_and_resign,
    verdict,
)
from tests.witness.helpers import WitnessProcess, witness_create

pytestmark = [pytest.mark.integration, pytest.mark.postgres,
              pytest.mark.skipif(not uses_postgres(), reason="rebuilds the ledger with PostgreSQL's replica role")]


@pytest.fixture
def witness(tmp_path: Path, settings, empty_ledger) -> Iterator[WitnessProcess]:  # type: ignore[no-untyped-def]
    process = witness_create(tmp_path / "witness", name="regulator.test/witness")
    log_vkey = active_key(SigningKey.Purpose.CHECKPOINT).record.vkey
    added = process.run("add-log", "--origin", settings.LEDGER_ORIGIN, "--vkey", log_vkey)
    assert added.returncode == 0, added.stderr
    process.start()
    policy = tmp_path / "witnesses.policy"
    policy.write_text(f"log {log_vkey}\nwitness regulator {process.vkey} {process.url}\nquorum regulator\n")
    settings.WITNESS_POLICY_FILE = str(policy)
    settings.WITNESS_ALERT_EMAILS = ["risk@example.test"]
    yield process
    process.stop()


def write_entries(count: int, label: str = "honest") -> None:
    for index in range(count):
        ledger_append(actor="system:test", action="test.changed", subject=SUBJECTS[index % 2],
                      payload={"index": index, "story": label})
    checkpoint_create()


def push() -> list[witnesses.Outcome]:
    return witnesses.checkpoint_witness_latest(timeout_s=10)


def wipe_ledger() -> None:
    """What an operator with database superuser rights can do: switch the triggers off and start over."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            for table in ("audit_witnesscosignature", "audit_ledgerentry", "audit_merklenode", "audit_checkpoint"):
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute("UPDATE audit_ledgerhead SET tree_size = 0, head_hash = %s, frontier = %s WHERE id = 1",
                           [bytes(32), b""])
        finally:
            cursor.execute("SET session_replication_role = origin")


def policy_args(settings) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--policy", settings.WITNESS_POLICY_FILE]


def graft_witnessed(honest: bytes) -> object:
    """The operator's best try: put the honest bundle's cosigned checkpoint into the forged bundle."""
    witnessed = members(honest)["ledger/witnessed.json"]

    def change(files: dict[str, bytes]) -> None:
        files["ledger/witnessed.json"] = witnessed
    return change


def assert_caught(tmp_path: Path, bundle: bytes, settings) -> None:  # type: ignore[no-untyped-def]
    result = run_verify(tmp_path, bundle, *policy_args(settings), pin=False)
    assert result.returncode == 1, result.stdout
    assert "FAIL [witness]" in verdict(result), result.stdout


def refusal_entries() -> list[dict[str, object]]:
    return [entry.payload for entry in LedgerEntry.objects.filter(action="ledger.witness_refused").order_by("seq")]


def honest_history(tmp_path: Path) -> bytes:
    write_entries(6)
    assert [o.result for o in push()] == ["cosigned"]
    return make_bundle()


# --- The honest case ------------------------------------------------------------------------

def test_checkpoints_are_cosigned_and_a_bundle_verifies_with_the_policy(tmp_path, settings, witness):
    honest = honest_history(tmp_path)
    write_entries(3)
    assert [o.result for o in push()] == ["cosigned"]  # old 6, a consistency proof from there
    assert [o.result for o in push()] == ["already"]
    bundle = make_bundle()
    witnessed = json.loads(members(bundle)["ledger/witnessed.json"])
    assert witnessed["second"] == 9 and witnessed["checkpoint"].count("\u2014 regulator.test/witness ") == 1
    result = run_verify(tmp_path, bundle, *policy_args(settings))
    assert result.returncode == 0, result.stdout
    assert "witnesses:   quorum met at @9: regulator at " in verdict(result)
    assert result.returncode == 0 and honest
    assert WitnessCosignature.objects.count() == 2


def test_without_witness_keys_verify_says_the_operator_alone_vouches(tmp_path, settings, witness):
    result = run_verify(tmp_path, honest_history(tmp_path))
    assert result.returncode == 0, result.stdout
    assert "history is vouched for by the operator only" in verdict(result)


def test_checkpoint_api_serves_the_cosignature_lines(client, auditor, settings, witness):
    write_entries(4)
    push()
    client.force_login(auditor)
    response = client.get("/api/ledger/checkpoint/")
    assert response.status_code == 200
    text = response.content.decode()
    cosignature = WitnessCosignature.objects.get()
    assert text == cosignature.checkpoint.note + cosignature.line + "\n"


def test_a_dropped_cosignature_line_fails_verification(tmp_path, settings, witness):
    bundle = honest_history(tmp_path)

    def drop(files: dict[str, bytes]) -> None:
        document = json.loads(files["ledger/witnessed.json"])
        document["checkpoint"] = "".join(line + "\n" for line in document["checkpoint"].splitlines()
                                         if not line.startswith("\u2014 regulator.test/witness "))
        files["ledger/witnessed.json"] = json.dumps(document).encode()
    result = run_verify(tmp_path, tamper_and_resign(bundle, drop), *policy_args(settings))
    assert result.returncode == 1
    assert "FAIL [witness] the witness quorum is not met" in verdict(result), result.stdout


@pytest.mark.parametrize("position", [0, 5, 20, 60])
def test_a_changed_byte_of_the_cosignature_fails_verification(tmp_path, settings, witness, position):
    bundle = honest_history(tmp_path)

    def flip(files: dict[str, bytes]) -> None:
        document = json.loads(files["ledger/witnessed.json"])
        lines = document["checkpoint"].split("\n")
        index = next(i for i, line in enumerate(lines) if line.startswith("\u2014 regulator.test/witness "))
        prefix, encoded = lines[index].rsplit(" ", 1)
        import base64

        raw = bytearray(base64.b64decode(encoded))
        raw[4 + position] ^= 0x01  # past the key id: the time or the signature
        lines[index] = f"{prefix} {base64.b64encode(bytes(raw)).decode()}"
        document["checkpoint"] = "\n".join(lines)
        files["ledger/witnessed.json"] = json.dumps(document).encode()
    result = run_verify(tmp_path, tamper_and_resign(bundle, flip), *policy_args(settings))
    assert result.returncode == 1
    assert "FAIL [witness]" in verdict(result) and "does not verify" in verdict(result), result.stdout


# --- Attacks --------------------------------------------------------------------------------

def test_rebuilt_ledger_is_refused_by_the_witness_and_caught_by_verify(tmp_path, settings, witness, mailoutbox,
                                                                       django_capture_on_commit_callbacks):
    honest = honest_history(tmp_path)
    wipe_ledger()
    write_entries(9, label="rewritten")  # a changed past, and more of it
    with django_capture_on_commit_callbacks(execute=True):
        assert [o.result for o in push()] == ["refused"]
    [refusal] = refusal_entries()
    assert (refusal["status"], refusal["fork"], refusal["witness"]) == (422, True, "regulator")
    assert len(mailoutbox) == 1 and "FORK ALARM" in mailoutbox[0].subject
    forged = make_bundle()
    assert "ledger/witnessed.json" not in members(forged)
    assert_caught(tmp_path, forged, settings)
    assert_caught(tmp_path, tamper_and_resign(forged, graft_witnessed(honest)), settings)


def test_same_size_fork_is_refused_by_the_witness_and_caught_by_verify(tmp_path, settings, witness):
    honest = honest_history(tmp_path)
    wipe_ledger()
    write_entries(6, label="forked")  # as many entries, one story changed
    assert [o.result for o in push()] == ["refused"]
    [refusal] = refusal_entries()
    assert (refusal["status"], refusal["fork"], refusal["witness_size"]) == (422, True, None)
    forged = make_bundle()
    assert_caught(tmp_path, forged, settings)
    assert_caught(tmp_path, tamper_and_resign(forged, graft_witnessed(honest)), settings)


def test_rollback_to_an_earlier_size_is_refused_by_the_witness_and_caught_by_verify(tmp_path, settings, witness):
    write_entries(4)
    assert [o.result for o in push()] == ["cosigned"]
    with connection.cursor() as cursor:  # the operator's backup at size 4
        for table in ("audit_witnesscosignature", "audit_ledgerentry", "audit_merklenode", "audit_checkpoint",
                      "audit_ledgerhead"):
            cursor.execute(f"CREATE TEMP TABLE backup_{table} AS SELECT * FROM {table}")
    time.sleep(2.2)
    write_entries(5)  # an approval the operator later wants gone
    assert [o.result for o in push()] == ["cosigned"]
    fresh_bundle = make_bundle()
    fresh_at = max(c.cosigned_at.timestamp() for c in WitnessCosignature.objects.all())
    with connection.cursor() as cursor:  # restore the backup
        cursor.execute("SET session_replication_role = replica")
        for table in ("audit_witnesscosignature", "audit_ledgerentry", "audit_merklenode", "audit_checkpoint",
                      "audit_ledgerhead"):
            cursor.execute(f"DELETE FROM {table}")
            cursor.execute(f"INSERT INTO {table} SELECT * FROM backup_{table}")
        cursor.execute("SET session_replication_role = origin")
    # Nothing new since the restore: the witness is asked again by the daily re-push.
    assert [o.result for o in push()] == ["already"]
    assert [o.result for o in witnesses.checkpoint_witness_latest(force=True, timeout_s=10)] == ["refused"]
    [refusal] = refusal_entries()
    assert (refusal["status"], refusal["fork"], refusal["witness_size"]) == (409, True, 9)
    rolled_back = make_bundle()
    # Its cosignature is genuine but old: the witness has cosigned nothing at this size since.
    result = run_verify(tmp_path, rolled_back, *policy_args(settings), "--max-cosignature-age", "2", pin=False)
    assert result.returncode == 1
    assert "FAIL [witness] the witness quorum is not met: valid cosignatures younger than 2 s" in verdict(result)
    # The honest bundle's cosignature was fresh at its time (checked at a fixed `now`, not the wall clock).
    verifier = load_verifier()
    policy = verifier.witness_policy_from_args(settings.WITNESS_POLICY_FILE, [], None)
    path = tmp_path / "fresh.zip"
    path.write_bytes(fresh_bundle)
    verifier.verify_bundle(str(path), [], policy, 2, now=fresh_at + 1)
    path.write_bytes(rolled_back)
    with pytest.raises(verifier.VerificationError, match="quorum is not met"):
        verifier.verify_bundle(str(path), [], policy, 2, now=fresh_at + 1)


def test_ledger_resigned_with_a_new_key_is_refused_by_the_witness_and_caught_by_verify(tmp_path, settings,
                                                                                      witness):
    honest = honest_history(tmp_path)
    new_key = tmp_path / "operator-new-ledger.key"
    new_key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    settings.LEDGER_SIGNING_KEY_FILE = new_key
    wipe_ledger()
    write_entries(8, label="resigned")
    assert [o.result for o in push()] == ["refused"]
    [refusal] = refusal_entries()
    assert (refusal["status"], refusal["fork"]) == (403, False)
    forged = make_bundle()
    assert_caught(tmp_path, forged, settings)
    assert_caught(tmp_path, tamper_and_resign(forged, graft_witnessed(honest)), settings)


def test_after_a_rollback_new_checkpoints_are_refused_too(tmp_path, settings, witness):
    write_entries(3)
    push()
    wipe_ledger()
    write_entries(2, label="restored")
    assert [o.result for o in push()] == ["refused"]
    [refusal] = refusal_entries()
    assert (refusal["status"], refusal["fork"], refusal["witness_size"]) == (409, True, 3)
    assert_caught(tmp_path, make_bundle(), settings)


def test_witness_keys_and_quorum_on_the_command_line(tmp_path, settings, witness):
    bundle = honest_history(tmp_path)
    other = witness_create(tmp_path / "other", name="auditor.test/witness")  # never asked to cosign
    alone = run_verify(tmp_path, bundle, "--witness-key", witness.vkey)
    assert alone.returncode == 0, alone.stdout
    one_of_two = run_verify(tmp_path, bundle, "--witness-key", witness.vkey, "--witness-key", other.vkey,
                            "--witness-quorum", "1")
    assert one_of_two.returncode == 0, one_of_two.stdout
    both = run_verify(tmp_path, bundle, "--witness-key", witness.vkey, "--witness-key", other.vkey)
    assert both.returncode == 1
    assert "FAIL [witness] the witness quorum is not met: valid cosignatures by w0" in verdict(both)
    log_key_as_witness = run_verify(tmp_path, bundle, "--witness-key", active_key(SigningKey.Purpose.CHECKPOINT)
                                    .record.vkey)
    assert log_key_as_witness.returncode == 1
    assert "FAIL [witness-policy]" in verdict(log_key_as_witness) and "type 0x04" in verdict(log_key_as_witness)

"""RFC 3161 timestamps of checkpoints against a real local TSA (`openssl ts -reply`), RSA and EC keys.

Every token the service keeps is cross-checked with `rfc3161-client`'s own verifier against the
TSA's CA, independently of the check the service made before storing it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from django.db import DatabaseError, transaction

from audit.ledger import checkpoint_create, ledger_append
from audit.models import CheckpointTimestamp, LedgerEntry
from audit.services import checkpoint_timestamp, checkpoint_timestamp_daily
from core.errors import Unavailable
from tests.tsa_server import make_pki, start_tsa

pytestmark = [pytest.mark.django_db, pytest.mark.integration, pytest.mark.usefixtures("empty_ledger")]


@pytest.fixture(scope="module", params=["rsa", "ec"])
def local_tsa(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tsa = start_tsa(tmp_path_factory.mktemp(f"tsa-{request.param}"), request.param)
    yield tsa
    tsa.stop()


@pytest.fixture
def with_tsa(settings, local_tsa):  # type: ignore[no-untyped-def]
    settings.TSA_URL = local_tsa.url
    settings.TSA_CA_FILE = str(local_tsa.ca_file)
    return local_tsa


def _cross_check(token: bytes, note: str, ca_file: Path) -> None:
    """rfc3161-client, not our code, says the stored token is a valid one over the note."""
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    # A granted response around the stored token: PKIStatusInfo {status 0} + the token.
    status = bytes.fromhex("3003020100")
    body = status + token
    response = bytes([0x30, 0x82]) + len(body).to_bytes(2, "big") + body
    parsed = decode_timestamp_response(response)
    root = x509.load_pem_x509_certificate(ca_file.read_bytes())
    assert VerifierBuilder().add_root_certificate(root).build().verify(parsed, hashlib.sha256(note.encode()).digest())


def _entries() -> None:
    for index in range(3):
        ledger_append(actor="system:test", action="test.changed", subject=("t", str(index)), payload={"i": index})


def test_a_checkpoint_gets_a_token_a_ledger_entry_and_no_second_one(with_tsa):
    _entries()
    checkpoint = checkpoint_create()
    record = checkpoint_timestamp(checkpoint=checkpoint)
    assert record is not None and record.checkpoint_id == checkpoint.pk
    _cross_check(bytes(record.token), checkpoint.note, with_tsa.ca_file)
    assert record.token_sha256 == hashlib.sha256(bytes(record.token)).hexdigest()
    assert record.tsa_url == with_tsa.url
    entry = LedgerEntry.objects.get(action="checkpoint.timestamped")
    assert (entry.subject_type, entry.subject_id) == ("audit.checkpoint", str(checkpoint.tree_size))
    assert entry.payload["token_sha256"] == record.token_sha256
    assert entry.payload["note_sha256"] == hashlib.sha256(checkpoint.note.encode()).hexdigest()
    # Asked again, the stored token is returned; the TSA is not asked twice.
    asked = with_tsa.requests
    assert checkpoint_timestamp(checkpoint=checkpoint).pk == record.pk
    assert with_tsa.requests == asked


def test_the_daily_job_signs_the_head_and_stamps_it(with_tsa):
    _entries()
    record = checkpoint_timestamp_daily()
    assert record is not None
    assert record.checkpoint.tree_size == 3
    from audit.tasks import ledger_timestamp_task

    second = ledger_timestamp_task()  # the beat's task body, run here
    # The first stamp's own ledger entry moved the head: the next day's checkpoint is a new one.
    assert CheckpointTimestamp.objects.get(pk=second).checkpoint.tree_size == 4
    _cross_check(bytes(CheckpointTimestamp.objects.get(pk=second).token),
                 CheckpointTimestamp.objects.get(pk=second).checkpoint.note, with_tsa.ca_file)


def test_without_a_tsa_nothing_is_asked_or_stored(settings):
    settings.TSA_URL = ""
    _entries()
    assert checkpoint_timestamp(checkpoint=checkpoint_create()) is None
    assert checkpoint_timestamp_daily() is None
    assert not CheckpointTimestamp.objects.exists()


def test_a_tsa_that_does_not_answer_stores_nothing(settings, with_tsa):
    settings.TSA_URL = "http://127.0.0.1:9/"  # discard port: connection refused
    _entries()
    checkpoint = checkpoint_create()
    with pytest.raises(Unavailable) as raised:
        checkpoint_timestamp(checkpoint=checkpoint)
    assert raised.value.code == "tsa_unavailable"
    assert not CheckpointTimestamp.objects.exists()
    assert not LedgerEntry.objects.filter(action="checkpoint.timestamped").exists()


def test_a_token_from_a_tsa_outside_the_pinned_ca_is_refused(settings, with_tsa, tmp_path):
    other_ca, _, _ = make_pki(tmp_path, "ec", label="Other")
    settings.TSA_CA_FILE = str(other_ca)
    _entries()
    with pytest.raises(Unavailable) as raised:
        checkpoint_timestamp(checkpoint=checkpoint_create())
    assert raised.value.code == "tsa_response_invalid"
    assert not CheckpointTimestamp.objects.exists()
    assert not LedgerEntry.objects.filter(action="checkpoint.timestamped").exists()


def test_stored_tokens_are_append_only(with_tsa):
    _entries()
    record = checkpoint_timestamp(checkpoint=checkpoint_create())
    with pytest.raises(DatabaseError), transaction.atomic():
        CheckpointTimestamp.objects.filter(pk=record.pk).update(token=b"x")
    with pytest.raises(DatabaseError), transaction.atomic():
        CheckpointTimestamp.objects.filter(pk=record.pk).delete()
    assert bytes(CheckpointTimestamp.objects.get(pk=record.pk).token) == bytes(record.token)

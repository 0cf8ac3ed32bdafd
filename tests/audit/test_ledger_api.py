"""Read API of the ledger: entries, proofs, consistency, checkpoint, keys; permissions and bad input."""

from __future__ import annotations

import base64
import hashlib

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from audit import merkle, note
from audit.ledger import checkpoint_create, ledger_append

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor_client():
    user = User.objects.create_user("auditor-api", password="x" * 16)
    user.user_permissions.add(Permission.objects.get(codename="view_ledgerentry", content_type__app_label="audit"))
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def ledger(auditor_client, empty_ledger):
    # Granting the auditor's permission is itself recorded; start the entries below from seq 0.
    for index in range(9):
        ledger_append(actor="user:alice", action="model.updated" if index % 2 else "model.created",
                      subject=("governance.registeredmodel", str(index % 3)), payload={"index": index})
    return checkpoint_create()


def test_entries_are_listed_newest_first_with_canonical_bytes_and_filters(auditor_client, ledger):
    response = auditor_client.get("/api/ledger/entries/", {"subject_id": "1", "action": "model.updated"})
    assert response.status_code == 200
    seqs = [item["seq"] for item in response.json()["results"]]
    assert seqs == [7, 1]
    item = response.json()["results"][0]
    canonical = base64.b64decode(item["canonical"])
    assert hashlib.sha256(canonical).hexdigest() == item["entry_hash"]
    assert item["payload"] == {"index": 7}


def test_entry_detail_and_unknown_seq(auditor_client, ledger):
    assert auditor_client.get("/api/ledger/entries/3/").json()["seq"] == 3
    missing = auditor_client.get("/api/ledger/entries/999/")
    assert missing.status_code == 404 and missing.json()["code"] == "ledger_entry_not_found"
    huge = auditor_client.get("/api/ledger/entries/99999999999999999999999/")
    assert huge.status_code == 404


def test_inclusion_proof_verifies_against_the_signed_checkpoint(auditor_client, ledger):
    body = auditor_client.get("/api/ledger/entries/4/proof/").json()
    assert body["tree_size"] == 9 and body["leaf_index"] == 4
    text, _ = note.open_note(body["checkpoint"], [note.parse_vkey(key["vkey"])
                                                  for key in auditor_client.get("/api/ledger/keys/").json()])
    root = note.parse_checkpoint(text).root_hash
    merkle.verify_inclusion(base64.b64decode(body["leaf_hash"]), 4, 9,
                            [base64.b64decode(node) for node in body["hashes"]], root)


def test_consistency_proof_between_two_checkpoints(auditor_client, ledger):
    ledger_append(actor="user:alice", action="later", subject=("t", "x"))
    second = checkpoint_create()
    body = auditor_client.get("/api/ledger/consistency/", {"first": 9, "second": 10}).json()
    merkle.verify_consistency(9, 10, [base64.b64decode(node) for node in body["hashes"]],
                              bytes(ledger.root_hash), bytes(second.root_hash))


@pytest.mark.parametrize(("path", "params", "status_code", "code"), [
    ("/api/ledger/entries/5/proof/", {"tree_size": "3"}, 400, "leaf_index_out_of_range"),
    ("/api/ledger/entries/9/proof/", {}, 404, "ledger_entry_not_found"),
    ("/api/ledger/entries/1/proof/", {"tree_size": "50"}, 400, "tree_size_too_large"),
    ("/api/ledger/entries/1/proof/", {"tree_size": "abc"}, 400, "invalid_parameter"),
    ("/api/ledger/entries/1/proof/", {"tree_size": "0"}, 400, "invalid_parameter"),
    ("/api/ledger/consistency/", {"first": "x"}, 400, "invalid_parameter"),
    ("/api/ledger/consistency/", {}, 400, "missing_parameter"),
    ("/api/ledger/consistency/", {"first": "5", "second": "3"}, 400, "invalid_tree_sizes"),
    ("/api/ledger/consistency/", {"first": "5", "second": "3000"}, 400, "tree_size_too_large"),
    ("/api/ledger/entries/", {"since": "yesterday"}, 400, "invalid_parameter"),
    ("/api/ledger/entries/", {"page": "-1"}, 400, "invalid_parameter"),
])
def test_bad_parameters_get_a_4xx_with_a_stable_code(auditor_client, ledger, path, params, status_code, code):
    response = auditor_client.get(path, params)
    assert response.status_code == status_code
    assert response.json()["code"] == code
    assert set(response.json()) == {"code", "message", "extra"}


def test_checkpoint_is_plain_text_and_keys_list_vkeys_without_private_material(auditor_client, ledger):
    response = auditor_client.get("/api/ledger/checkpoint/")
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == ledger.note
    keys = auditor_client.get("/api/ledger/keys/").json()
    assert any(key["key_id"] == ledger.key.key_id for key in keys)
    assert all("PRIVATE" not in key["public_key_pem"] for key in keys)
    assert auditor_client.get(f"/api/ledger/keys/{ledger.key.key_id}/").status_code == 200
    unknown = auditor_client.get("/api/ledger/keys/deadbeef/")
    assert unknown.status_code == 404 and unknown.json()["code"] == "signing_key_not_found"


def test_no_checkpoint_yet_is_a_clear_404(auditor_client, empty_ledger):
    response = auditor_client.get("/api/ledger/checkpoint/")
    assert response.status_code == 404 and response.json()["code"] == "no_checkpoint"


def test_users_without_the_auditor_permission_are_refused(ledger):
    client = APIClient()
    anonymous = client.get("/api/ledger/entries/")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    client.force_authenticate(User.objects.create_user("viewer-api", password="x" * 16))
    response = client.get("/api/ledger/entries/")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert client.get("/api/ledger/entries/1/proof/").status_code == 403


def test_openapi_schema_documents_the_ledger_endpoints(auditor_client):
    response = auditor_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/ledger/entries/", "/api/ledger/entries/{seq}/proof/", "/api/ledger/consistency/",
                 "/api/ledger/checkpoint/", "/api/ledger/keys/"):
        assert path in paths

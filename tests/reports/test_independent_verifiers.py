"""The bundle checked by implementations that are not ours: pymerkle (RFC 9162 trees and inclusion
proofs), securesystemslib (DSSE, in test_bundle_verify), and Go's published signed-note vectors for
the C2SP parsing in verify.py."""

from __future__ import annotations

import base64
import json

import pytest
from pymerkle import InclusionProof, InmemoryTree, verify_inclusion
from pymerkle.core import _inclusion_path_layout

from audit.ledger import checkpoint_create, ledger_append
from audit.models import LedgerEntry
from tests.reports.bundle_helpers import load_verifier, make_bundle, members

pytestmark = pytest.mark.django_db

# golang.org/x/mod/sumdb/note note_test.go, and a real sum.golang.org tree head (see tests/audit/test_note.py).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = ("If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n"
           "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = ("go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
              "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n")


@pytest.fixture
def whole_ledger_bundle():
    """A bundle whose subjects cover every entry, so an independent tree can be built from it alone."""
    for index in range(21):
        ledger_append(actor="system:test", action="test.changed", subject=("test.model", "m"), payload={"i": index})
    checkpoint_create()
    for index in range(6):
        ledger_append(actor="system:test", action="test.changed", subject=("test.model", "m"), payload={"j": index})
    checkpoint_create()
    subjects = sorted(set(LedgerEntry.objects.values_list("subject_type", "subject_id")))
    return members(make_bundle(subjects))


def test_pymerkle_rebuilds_the_checkpoint_roots_from_the_bundles_entries(whole_ledger_bundle):
    files = whole_ledger_bundle
    verifier = load_verifier()
    lines = [json.loads(line) for line in files["ledger/entries.jsonl"].splitlines()]
    assert [line["seq"] for line in lines] == list(range(len(lines)))
    tree = InmemoryTree(algorithm="sha256")  # RFC 9162 leaf/node prefixes ("security" mode)
    for line in lines:
        tree.append_entry(base64.b64decode(line["canonical"]))
    checkpoint = verifier.parse_checkpoint_body(verifier.parse_note(files["ledger/checkpoint.txt"].decode()).text)
    latest_note = json.loads(files["ledger/consistency.json"])["latest_checkpoint"]
    latest = verifier.parse_checkpoint_body(verifier.parse_note(latest_note).text)
    assert tree.get_root(checkpoint.tree_size) == checkpoint.root_hash
    assert tree.get_root(latest.tree_size) == latest.root_hash


def test_pymerkle_accepts_every_inclusion_proof_in_the_bundle(whole_ledger_bundle):
    files = whole_ledger_bundle
    verifier = load_verifier()
    checkpoint = verifier.parse_checkpoint_body(verifier.parse_note(files["ledger/checkpoint.txt"].decode()).text)
    canonical = {json.loads(line)["seq"]: base64.b64decode(json.loads(line)["canonical"])
                 for line in files["ledger/entries.jsonl"].splitlines()}
    proofs = json.loads(files["ledger/proofs.json"])["proofs"]
    assert proofs
    for proof in proofs:
        leaf = verifier.leaf_hash(canonical[proof["seq"]])
        index, size = proof["leaf_index"] + 1, proof["tree_size"]  # pymerkle counts leaves from one
        rule, _ = _inclusion_path_layout(index, size)
        path = [leaf] + [base64.b64decode(node) for node in proof["hashes"]]
        verify_inclusion(leaf, checkpoint.root_hash, InclusionProof("sha256", True, size, index, rule, path),
                         index=index, size=size)
    # And pymerkle rejects a proof with one sibling changed.
    from pymerkle import InvalidProof

    proof = proofs[0]
    index, size = proof["leaf_index"] + 1, proof["tree_size"]
    rule, _ = _inclusion_path_layout(index, size)
    path = [verifier.leaf_hash(canonical[proof["seq"]])] + [bytes(32)] + \
        [base64.b64decode(node) for node in proof["hashes"][1:]]
    with pytest.raises(InvalidProof):
        verify_inclusion(path[0], checkpoint.root_hash, InclusionProof("sha256", True, size, index, rule, path))


def test_verify_py_opens_gos_signed_note_vector_and_a_real_sum_golang_org_checkpoint():
    verifier = load_verifier()
    peter = verifier.parse_vkey(GO_VKEY)
    text, signers = verifier.open_note(GO_NOTE, [peter])
    assert text.startswith("If you think cryptography") and signers == [peter]
    sumdb = verifier.parse_vkey(SUMDB_VKEY)
    text, _ = verifier.open_note(SUMDB_NOTE, [sumdb])
    body = verifier.parse_checkpoint_body(text)
    assert (body.origin, body.tree_size) == ("go.sum database tree", 6476701)
    with pytest.raises(ValueError):
        verifier.open_note(SUMDB_NOTE.replace("6476701", "6476702"), [sumdb])
    with pytest.raises(ValueError):
        verifier.open_note(GO_NOTE, [sumdb])  # signed by a key it does not know

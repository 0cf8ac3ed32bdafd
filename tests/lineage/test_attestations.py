"""Attestations: pipeline keys, submitted envelopes (kept byte for byte), refusals that store nothing,
and server envelopes checked with securesystemslib (an independent DSSE implementation)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rest_framework.test import APIClient
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

from audit import dsse
from audit.keys import active_key
from audit.models import LedgerEntry, SigningKey
from lineage import attestations as statements
from lineage.models import Attestation, AttestationSubject, LineageEdge, PipelineKey
from lineage.selectors import attestations_for_subject
from lineage.services.datasets import VersionSpec, dataset_create, dataset_version_derive, dataset_version_register
from lineage.services.keys import pipeline_key_register
from lineage.visibility import UNRESTRICTED
from tests.lineage.conftest import TEAM_OWNER, digest_of, public_pem

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(pipeline_user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(pipeline_user)
    return client


@pytest.fixture
def versions(team):  # type: ignore[no-untyped-def]
    dataset, _ = dataset_create(namespace="s3://bank", name="credit", actor="system:test", owner_team=TEAM_OWNER)
    raw, _ = dataset_version_register(dataset=dataset, spec=VersionSpec(location_uri="s3://r", content=b"raw"),
                                               actor="system:test")
    clean, _ = dataset_version_register(dataset=dataset, spec=VersionSpec(location_uri="s3://c",
                                                                                   content=b"clean"),
                                                 actor="system:test")
    return raw, clean


def _statement(subject_digest: str, dependency_digest: str | None = None) -> bytes:
    deps = [{"name": "raw", "digest": {"sha256": dependency_digest}}] if dependency_digest else []
    statement = statements.build_statement(
        subjects=[("clean.csv", subject_digest)], build_type="https://pipelines.example/clean/v1",
        external_parameters={"script": "clean.py"}, internal_parameters={}, resolved_dependencies=deps,
        builder_id="https://ci.example/runner", invocation_id="job-42")
    # Pipelines serialize however they like; we keep their bytes.
    return json.dumps(statement, indent=2).encode()


def _sign_with_securesystemslib(private_key: Ed25519PrivateKey, payload: bytes) -> bytes:
    public = SSlibKey.from_crypto(private_key.public_key(),
                                  keyid=dsse.envelope_keyid(private_key.public_key().public_bytes_raw()))
    envelope = Envelope(payload=payload, payload_type=dsse.PAYLOAD_TYPE_IN_TOTO, signatures={})
    envelope.sign(CryptoSigner(private_key, public))
    # Unusual but valid spacing, so a test can tell "stored as received" from "re-serialized".
    return json.dumps(envelope.to_dict(), indent=1, sort_keys=False).encode() + b"\n"


def _register(api: APIClient, private_key: Ed25519PrivateKey, *, raw_base64: bool = False):  # type: ignore[no-untyped-def]
    material = (base64.b64encode(private_key.public_key().public_bytes_raw()).decode() if raw_base64
                else public_pem(private_key))
    response = api.post("/api/lineage/keys/", {"public_key": material, "name": "ci"}, format="json")
    assert response.status_code == 201, response.content
    return response.data


def _submit(api: APIClient, body: bytes):  # type: ignore[no-untyped-def]
    return api.generic("POST", "/api/lineage/attestations/", body, content_type="application/json")


def _counts() -> tuple[int, int, int, int]:
    return (Attestation.objects.count(), AttestationSubject.objects.count(), LineageEdge.objects.count(),
            LedgerEntry.objects.count())


def test_pipeline_envelope_is_verified_stored_and_served_byte_for_byte(api, versions, pipeline_private_key):
    raw, clean = versions
    key = _register(api, pipeline_private_key)
    assert key["keyid"] == dsse.envelope_keyid(pipeline_private_key.public_key().public_bytes_raw())
    body = _sign_with_securesystemslib(pipeline_private_key, _statement(clean.digest, raw.digest))
    response = _submit(api, body)
    assert response.status_code == 201, response.content
    stored = api.get(f"/api/lineage/attestations/{response.data['id']}/")
    assert stored.status_code == 200
    assert stored["Content-Type"] == "application/json"
    assert stored.content == body
    entry = LedgerEntry.objects.get(action="lineage.attestation.submitted")
    assert entry.subject_id == str(response.data["id"]) and entry.payload["keyid"] == key["keyid"]
    # The dependency it names became an attested edge raw -> clean.
    edge = LineageEdge.objects.get(source=raw.node, target=clean.node)
    assert edge.attestation_id == response.data["id"]


def test_raw_base64_key_registration_works(api, versions, pipeline_private_key):
    _, clean = versions
    _register(api, pipeline_private_key, raw_base64=True)
    body = _sign_with_securesystemslib(pipeline_private_key, _statement(clean.digest))
    assert _submit(api, body).status_code == 201


def test_tampered_signature_is_refused_and_nothing_is_stored(api, versions, pipeline_private_key):
    _, clean = versions
    _register(api, pipeline_private_key)
    envelope = json.loads(_sign_with_securesystemslib(pipeline_private_key, _statement(clean.digest)))
    envelope["payload"] = base64.b64encode(_statement(clean.digest).replace(b"job-42", b"job-43")).decode()
    before = _counts()
    response = _submit(api, json.dumps(envelope).encode())
    assert response.status_code == 400 and response.data["code"] == "attestation_signature_invalid"
    assert _counts() == before


def test_unknown_key_is_refused_and_nothing_is_stored(api, versions):
    _, clean = versions
    stranger = Ed25519PrivateKey.generate()
    before = _counts()
    response = _submit(api, _sign_with_securesystemslib(stranger, _statement(clean.digest)))
    assert response.status_code == 400 and response.data["code"] == "attestation_key_unknown"
    assert _counts() == before


def test_another_accounts_key_is_unknown_to_this_account(api, versions, other_pipeline_user):
    _, clean = versions
    foreign_key = Ed25519PrivateKey.generate()
    pipeline_key_register(owner=other_pipeline_user, public_key=public_pem(foreign_key))
    before = _counts()
    response = _submit(api, _sign_with_securesystemslib(foreign_key, _statement(clean.digest)))
    assert response.status_code == 400 and response.data["code"] == "attestation_key_unknown"
    assert _counts() == before


def test_revoked_key_is_refused_and_nothing_is_stored(api, versions, pipeline_private_key):
    _, clean = versions
    key = _register(api, pipeline_private_key)
    revoked = api.post(f"/api/lineage/keys/{key['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.data["status"] == "revoked"
    assert LedgerEntry.objects.filter(action="lineage.pipeline_key.revoked").count() == 1
    before = _counts()
    response = _submit(api, _sign_with_securesystemslib(pipeline_private_key, _statement(clean.digest)))
    assert response.status_code == 400 and response.data["code"] == "attestation_key_revoked"
    assert _counts() == before


def test_subject_digest_not_registered_is_refused_and_nothing_is_stored(api, versions, pipeline_private_key):
    _register(api, pipeline_private_key)
    before = _counts()
    response = _submit(api, _sign_with_securesystemslib(pipeline_private_key, _statement(digest_of("unknown"))))
    assert response.status_code == 403 and response.data["code"] == "attestation_subject_not_writable"
    assert response.data["extra"]["unmatched_sha256"] == [digest_of("unknown")]
    # Nothing of the attestation; one refusal entry (the same as for another team's digest).
    assert _counts()[:3] == before[:3] and _counts()[3] == before[3] + 1
    refusal = LedgerEntry.objects.order_by("-seq").first()
    assert refusal.action == "lineage.attestation.submitted.refused"
    assert refusal.payload["code"] == "attestation_subject_not_writable"


@pytest.mark.parametrize(("body", "field"), [
    (b"not json", "envelope"),
    (b"[]", "envelope"),
    (b'{"payloadType": "application/vnd.in-toto+json", "signatures": []}', "payload"),
])
def test_malformed_envelopes_are_refused_naming_the_field(api, body, field):
    before = _counts()
    response = _submit(api, body)
    assert response.status_code == 400 and response.data["code"] == "attestation_malformed"
    assert response.data["extra"]["field"] == field
    assert _counts() == before


def test_wrong_payload_type_and_non_statement_payload_are_refused(api, versions, pipeline_private_key):
    _, clean = versions
    _register(api, pipeline_private_key)
    keyid = dsse.envelope_keyid(pipeline_private_key.public_key().public_bytes_raw())
    wrong_type = dsse.sign_envelope(_statement(clean.digest), payload_type="text/plain",
                                    private_key=pipeline_private_key, keyid=keyid)
    not_statement = dsse.sign_envelope(b'{"_type": "something else"}', payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
                                       private_key=pipeline_private_key, keyid=keyid)
    before = _counts()
    first = _submit(api, json.dumps(wrong_type).encode())
    assert first.status_code == 400 and first.data["code"] == "attestation_payload_type_unsupported"
    second = _submit(api, json.dumps(not_statement).encode())
    assert second.status_code == 400 and second.data["code"] == "attestation_malformed"
    assert second.data["extra"]["field"] == "_type"
    assert _counts() == before


def test_envelope_whose_dependency_would_close_a_cycle_is_refused_and_nothing_is_stored(api, versions,
                                                                                        pipeline_private_key):
    raw, clean = versions
    dataset_version_derive(parent=raw, child=clean, actor="system:test")
    _register(api, pipeline_private_key)
    before = _counts()
    # "raw was made from clean" contradicts clean -> raw... -> cycle.
    response = _submit(api, _sign_with_securesystemslib(pipeline_private_key, _statement(raw.digest, clean.digest)))
    assert response.status_code == 409 and response.data["code"] == "lineage_cycle"
    assert _counts() == before


def test_server_envelopes_verify_with_securesystemslib(api, versions):
    raw, clean = versions
    attestation = attestations_for_subject(("lineage.datasetversion", str(clean.pk)), user=UNRESTRICTED)[0]
    keys = api.get("/api/lineage/keys/").data
    server = [key for key in keys if key["kind"] == "server"]
    assert server and server[0]["keyid"] == active_key(SigningKey.Purpose.ATTESTATION).record.dsse_keyid
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    verifier = SSlibKey.from_crypto(load_pem_public_key(server[0]["public_key_pem"].encode()),
                                    keyid=server[0]["keyid"])
    served = api.get(f"/api/lineage/attestations/{attestation.pk}/").content
    envelope_dict = json.loads(served)
    assert envelope_dict["payloadType"] == "application/vnd.in-toto+json"
    assert envelope_dict["signatures"][0]["keyid"] == server[0]["keyid"]
    envelope = Envelope.from_dict(json.loads(served))
    assert set(envelope.verify([verifier], 1)) == {server[0]["keyid"]}
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"][0]["digest"] == {"sha256": clean.digest}
    # A flipped payload byte must fail the independent verifier too.
    tampered = json.loads(served)
    forged = envelope.payload.replace(clean.digest.encode(), raw.digest.encode())
    tampered["payload"] = base64.b64encode(forged).decode()
    with pytest.raises(Exception, match="threshold"):
        Envelope.from_dict(tampered).verify([verifier], 1)


def test_key_list_shows_server_and_pipeline_keys_with_status(api, pipeline_private_key):
    dataset_create(namespace="x", name="y", actor="system:test")
    active_key(SigningKey.Purpose.ATTESTATION)
    key = _register(api, pipeline_private_key)
    listed = {row["keyid"]: row for row in api.get("/api/lineage/keys/").data}
    assert listed[key["keyid"]]["owner"] == "user:pipeline-ci"
    assert listed[key["keyid"]]["status"] == "active"
    assert listed[key["keyid"]]["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert any(row["kind"] == "server" and row["status"] == "active" for row in listed.values())


def test_duplicate_and_invalid_keys_are_refused(api, pipeline_private_key):
    _register(api, pipeline_private_key)
    again = api.post("/api/lineage/keys/", {"public_key": public_pem(pipeline_private_key)}, format="json")
    assert again.status_code == 409 and again.data["code"] == "pipeline_key_exists"
    junk = api.post("/api/lineage/keys/", {"public_key": "bm90IGEga2V5"}, format="json")
    assert junk.status_code == 400 and junk.data["code"] == "pipeline_key_invalid"
    assert PipelineKey.objects.count() == 1


def test_only_the_owner_may_revoke_a_key(other_pipeline_user, pipeline_private_key, pipeline_user):
    key = pipeline_key_register(owner=pipeline_user, public_key=public_pem(pipeline_private_key))
    client = APIClient()
    client.force_authenticate(other_pipeline_user)
    response = client.post(f"/api/lineage/keys/{key.pk}/revoke/")
    assert response.status_code == 404  # another team's key does not exist for them
    key.refresh_from_db()
    assert key.revoked_at is None


def test_statement_with_a_nul_character_is_malformed_not_a_500(api, versions, pipeline_private_key):
    _, clean = versions
    _register(api, pipeline_private_key)
    payload = _statement(clean.digest).replace(b'"clean.csv"', b'"clean\\u0000.csv"')
    before = _counts()
    response = _submit(api, _sign_with_securesystemslib(pipeline_private_key, payload))
    assert response.status_code == 400 and response.data["code"] == "attestation_malformed"
    assert response.data["extra"]["field"] == "subject[0].name"
    assert _counts() == before

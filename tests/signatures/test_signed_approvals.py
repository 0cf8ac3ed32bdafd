"""Approvals signed by the approver: the statement and its nonce, passkeys and DSSE keys, the policy setting.

Each refusal is asserted with its exact status and code, and with nothing written: no decision row.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from audit import dsse
from core.errors import ServiceError
from governance import policies
from governance.models import ApprovalDecision, ApprovalPolicyChange, RequestStatus
from governance.registry.services.approvals import (
    approval_challenge_issue,
    approval_policy_set,
    effective_policy,
    model_version_submit,
)
from governance.signatures import statement as st
from governance.signatures.models import ApproverCredential, SigningChallenge
from governance.signatures.services import (
    approver_credential_revoke,
    approver_key_register,
    approver_passkey_options,
    approver_passkey_register,
    decision_signature_verify,
)
from tests.fixtures import CARD, SEED, last_entry, signed_policy
from tests.signatures.authenticator import SoftAuthenticator, b64url

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def pem(private_key: Ed25519PrivateKey) -> str:
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def register_key(user: Any) -> Ed25519PrivateKey:
    private_key = Ed25519PrivateKey.generate()
    response = client_for(user).post("/api/me/signing-credentials/", {"public_key": pem(private_key)}, format="json")
    assert response.status_code == 201, response.content
    return private_key


def statement_for(user: Any, request: Any, decision: str = "approve", comment: str = "looks fine") -> dict[str, Any]:
    response = client_for(user).post(f"/api/approval-requests/{request.pk}/statement/",
                                     {"decision": decision, "comment": comment}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def envelope(statement: str, private_key: Ed25519PrivateKey) -> dict[str, Any]:
    raw = private_key.public_key().public_bytes_raw()
    return dict(dsse.sign_envelope(statement.encode(), payload_type=st.STATEMENT_PAYLOAD_TYPE,
                                   private_key=private_key, keyid=dsse.envelope_keyid(raw)))


def decide(user: Any, request: Any, signature: dict[str, Any] | None, decision: str = "approve",
           comment: str = "looks fine") -> Any:
    body: dict[str, Any] = {"decision": decision, "comment": comment}
    if signature is not None:
        body["signature"] = signature
    return client_for(user).post(f"/api/approval-requests/{request.pk}/decisions/", body, format="json")


def refused(response: Any, status: int, code: str) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.content
    assert not ApprovalDecision.objects.exists()


# --- The policy setting ----------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["passkey", "dsse", "either"])
def test_an_unsigned_decision_under_a_signing_policy_is_refused(setting, request_under, approver):
    request = request_under(setting)
    response = decide(approver, request, None)
    refused(response, 409, "approval_signature_required")
    assert response.json()["extra"] == {"signed_approval": setting}
    assert last_entry("approval_request.approve.refused").payload["code"] == "approval_signature_required"


def test_an_unsigned_decision_is_still_taken_where_the_policy_asks_for_none(request_under, approver):
    request = request_under("none")
    assert decide(approver, request, None).status_code == 201
    assert ApprovalDecision.objects.get().signature == {}


def test_a_dsse_signature_under_a_passkey_only_policy_is_refused(request_under, approver):
    request = request_under("passkey")
    key = register_key(approver)
    issued = statement_for(approver, request)
    refused(decide(approver, request, {"method": "dsse", "envelope": envelope(issued["statement"], key)}),
            409, "approval_signature_method")


@pytest.mark.parametrize(("old", "new", "weaker"), [
    ("none", "dsse", False), ("either", "passkey", False), ("dsse", "either", True), ("passkey", "dsse", True),
    ("either", "none", True), ("passkey", "passkey", False),
])
def test_policy_changes_of_signed_approval_are_classified(old, new, weaker):
    assert ("signed_approval" in policies.weakenings({"signed_approval": old}, {"signed_approval": new})) is weaker


def test_weakening_the_signing_requirement_takes_a_second_risk_officer(risk_officer):
    signed_policy("passkey")
    change = approval_policy_set(by=risk_officer, risk_tier="high", quorum=1, required_card_fields=list(CARD),
                                 expiry_hours=48, signed_approval="none")
    assert isinstance(change, ApprovalPolicyChange)
    assert change.weakened == ["signed_approval"]


def test_a_pending_request_keeps_the_stricter_signing_requirement(request_under, risk_officer, approver):
    request = request_under("dsse")
    # Applied by the system actor (no second officer needed here): the request's snapshot still holds.
    signed_policy("none")
    assert effective_policy(request)["signed_approval"] == "dsse"
    refused(decide(approver, request, None), 409, "approval_signature_required")


# --- DSSE from a terminal --------------------------------------------------------------------

def test_a_dsse_signed_approval_is_recorded_with_everything_to_verify_it(request_under, approver):
    request = request_under("dsse")
    key = register_key(approver)
    registered = last_entry("approver_credential.registered")
    assert registered.payload["state"]["credential_id"] == dsse.envelope_keyid(key.public_key().public_bytes_raw())
    issued = statement_for(approver, request)
    fields = json.loads(issued["statement"])
    assert fields["request"] == request.pk and fields["decision"] == "approve" and fields["approver"] == "user:alice"
    assert fields["version_manifest_digest"] == request.version.manifest_digest
    assert fields["policy_digest"] == st.policy_digest(effective_policy(request))
    signed = envelope(issued["statement"], key)
    response = decide(approver, request, {"method": "dsse", "envelope": signed})
    assert response.status_code == 201, response.content
    assert response.json()["decision"]["signed_with"] == "dsse"
    entry = last_entry("approval_request.approve_recorded")
    signature = entry.payload["state"]["signature"]
    assert signature["envelope"] == signed
    assert signature["statement_sha256"] == st.challenge_for(issued["statement"].encode()).hex()
    assert registered.seq < entry.seq
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_a_signature_by_another_persons_key_is_refused(request_under, approver, approver2):
    request = request_under("dsse")
    register_key(approver)
    bobs_key = register_key(approver2)
    issued = statement_for(approver, request)
    refused(decide(approver, request, {"method": "dsse", "envelope": envelope(issued["statement"], bobs_key)}),
            400, "approval_credential_unknown")


def test_a_signature_by_an_unregistered_key_with_a_registered_keyid_is_refused(request_under, approver):
    request = request_under("dsse")
    key = register_key(approver)
    issued = statement_for(approver, request)
    forged = envelope(issued["statement"], Ed25519PrivateKey.generate())
    forged["signatures"][0]["keyid"] = dsse.envelope_keyid(key.public_key().public_bytes_raw())
    refused(decide(approver, request, {"method": "dsse", "envelope": forged}), 400, "approval_signature_invalid")


def test_a_statement_signed_for_approve_cannot_carry_a_reject(request_under, approver):
    request = request_under("dsse")
    key = register_key(approver)
    issued = statement_for(approver, request, decision="approve")
    response = decide(approver, request, {"method": "dsse", "envelope": envelope(issued["statement"], key)},
                      decision="reject", comment="not good enough")
    refused(response, 400, "approval_statement_mismatch")
    assert response.json()["extra"] == {"field": "decision"}


def test_a_statement_altered_by_the_client_is_refused(request_under, approver):
    request = request_under("dsse")
    key = register_key(approver)
    issued = statement_for(approver, request, comment="looks fine")
    altered = issued["statement"].replace("looks fine", "looks great")
    refused(decide(approver, request, {"method": "dsse", "envelope": envelope(altered, key)}, comment="looks great"),
            400, "approval_challenge_unknown")


def test_a_statement_issued_under_another_policy_is_refused(request_under, approver, risk_officer):
    request = request_under("dsse")
    key = register_key(approver)
    issued = statement_for(approver, request)
    # A stricter policy since the statement was issued: the approver signed for a policy no longer applied.
    approval_policy_set(by=SEED, risk_tier="high", quorum=1, required_card_fields=list(CARD), expiry_hours=24,
                        signed_approval="dsse")
    response = decide(approver, request, {"method": "dsse", "envelope": envelope(issued["statement"], key)})
    refused(response, 400, "approval_statement_mismatch")
    assert response.json()["extra"] == {"field": "policy_digest"}


def test_a_used_nonce_cannot_be_used_again(request_under, approver):
    request = request_under("dsse")
    key = register_key(approver)
    issued = approval_challenge_issue(request=request, by=approver, decision="approve", comment="looks fine")
    signature = {"method": "dsse", "envelope": envelope(issued.statement, key)}
    policy = effective_policy(request)
    with transaction.atomic():
        decision_signature_verify(by=approver, request=request, decision="approve", comment="looks fine",
                                  policy=policy, signature=signature)
    with pytest.raises(ServiceError) as caught:
        decision_signature_verify(by=approver, request=request, decision="approve", comment="looks fine",
                                  policy=policy, signature=signature)
    assert (caught.value.status_code, caught.value.code) == (409, "approval_challenge_used")


def test_a_replayed_signed_decision_is_refused(request_under, approver, approver2, make_version, scientist):
    request = request_under("dsse")
    key = register_key(approver)
    issued = statement_for(approver, request)
    signature = {"method": "dsse", "envelope": envelope(issued["statement"], key)}
    assert decide(approver, request, signature).status_code == 201
    # The same envelope on a new request of another version: its nonce was issued for the first one.
    other = model_version_submit(version=make_version("2.0"), by=scientist)
    response = decide(approver, other, signature)
    assert (response.status_code, response.json()["code"]) == (400, "approval_challenge_unknown")
    assert ApprovalDecision.objects.count() == 1


def test_an_expired_nonce_is_refused(request_under, approver):
    request = request_under("dsse")
    key = register_key(approver)
    issued = statement_for(approver, request)
    SigningChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    refused(decide(approver, request, {"method": "dsse", "envelope": envelope(issued["statement"], key)}),
            409, "approval_challenge_expired")


def test_a_revoked_key_no_longer_signs(request_under, approver):
    request = request_under("dsse")
    key = register_key(approver)
    approver_credential_revoke(by=approver, credential=ApproverCredential.objects.get())
    issued = statement_for(approver, request)
    refused(decide(approver, request, {"method": "dsse", "envelope": envelope(issued["statement"], key)}),
            400, "approval_credential_unknown")


def test_only_a_person_who_may_decide_gets_a_statement(request_under, scientist):
    request = request_under("dsse")
    response = client_for(scientist).post(f"/api/approval-requests/{request.pk}/statement/",
                                          {"decision": "approve", "comment": ""}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "approval_separation_of_duties")
    assert not SigningChallenge.objects.exists()


# --- Who registers a credential ----------------------------------------------------------------

def test_an_admin_cannot_register_a_key_for_an_approver(make_user, approver):
    admin = make_user("adam", "admin")
    superuser = make_user("sue")
    superuser.is_superuser = True
    for actor in (admin, superuser):
        with pytest.raises(ServiceError) as caught:
            approver_key_register(by=actor, user=approver, public_key=pem(Ed25519PrivateKey.generate()))
        assert (caught.value.status_code, caught.value.code) == (403, "approver_credential_self_only")
    assert not ApproverCredential.objects.exists()
    assert last_entry("approver_credential.register.refused").payload["code"] == "approver_credential_self_only"


def test_nobody_revokes_another_persons_key(make_user, approver, approver2):
    register_key(approver)
    with pytest.raises(ServiceError) as caught:
        approver_credential_revoke(by=approver2, credential=ApproverCredential.objects.get())
    assert caught.value.code == "approver_credential_self_only"
    assert ApproverCredential.objects.get().revoked_at is None


def test_the_api_registers_only_for_the_caller_and_lists_only_their_own(approver, approver2):
    register_key(approver)
    register_key(approver2)
    listed = client_for(approver).get("/api/me/signing-credentials/").json()
    assert [item["credential_id"] for item in listed] == list(
        ApproverCredential.objects.filter(user=approver).values_list("credential_id", flat=True))
    bobs = ApproverCredential.objects.get(user=approver2)
    response = client_for(approver).post(f"/api/me/signing-credentials/{bobs.pk}/revoke/")
    assert (response.status_code, response.json()["code"]) == (404, "approver_credential_not_found")


def test_a_key_that_is_not_ed25519_is_refused(approver):
    response = client_for(approver).post("/api/me/signing-credentials/",
                                         {"public_key": base64.b64encode(b"x" * 31).decode()}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "approver_credential_invalid")


def test_the_same_key_cannot_be_registered_twice(approver, approver2):
    key = register_key(approver)
    response = client_for(approver2).post("/api/me/signing-credentials/", {"public_key": pem(key)}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "approver_credential_exists")


# --- Passkeys (WebAuthn), with a software authenticator -------------------------------------------

def register_passkey(user: Any, authenticator: SoftAuthenticator) -> ApproverCredential:
    options = approver_passkey_options(by=user)
    return approver_passkey_register(by=user, user=user, response=authenticator.create(options))


@pytest.mark.parametrize("algorithm", [-7, -8])
def test_a_passkey_signed_approval_is_recorded(algorithm, request_under, approver):
    request = request_under("passkey")
    authenticator = SoftAuthenticator(algorithm=algorithm)
    credential = register_passkey(approver, authenticator)
    registered = last_entry("approver_credential.registered").payload["state"]
    assert (registered["kind"], registered["algorithm"], registered["attestation_format"]) == \
        ("passkey", algorithm, "none")
    assert registered["public_key"] == b64url(authenticator.cose_key())
    issued = statement_for(approver, request)
    assertion = authenticator.get(st.b64url_decode(issued["challenge"]))
    response = decide(approver, request, {"method": "passkey", "assertion": assertion})
    assert response.status_code == 201, response.content
    signature = last_entry("approval_request.approve_recorded").payload["state"]["signature"]
    assert signature["credential_id"] == credential.credential_id
    assert base64.b64decode(signature["statement"]).decode() == issued["statement"]
    assert signature["authenticator_data"] == assertion["response"]["authenticatorData"]


def test_a_passkey_assertion_from_another_origin_is_refused(request_under, approver):
    request = request_under("passkey")
    authenticator = SoftAuthenticator()
    register_passkey(approver, authenticator)
    issued = statement_for(approver, request)
    assertion = authenticator.get(st.b64url_decode(issued["challenge"]), origin="https://evil.example")
    refused(decide(approver, request, {"method": "passkey", "assertion": assertion}), 400, "approval_signature_invalid")


def test_another_persons_passkey_is_refused(request_under, approver, approver2):
    request = request_under("passkey")
    register_passkey(approver, SoftAuthenticator())
    bobs = SoftAuthenticator()
    register_passkey(approver2, bobs)
    issued = statement_for(approver, request)
    refused(decide(approver, request, {"method": "passkey", "assertion": bobs.get(st.b64url_decode(issued["challenge"]))}),
            400, "approval_credential_unknown")


def test_a_passkey_registration_answering_no_issued_challenge_is_refused(approver):
    approver_passkey_options(by=approver)
    response = SoftAuthenticator().create({"challenge": b64url(b"\x01" * 32)})
    with pytest.raises(ServiceError) as caught:
        approver_passkey_register(by=approver, user=approver, response=response)
    assert caught.value.code == "approval_challenge_unknown"
    assert not ApproverCredential.objects.exists()


def test_the_api_registers_a_passkey_for_the_caller(approver):
    client = client_for(approver)
    options = client.post("/api/me/passkeys/options/")
    assert options.status_code == 200
    body = options.json()
    assert (body["rp"]["id"], body["user"]["name"]) == ("localhost", "alice")
    assert [item["alg"] for item in body["pubKeyCredParams"]] == [-7, -8]
    authenticator = SoftAuthenticator()
    created = client.post("/api/me/passkeys/", {"response": authenticator.create(body), "label": "laptop"},
                          format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["kind"], created.json()["label"], created.json()["algorithm"]) == ("passkey", "laptop", -7)
    # The same answer again: its challenge was used.
    again = client.post("/api/me/passkeys/", {"response": authenticator.create(body)}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "approval_challenge_used")
    assert ApproverCredential.objects.filter(user=approver).count() == 1

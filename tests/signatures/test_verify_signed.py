"""verify.py checks approvals signed by the approver offline, with `cryptography` alone.

Bundles come from real decisions (passkey and DSSE) through the services. The forgeries are real
ledger entries (hash-chained, checkpointed and signed with the server's keys, which the test pins)
written with `ledger_append` in the shape the service writes: only the signature check can catch them.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.ledger import checkpoint_create, ledger_append
from governance.registry.services.approvals import approval_challenge_issue, model_version_submit
from governance.reports.selectors import bundle_plan_for_model
from governance.signatures import statement as st
from governance.signatures.models import ApproverCredential
from governance.signatures.services import approver_key_register
from tests.fixtures import last_entry, signed_policy
from tests.reports.bundle_helpers import load_verifier, make_bundle, run_verify, verdict
from tests.signatures.authenticator import SoftAuthenticator
from tests.signatures.test_signed_approvals import (
    decide,
    envelope,
    pem,
    register_key,
    register_passkey,
    statement_for,
)

pytestmark = pytest.mark.django_db

FORGED_ID = "990001"


def bundle_for(model_name: str, extra_subjects: tuple[tuple[str, str], ...] = ()) -> bytes:
    checkpoint_create()
    plan = bundle_plan_for_model(model_name=model_name)
    return make_bundle(sorted(set(plan.subjects) | set(extra_subjects)), bounded_subjects=plan.bounded)


def approve_with_dsse(approver: Any, request: Any) -> Ed25519PrivateKey:
    key = register_key(approver)
    issued = statement_for(approver, request)
    assert decide(approver, request, {"method": "dsse", "envelope": envelope(issued["statement"], key)}) \
        .status_code == 201
    return key


def forge_decision(*, like: dict[str, Any], request: Any, signature: dict[str, Any], comment: str) -> None:
    """A decision entry on `request` as the service writes one, but never through the service."""
    state = {**copy.deepcopy(like), "request": request.pk, "comment": comment, "signature": signature}
    ledger_append(actor="user:alice", action="approval_request.approve_recorded",
                  subject=("governance.approvaldecision", FORGED_ID),
                  payload={"comment": comment, "evidence": [], "before": None, "after": state, "state": state})


def test_a_dsse_signed_approval_verifies_and_is_counted(request_under, approver, tmp_path, model):
    request = request_under("dsse")
    approve_with_dsse(approver, request)
    result = run_verify(tmp_path, bundle_for(model.name), "--require-signed-approvals")
    assert result.returncode == 0, result.stdout
    assert "1 decision(s) signed by the approver" in verdict(result)
    assert "every decision signed" in verdict(result)


@pytest.mark.parametrize("algorithm", [-7, -8])
def test_a_passkey_signed_approval_verifies(algorithm, request_under, approver, tmp_path, model):
    request = request_under("passkey")
    authenticator = SoftAuthenticator(algorithm=algorithm)
    register_passkey(approver, authenticator)
    issued = statement_for(approver, request)
    assertion = authenticator.get(st.b64url_decode(issued["challenge"]))
    assert decide(approver, request, {"method": "passkey", "assertion": assertion}).status_code == 201
    result = run_verify(tmp_path, bundle_for(model.name), "--require-signed-approvals")
    assert result.returncode == 0, result.stdout
    assert "1 decision(s) signed by the approver" in verdict(result)


def test_an_unsigned_decision_fails_when_signed_approvals_are_required(request_under, approver, tmp_path, model):
    request = request_under("none")
    assert decide(approver, request, None).status_code == 201
    bundle = bundle_for(model.name)
    assert run_verify(tmp_path, bundle).returncode == 0
    result = run_verify(tmp_path, bundle, "--require-signed-approvals")
    assert result.returncode == 1
    assert "FAIL [approval] decision" in verdict(result)
    assert "not signed by the approver (--require-signed-approvals)" in verdict(result)


def test_an_unsigned_decision_recorded_under_a_signing_policy_fails_without_the_option(
        request_under, approver, tmp_path, model, make_version, scientist):
    request = request_under("dsse")
    approve_with_dsse(approver, request)
    pending = model_version_submit(version=make_version("2.0"), by=scientist)
    like = last_entry("approval_request.approve_recorded").payload["state"]
    forge_decision(like=like, request=pending, signature={}, comment="looks fine")
    result = run_verify(tmp_path, bundle_for(model.name, (("governance.approvaldecision", FORGED_ID),)))
    assert result.returncode == 1
    assert f"decision {FORGED_ID}" in verdict(result) and "its policy requires dsse" in verdict(result)


def test_a_forged_dsse_signature_fails(request_under, approver, tmp_path, model, make_version, scientist):
    request = request_under("dsse")
    key = approve_with_dsse(approver, request)
    pending = model_version_submit(version=make_version("2.0"), by=scientist)
    issued = approval_challenge_issue(request=pending, by=approver, decision="approve", comment="looks fine")
    signed = envelope(issued.statement, key)
    sig = bytearray(st.b64url_decode(signed["signatures"][0]["sig"].replace("+", "-").replace("/", "_")))
    sig[5] ^= 0x01
    signed["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    like = last_entry("approval_request.approve_recorded").payload["state"]
    forged = {**like["signature"], "envelope": signed,
              "statement_sha256": st.challenge_for(issued.statement.encode()).hex()}
    forge_decision(like=like, request=pending, signature=forged, comment="looks fine")
    result = run_verify(tmp_path, bundle_for(model.name, (("governance.approvaldecision", FORGED_ID),)))
    assert result.returncode == 1
    assert f"decision {FORGED_ID}" in verdict(result)
    assert "the DSSE signature does not verify with the registered key" in verdict(result)


def test_a_statement_altered_after_signing_fails(request_under, approver, tmp_path, model, make_version, scientist):
    """The operator rewrites the comment of a validly signed decision: the statement no longer says it."""
    request = request_under("dsse")
    key = approve_with_dsse(approver, request)
    pending = model_version_submit(version=make_version("2.0"), by=scientist)
    issued = approval_challenge_issue(request=pending, by=approver, decision="approve", comment="looks fine")
    like = last_entry("approval_request.approve_recorded").payload["state"]
    signature = {**like["signature"], "envelope": envelope(issued.statement, key),
                 "statement_sha256": st.challenge_for(issued.statement.encode()).hex()}
    forge_decision(like=like, request=pending, signature=signature, comment="approved without reservations")
    result = run_verify(tmp_path, bundle_for(model.name, (("governance.approvaldecision", FORGED_ID),)))
    assert result.returncode == 1
    assert "the signed statement's comment differ(s) from the decision" in verdict(result)


def test_a_credential_registered_after_the_decision_fails(request_under, approver, tmp_path, model, make_version,
                                                          scientist):
    """A back-dated key: the decision entry claims a signature by a key registered only later."""
    request = request_under("dsse")
    approve_with_dsse(approver, request)
    pending = model_version_submit(version=make_version("2.0"), by=scientist)
    issued = approval_challenge_issue(request=pending, by=approver, decision="approve", comment="looks fine")
    late_key = Ed25519PrivateKey.generate()
    like = last_entry("approval_request.approve_recorded").payload["state"]
    signed = envelope(issued.statement, late_key)
    signature = {"method": "dsse", "credential_id": signed["signatures"][0]["keyid"], "envelope": signed,
                 "statement_sha256": st.challenge_for(issued.statement.encode()).hex()}
    forge_decision(like=like, request=pending, signature=signature, comment="looks fine")
    approver_key_register(by=approver, user=approver, public_key=pem(late_key))
    late = ApproverCredential.objects.order_by("pk").last()
    result = run_verify(tmp_path, bundle_for(model.name, (("governance.approvaldecision", FORGED_ID),)))
    assert result.returncode == 1
    registered_seq = last_entry("approver_credential.registered").seq
    assert late is not None and late.credential_id == signature["credential_id"]
    assert f"its credential was registered at seq {registered_seq}, after the decision" in verdict(result)


def test_a_passkey_assertion_is_checked_byte_by_byte():
    """verify.py's own WebAuthn check, on an assertion from the software authenticator."""
    verifier = load_verifier()
    authenticator = SoftAuthenticator()
    statement = b'{"type":"x"}'
    assertion = authenticator.get(st.challenge_for(statement))["response"]
    parts = {name: st.b64url_decode(assertion[key]) for name, key in (
        ("authenticator_data", "authenticatorData"), ("client_data_json", "clientDataJSON"),
        ("signature", "signature"))}
    check = dict(rp_id="localhost", origin="http://localhost:8000", challenge=st.challenge_for(statement))
    verifier.verify_webauthn_assertion(authenticator.cose_key(), **check, **parts)
    for change, words in (
            ({"origin": "https://evil.example"}, "origin"), ({"rp_id": "evil.example"}, "rpIdHash"),
            ({"challenge": bytes(32)}, "challenge")):
        with pytest.raises(ValueError, match=words):
            verifier.verify_webauthn_assertion(authenticator.cose_key(), **{**check, **change}, **parts)
    flipped = bytearray(parts["authenticator_data"])
    flipped[-1] ^= 1
    with pytest.raises(ValueError, match="does not verify"):
        verifier.verify_webauthn_assertion(authenticator.cose_key(), **check,
                                           **{**parts, "authenticator_data": bytes(flipped)})


def test_an_unsigned_decision_after_the_policy_was_strengthened_fails(request_under, approver, tmp_path, model,
                                                                     make_version, scientist):
    """Submitted under "none", decided after the tier's policy asked for DSSE: the policy in force counts too."""
    request = request_under("none")
    assert decide(approver, request, None).status_code == 201
    pending = model_version_submit(version=make_version("2.0"), by=scientist)
    signed_policy("dsse")
    like = last_entry("approval_request.approve_recorded").payload["state"]
    forge_decision(like=like, request=pending, signature={}, comment="looks fine")
    result = run_verify(tmp_path, bundle_for(model.name, (("governance.approvaldecision", FORGED_ID),)))
    assert result.returncode == 1
    assert f"decision {FORGED_ID}" in verdict(result) and "not signed by the approver (its policy requires dsse)" \
        in verdict(result)

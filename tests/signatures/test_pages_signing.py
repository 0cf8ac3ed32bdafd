"""The pages: the decide form signs with a passkey (the assertion comes back in its `signature` field),
and the signing page lists one's own credentials only."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from governance.models import ApprovalDecision
from governance.signatures import statement as st
from tests.signatures.authenticator import SoftAuthenticator
from tests.signatures.test_signed_approvals import register_key, register_passkey, statement_for

pytestmark = pytest.mark.django_db


def browser_for(user):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_the_decide_form_offers_only_what_the_policy_accepts(request_under, approver, model):
    request_under("passkey")
    body = browser_for(approver).get(f"/models/{model.name}/").content.decode()
    assert "Sign with passkey and record" in body and "Record decision</button>" not in body
    assert 'data-signed-approval="passkey"' in body and "js/passkeys.js" in body


def test_the_decide_form_records_a_passkey_signed_decision(request_under, approver, model):
    request = request_under("passkey")
    authenticator = SoftAuthenticator()
    register_passkey(approver, authenticator)
    issued = statement_for(approver, request, comment="fine by me")
    assertion = authenticator.get(st.b64url_decode(issued["challenge"]))
    response = browser_for(approver).post(f"/models/{model.name}/requests/{request.pk}/decide/", {
        "decision": "approve", "comment": "fine by me",
        "signature": json.dumps({"method": "passkey", "assertion": assertion})}, follow=True)
    assert "Your decision (approve)" in response.content.decode()
    assert ApprovalDecision.objects.get().signature["method"] == "passkey"


def test_the_decide_form_shows_the_refusal_of_an_unsigned_decision(request_under, approver, model):
    request = request_under("either")
    response = browser_for(approver).post(f"/models/{model.name}/requests/{request.pk}/decide/",
                                          {"decision": "approve", "comment": "ok"}, follow=True)
    assert "[approval_signature_required]" in response.content.decode()
    assert not ApprovalDecision.objects.exists()


def test_the_signing_page_lists_ones_own_credentials_only(approver, approver2):
    register_key(approver)
    register_key(approver2)
    body = browser_for(approver).get("/me/signing/").content.decode()
    mine = approver.approver_credentials.get().credential_id
    theirs = approver2.approver_credentials.get().credential_id
    assert mine in body and theirs not in body


def test_the_decide_form_records_a_pasted_dsse_envelope(request_under, approver, model):
    from tests.signatures.test_signed_approvals import envelope

    request = request_under("dsse")
    key = register_key(approver)
    body = browser_for(approver).get(f"/models/{model.name}/").content.decode()
    assert "Sign with passkey" not in body and 'name="dsse_envelope"' in body
    issued = statement_for(approver, request, comment="signed in a terminal")
    response = browser_for(approver).post(f"/models/{model.name}/requests/{request.pk}/decide/", {
        "decision": "approve", "comment": "signed in a terminal",
        "dsse_envelope": json.dumps(envelope(issued["statement"], key))}, follow=True)
    assert "Your decision (approve)" in response.content.decode()
    assert ApprovalDecision.objects.get().signature["method"] == "dsse"


def test_the_admin_form_keeps_the_signing_setting_when_the_post_leaves_it_out(risk_officer):
    from governance.models import ApprovalPolicy
    from tests.fixtures import CARD, signed_policy

    policy = signed_policy("dsse")
    form = {"quorum": 1, "expiry_hours": 48, "required_card_fields": list(CARD), "fairness_metric_floors": "{}",
            "fairness_min_group_size": "", "fairness_audit_max_age_days": ""}
    page = browser_for(risk_officer).post(f"/admin/governance/approvalpolicy/{policy.pk}/change/", form)
    assert page.status_code == 302
    assert ApprovalPolicy.objects.get(pk=policy.pk).signed_approval == "dsse"
    page = browser_for(risk_officer).post(f"/admin/governance/approvalpolicy/{policy.pk}/change/",
                                          {**form, "signed_approval": "none"})
    assert page.url == "/admin/governance/approvalpolicychange/"  # a weakening: a second officer decides
    assert ApprovalPolicy.objects.get(pk=policy.pk).signed_approval == "dsse"

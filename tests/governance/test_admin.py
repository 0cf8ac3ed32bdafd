"""The admin goes through the services: comments required, queue, history verification, read-only ledger."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.ledger import checkpoint_create
from audit.models import LedgerEntry
from governance.models import ApprovalDecision, RegisteredModel, RequestStatus, ServiceToken
from governance.registry.services.access import hash_token, role_grant
from governance.registry.services.approvals import approval_decide, model_version_submit
from governance.registry.services.registry import model_register
from tests.fixtures import last_entry

pytestmark = pytest.mark.django_db

QUEUE = "/admin/governance/approvalrequest/queue/"


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def decide_url(request_id: int) -> str:
    return f"/admin/governance/approvalrequest/{request_id}/decide/"


# --- Approval queue and decisions ------------------------------------------------------------

def test_queue_lists_requests_for_approver_but_not_own(pending, approver, make_user, team, make_version):
    response = login(approver).get(QUEUE)
    assert response.status_code == 200
    assert list(response.context["queue"]) == [pending]
    submitter_approver = make_user("sam", "data_scientist", "risk_officer", teams=(team,))
    own = model_version_submit(version=make_version("9.0"), by=submitter_approver)
    queue = list(login(submitter_approver).get(QUEUE).context["queue"])
    assert own not in queue and pending in queue


def test_queue_hides_already_decided(pending, approver):
    approval_decide(request=pending, by=approver, decision="approve", comment="ok")
    assert list(login(approver).get(QUEUE).context["queue"]) == []


def test_admin_decision_goes_through_service(pending, approver):
    client = login(approver)
    response = client.post(decide_url(pending.pk), {"decision": "approve", "comment": "looks right"})
    assert response.status_code == 302
    decision = ApprovalDecision.objects.get()
    assert decision.approver == approver and decision.comment == "looks right"
    entry = last_entry("approval_request.approve_recorded")
    assert entry.actor == "user:alice" and entry.payload["comment"] == "looks right"


def test_admin_rejection_without_a_reason_shows_the_services_code(pending, approver):
    response = login(approver).post(decide_url(pending.pk), {"decision": "reject", "comment": ""})
    assert response.status_code == 200
    assert response.context["form"].errors == {"__all__": ["Say why in the comment (at least 3 characters). "
                                                           "[reason_required]"]}
    assert not ApprovalDecision.objects.exists()


def test_admin_action_asks_for_a_comment_then_decides_through_the_service(pending, approver):
    client = login(approver)
    changelist = "/admin/governance/approvalrequest/"
    request = pending
    # First step: the intermediate page asks for a comment and decides nothing yet.
    page = client.post(changelist, {"action": "approve_selected", "_selected_action": [request.pk]})
    assert page.status_code == 200 and "form" in page.context
    assert not ApprovalDecision.objects.exists()
    # Second step, with the comment: recorded (the submitter's refusal: test_separation_of_duties).
    client.post(changelist, {"action": "reject_selected", "_selected_action": [request.pk],
                             "apply": "1", "comment": "needs a bias audit"}, follow=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.REJECTED
    assert last_entry("model_version.rejected").payload["comment"] == "needs a bias audit"


def test_admin_cannot_change_or_delete_requests(pending, make_user):
    root = get_user_model().objects.create_superuser("root", "root@example.org", "x" * 16)
    client = login(root)
    assert client.post(f"/admin/governance/approvalrequest/{pending.pk}/change/", {"status": "approved"}
                       ).status_code == 403
    assert client.post(f"/admin/governance/approvalrequest/{pending.pk}/delete/", {"post": "yes"}).status_code == 403
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING


# --- Registry through the admin ------------------------------------------------------------------

def test_admin_add_model_calls_service(scientist, team):
    response = login(scientist).post("/admin/governance/registeredmodel/add/", {
        "name": "churn", "team": team.pk, "risk_tier": "limited", "description": "d", "intended_purpose": "p",
        "affected_groups": "customers", "contacts": "owner@example.org"})
    assert response.status_code == 302, response.content[:500]
    model = RegisteredModel.objects.get(name="churn")
    assert model.created_by == scientist and model.contacts == ["owner@example.org"]
    assert last_entry("model.registered").actor == "user:dana"


def test_admin_refused_write_shows_error_and_writes_nothing(scientist, team, model):
    size = LedgerEntry.objects.count()
    client = login(scientist)
    response = client.post("/admin/governance/registeredmodel/add/", {
        "name": "x-model", "team": team.pk, "risk_tier": "limited", "contacts": "", "affected_groups": ""},
        follow=False)
    assert response.status_code == 302
    before = LedgerEntry.objects.count()
    assert before > size
    # A version with a bad manifest: the service refuses, the admin shows the code.
    response = client.post("/admin/governance/modelversion/add/", {
        "model": model.pk, "label": "v1", "artifact_uri": "s3://x", "manifest": '{"a": "nothex"}',
        "training_metrics": "{}"}, follow=True)
    assert any("manifest_invalid" in str(m) for m in response.context["messages"])
    assert LedgerEntry.objects.count() == before


def test_admin_other_team_model_invisible(make_user, other_team, model):
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    client = login(outsider)
    listing = client.get("/admin/governance/registeredmodel/")
    assert listing.status_code == 200 and model.name not in listing.content.decode()
    response = client.get(f"/admin/governance/registeredmodel/{model.pk}/change/")
    assert response.status_code == 302  # "does not exist" redirect, never the data
    assert client.get(f"/admin/governance/registeredmodel/{model.pk}/history/").status_code == 404


# --- History pages -------------------------------------------------------------------------------

def test_history_page_verifies_entries(model, scientist):
    checkpoint_create()
    response = login(scientist).get(f"/admin/governance/registeredmodel/{model.pk}/history/")
    assert response.status_code == 200
    history = response.context["history"]
    assert history.entries and history.all_ok
    assert all(item.included for item in history.entries)
    assert {item.entry.action for item in history.entries} >= {"model.registered", "permission.granted"}
    assert "All" in response.content.decode() and "verify" in response.content.decode()


def test_history_flags_entries_that_do_not_verify(model, scientist):
    from audit.models import Checkpoint
    from governance.history import _checked_root, verify_entry
    checkpoint_create()
    checkpoint = Checkpoint.objects.order_by("-tree_size").first()
    root = _checked_root(checkpoint)
    entry = LedgerEntry.objects.filter(subject_type="governance.registeredmodel").order_by("seq").first()
    assert verify_entry(entry, checkpoint=checkpoint, root=root).ok
    tampered = LedgerEntry.objects.get(seq=entry.seq)
    tampered.canonical = bytes(tampered.canonical).replace(b"credit-default-scorer", b"credit-default-scorex")
    result = verify_entry(tampered, checkpoint=checkpoint, root=root)
    assert not result.ok and not result.hash_ok and result.included is False
    wrong_root = verify_entry(entry, checkpoint=checkpoint, root=bytes(32))
    assert wrong_root.included is False and not wrong_root.ok
    later = model_register(by=scientist, name="later-model", team=model.team, risk_tier="minimal")
    fresh = LedgerEntry.objects.filter(subject_id=str(later.pk), subject_type="governance.registeredmodel").first()
    assert verify_entry(fresh, checkpoint=checkpoint, root=root).included is None


# --- Ledger admin is read-only ----------------------------------------------------------------

def test_ledger_admin_read_only_for_superuser(model):
    root = get_user_model().objects.create_superuser("root", "root@example.org", "x" * 16)
    client = login(root)
    entry = LedgerEntry.objects.order_by("seq").first()
    assert client.get("/admin/audit/ledgerentry/").status_code == 200
    assert client.get("/admin/audit/ledgerentry/add/").status_code == 403
    page = client.get(f"/admin/audit/ledgerentry/{entry.seq}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.post(f"/admin/audit/ledgerentry/{entry.seq}/change/", {"actor": "x"}).status_code == 403
    assert client.post(f"/admin/audit/ledgerentry/{entry.seq}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/audit/checkpoint/add/").status_code == 403
    assert client.get("/admin/audit/signingkey/add/").status_code == 403
    assert client.get("/admin/audit/witnesscosignature/").status_code == 200
    assert client.get("/admin/audit/witnesscosignature/add/").status_code == 403


def test_ledger_admin_visible_to_auditor_not_scientist(auditor, scientist):
    assert login(auditor).get("/admin/audit/ledgerentry/").status_code == 200
    assert login(scientist).get("/admin/audit/ledgerentry/").status_code == 403


# --- Service accounts ---------------------------------------------------------------------------

def test_admin_creates_service_account_and_shows_token_once(model):
    root = get_user_model().objects.create_superuser("root", "root@example.org", "x" * 16)
    response = login(root).post("/admin/governance/serviceaccount/add/", {
        "name": "nightly", "description": "", "role": "data_scientist", "models": [model.pk], "scope": "write"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    token = response.context["token"]
    assert ServiceToken.objects.get(account__name="nightly").token_hash == hash_token(token)
    assert last_entry("service_account.created").actor == "user:root"


# --- Sign-ins ---------------------------------------------------------------------------------

def test_sign_ins_and_failures_are_ledger_entries_and_rate_limited(scientist):
    client = Client()
    assert client.post("/admin/login/", {"username": "dana", "password": "wrong-password"}).status_code == 200
    failed = last_entry("auth.sign_in_failed")
    assert failed.payload["username"] == "dana" and failed.actor == "system:auth"
    client.post("/admin/login/", {"username": "not-a-user", "password": "x"})
    unknown = last_entry("auth.sign_in_failed")
    assert unknown.payload["username"] is None and unknown.subject_id == "unknown"
    assert "not-a-user" not in json.dumps(unknown.payload)
    response = client.post("/admin/login/?next=/admin/", {"username": "dana", "password": "test-pass-123456"})
    assert response.status_code == 302
    assert last_entry("auth.signed_in").actor == "user:dana"
    for _ in range(4):
        assert Client().post("/admin/login/", {"username": "dana", "password": "wrong"}).status_code == 200
    assert Client().post("/admin/login/", {"username": "dana", "password": "wrong"}).status_code == 429
    count = LedgerEntry.objects.filter(action="auth.sign_in_failed").count()
    blocked = Client().post("/admin/login/", {"username": "dana", "password": "test-pass-123456"})
    assert blocked.status_code == 429 and b"Too many failed sign-ins" in blocked.content
    assert LedgerEntry.objects.filter(action="auth.sign_in_failed").count() == count


def test_role_grants_are_ledger_entries(make_user):
    user = make_user("gina")
    role_grant(user=user, role="approver", by="system:test")
    entry = last_entry("role.granted")
    assert entry.actor == "system:test" and entry.payload == {"role": "approver", "user": "gina"}


def test_object_permission_page_for_admins_only_and_recorded(model, scientist, make_user):
    reviewer = make_user("mo", "approver")
    assert login(scientist).get(f"/admin/governance/registeredmodel/{model.pk}/permissions/").status_code == 403
    root = get_user_model().objects.create_superuser("root", "root@example.org", "x" * 16)
    client = login(root)
    url = f"/admin/governance/registeredmodel/{model.pk}/permissions/user-manage/{reviewer.pk}/"
    response = client.post(url, {"permissions": ["approve_registeredmodel"]})
    assert response.status_code == 302
    entry = last_entry("permission.granted")
    assert entry.actor == "user:root" and entry.payload == {"permission": "governance.approve_registeredmodel",
                                                            "to": "user:mo"}
    assert (entry.subject_type, entry.subject_id) == ("governance.registeredmodel", str(model.pk))


def test_admin_edit_model_and_draft_card_go_through_services(model, version, scientist):
    client = login(scientist)
    response = client.post(f"/admin/governance/registeredmodel/{model.pk}/change/", {
        "risk_tier": "high", "description": "new description", "intended_purpose": "p",
        "affected_groups": "applicants\nco-signers", "contacts": "risk@example.org"})
    assert response.status_code == 302, response.content[:400]
    entry = last_entry("model.updated")
    assert entry.actor == "user:dana" and entry.payload["after"]["description"] == "new description"
    assert entry.payload["after"]["affected_groups"] == ["applicants", "co-signers"]
    response = client.post(f"/admin/governance/modelversion/{version.pk}/change/", {
        "framework": "xgboost", "intended_use": "u", "limitations": "l", "evaluation_data": "e",
        "ethical_considerations": "c"})
    assert response.status_code == 302, response.content[:400]
    entry = last_entry("model_version.card_updated")
    assert entry.payload["after"]["framework"] == "xgboost" and entry.actor == "user:dana"

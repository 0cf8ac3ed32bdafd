"""Policies belong to risk officers, weakening takes two of them, lowering a tier takes two people,
and a decision applies the stricter of the request's snapshot and the policy in force (issue 14, class 2)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from audit.models import LedgerEntry
from core.actor import acting_as
from core.errors import ServiceError
from governance.models import ApprovalPolicy, ApprovalPolicyChange, RegisteredModel, RiskTierChange
from governance.registry.services.approvals import (
    approval_decide,
    approval_policy_change_approve,
    approval_policy_change_reject,
    approval_policy_set,
    model_version_submit,
)
from governance.registry.services.registry import model_update, risk_tier_lower_confirm, risk_tier_lower_request
from tests.fixtures import CARD, SEED, last_entry

pytestmark = pytest.mark.django_db

HIGH = {"risk_tier": "high", "quorum": 2, "required_roles": ["risk_officer"], "required_card_fields": list(CARD),
        "expiry_hours": 48}


def refusal(call, *args, **kwargs) -> ServiceError:  # type: ignore[no-untyped-def]
    with pytest.raises(ServiceError) as error:
        call(*args, **kwargs)
    return error.value


@pytest.fixture
def officer2(make_user):  # type: ignore[no-untyped-def]
    return make_user("rolf", "risk_officer")


def test_admin_role_holds_no_policy_write_permission(make_user):
    admin = make_user("ada", "admin")
    assert admin.has_perm("governance.view_approvalpolicy")
    assert not admin.has_perm("governance.change_approvalpolicy")
    assert not admin.has_perm("governance.add_approvalpolicy")
    codenames = set(Group.objects.get(name="admin").permissions.values_list("codename", flat=True))
    assert not codenames & {"add_approvalpolicy", "change_approvalpolicy", "delete_approvalpolicy",
                            "change_approvalpolicychange", "add_risktierchange", "change_risktierchange"}


@pytest.mark.parametrize("role", ["admin", "data_scientist", "approver"])
def test_only_risk_officers_set_policies_and_the_refusal_is_recorded(make_user, policy, role):
    user = make_user(f"user-{role}", role)
    error = refusal(approval_policy_set, by=user, **{**HIGH, "quorum": 1, "required_roles": []})
    assert (error.status_code, error.code) == (403, "policy_owned_by_risk_officers")
    assert ApprovalPolicy.objects.get(risk_tier="high").quorum == 2
    entry = last_entry("approval_policy.set.refused")
    assert (entry.actor, entry.payload["code"], entry.payload["attempt"]["quorum"]) == (
        f"user:user-{role}", "policy_owned_by_risk_officers", 1)


def test_superuser_outside_the_risk_officer_role_cannot_set_policies(make_user, policy):
    root = make_user("root")
    root.is_superuser = True
    root.save()
    assert refusal(approval_policy_set, by=root, **{**HIGH, "quorum": 5}).code == "policy_owned_by_risk_officers"


def test_strengthening_applies_at_once(risk_officer, policy):
    saved = approval_policy_set(by=risk_officer, **{**HIGH, "quorum": 3, "fairness_audit_max_age_days": 30,
                                                    "fairness_metric_floors": {"impact_ratio": {"min": 0.8}}})
    assert isinstance(saved, ApprovalPolicy)
    assert (saved.quorum, saved.fairness_metric_floors) == (3, {"impact_ratio": {"min": 0.8}})
    assert last_entry("approval_policy.updated").actor == "user:rita"
    assert not ApprovalPolicyChange.objects.exists()


def test_weakening_takes_a_second_risk_officer(risk_officer, officer2, policy):
    change = approval_policy_set(by=risk_officer, **{**HIGH, "quorum": 1, "required_roles": []},
                                 comment="quarter end")
    assert isinstance(change, ApprovalPolicyChange)
    assert (change.status, change.weakened) == ("pending", ["quorum", "required_roles"])
    assert ApprovalPolicy.objects.get(risk_tier="high").quorum == 2
    assert last_entry("approval_policy.change_requested").actor == "user:rita"

    error = refusal(approval_policy_change_approve, change=change, by=risk_officer)
    assert (error.status_code, error.code) == (403, "policy_change_same_officer")
    entry = last_entry("approval_policy.change_approve.refused")
    assert (entry.actor, entry.payload["code"]) == ("user:rita", "policy_change_same_officer")
    assert ApprovalPolicy.objects.get(risk_tier="high").quorum == 2

    policy = approval_policy_change_approve(change=change, by=officer2, comment="agreed")
    assert (policy.quorum, policy.required_roles) == (1, [])
    assert last_entry("approval_policy.change_approved").actor == "user:rolf"
    updated = last_entry("approval_policy.updated")
    assert (updated.actor, updated.payload["requested_by"]) == ("user:rolf", "user:rita")
    assert refusal(approval_policy_change_approve, change=change, by=officer2).code == "policy_change_not_pending"


def test_a_model_policy_weaker_than_its_tier_default_is_a_weakening(risk_officer, model, policy):
    change = approval_policy_set(by=risk_officer, model=model, quorum=1, required_card_fields=list(CARD))
    assert isinstance(change, ApprovalPolicyChange)
    assert change.weakened == ["quorum", "required_roles", "expiry_hours"]
    assert not ApprovalPolicy.objects.filter(model=model).exists()


def test_a_stale_weakening_cannot_be_approved(risk_officer, officer2, policy):
    change = approval_policy_set(by=risk_officer, **{**HIGH, "quorum": 1, "required_roles": []})
    approval_policy_set(by=officer2, **{**HIGH, "quorum": 3})  # strengthened meanwhile
    assert refusal(approval_policy_change_approve, change=change, by=officer2).code == "policy_change_stale"
    assert ApprovalPolicy.objects.get(risk_tier="high").quorum == 3


def test_the_asking_officer_may_withdraw_a_weakening(risk_officer, policy):
    change = approval_policy_set(by=risk_officer, **{**HIGH, "quorum": 1, "required_roles": []})
    approval_policy_change_reject(change=change, by=risk_officer, comment="withdrawn")
    change.refresh_from_db()
    assert (change.status, change.decided_by_id) == ("rejected", risk_officer.pk)
    assert ApprovalPolicy.objects.get(risk_tier="high").quorum == 2


# --- Risk tiers -----------------------------------------------------------------------------------

def test_raising_a_tier_stays_a_writers_call(scientist, model):
    with acting_as(SEED):
        RegisteredModel.objects.filter(pk=model.pk).update(risk_tier="limited")
    model.refresh_from_db()
    assert model_update(model=model, by=scientist, risk_tier="high").risk_tier == "high"
    assert last_entry("model.updated").actor == "user:dana"


def test_a_data_scientist_cannot_lower_a_tier_and_the_attempt_is_recorded(scientist, model):
    error = refusal(model_update, model=model, by=scientist, risk_tier="minimal")
    assert (error.status_code, error.code) == (403, "risk_tier_lowering_two_person")
    model.refresh_from_db()
    assert model.risk_tier == "high"
    entry = last_entry("model.update.refused")
    assert (entry.actor, entry.payload["attempt"], entry.payload["code"]) == (
        "user:dana", {"risk_tier": "minimal"}, "risk_tier_lowering_two_person")



def test_lowering_takes_a_risk_officer_and_a_second_person(scientist, model, risk_officer, officer2, approver):
    error = refusal(risk_tier_lower_request, model=model, by=scientist, risk_tier="minimal", reason="no longer used")
    assert error.code == "risk_tier_lowering_two_person"
    assert last_entry("risk_tier_change.request.refused").actor == "user:dana"

    change = risk_tier_lower_request(model=model, by=risk_officer, risk_tier="limited", reason="Scope reduced")
    assert last_entry("risk_tier_change.requested").actor == "user:rita"
    model.refresh_from_db()
    assert model.risk_tier == "high"

    error = refusal(risk_tier_lower_confirm, change=change, by=risk_officer)
    assert (error.status_code, error.code) == (403, "risk_tier_change_same_person")
    assert last_entry("risk_tier_change.confirm.refused").payload["code"] == "risk_tier_change_same_person"
    error = refusal(risk_tier_lower_confirm, change=change, by=scientist)
    assert error.code == "risk_tier_lowering_two_person"

    risk_tier_lower_confirm(change=change, by=approver, comment="agreed")
    model.refresh_from_db()
    assert model.risk_tier == "limited"
    lowered = last_entry("model.risk_tier_lowered")
    assert (lowered.actor, lowered.payload["requested_by"]) == ("user:alice", "user:rita")
    assert last_entry("risk_tier_change.confirmed").actor == "user:alice"


def test_no_lowering_while_a_request_is_pending(pending, model, risk_officer, officer2):
    error = refusal(risk_tier_lower_request, model=model, by=risk_officer, risk_tier="minimal", reason="cheaper")
    assert (error.status_code, error.code) == (409, "risk_tier_approval_pending")
    assert not RiskTierChange.objects.exists()
    assert last_entry("risk_tier_change.request.refused").payload["code"] == "risk_tier_approval_pending"


def test_confirmation_is_refused_once_a_request_is_pending(make_version, model, scientist, risk_officer, officer2,
                                                          policy):
    change = risk_tier_lower_request(model=model, by=risk_officer, risk_tier="minimal", reason="Scope reduced")
    model_version_submit(version=make_version("2.0.0"), by=scientist)
    assert refusal(risk_tier_lower_confirm, change=change, by=officer2).code == "risk_tier_approval_pending"
    model.refresh_from_db()
    assert model.risk_tier == "high"


# --- The stricter of the snapshot and the policy in force -------------------------------------------

def test_a_decision_applies_the_stricter_of_snapshot_and_current_policy(
        scientist, model, version, approver, approver2, risk_officer, officer2, make_user):
    approval_policy_set(by=SEED, risk_tier="limited", quorum=1, expiry_hours=48)
    approval_policy_set(by=SEED, **HIGH)
    # Submitted while the model was "limited" (quorum 1, no required role).
    with acting_as(SEED):
        RegisteredModel.objects.filter(pk=model.pk).update(risk_tier="limited")
    request = model_version_submit(version=version, by=scientist)
    assert request.policy_snapshot["quorum"] == 1
    with acting_as(SEED):
        RegisteredModel.objects.filter(pk=model.pk).update(risk_tier="high")
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    request.refresh_from_db()
    assert request.status == "pending"  # the high tier now applies: quorum 2 with a risk officer
    approval_decide(request=request, by=approver2, decision="approve", comment="ok")
    request.refresh_from_db()
    assert request.status == "pending"  # still no risk officer
    approval_decide(request=request, by=risk_officer, decision="approve", comment="ok")
    request.refresh_from_db()
    assert request.status == "approved"
    applied = last_entry("approval_request.approved").payload["policy"]
    assert (applied["quorum"], applied["required_roles"], applied["risk_tier"]) == (2, ["risk_officer"], "high")


def test_weakening_the_policy_after_submitting_does_not_lower_the_bar(scientist, version, approver, risk_officer,
                                                                       officer2, policy):
    request = model_version_submit(version=version, by=scientist)
    change = approval_policy_set(by=risk_officer, **{**HIGH, "quorum": 1, "required_roles": []})
    approval_policy_change_approve(change=change, by=officer2)
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    request.refresh_from_db()
    assert request.status == "pending"
    assert LedgerEntry.objects.filter(action="approval_request.approved").count() == 0

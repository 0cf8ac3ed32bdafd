"""Service rules: registry, decisions, quorum and roles, evidence, expiry, deployments, ledger entries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import NotFound, ServiceError
from governance import evidence
from governance.evidence import EvidenceResult
from governance.models import (
    ApprovalDecision,
    ApprovalRequest,
    Deployment,
    ModelVersion,
    RequestStatus,
    VersionStatus,
)
from governance.registry.services.access import approver_scope_grant
from governance.registry.services.approvals import (
    approval_decide,
    approval_expire_due,
    approval_policy_set,
    approval_withdraw,
    model_version_submit,
    quorum_state,
)
from governance.registry.services.deployments import deployment_record, deployment_rollback
from governance.registry.services.registry import (
    model_register,
    model_version_deprecate,
    model_version_register,
    model_version_retire,
)
from lineage import manifests
from tests.fixtures import CARD, MANIFEST, entries, last_entry
from tests.lineage.test_manifests import REJECTED as MANIFEST_REJECTED

pytestmark = pytest.mark.django_db


def code_of(excinfo: pytest.ExceptionInfo[ServiceError]) -> str:
    return excinfo.value.code


# --- Registry -----------------------------------------------------------------------------------

def test_model_register_records_entry_and_grants_team(model, scientist, team):
    entry = last_entry("model.registered")
    assert entry.actor == "user:dana"
    assert (entry.subject_type, entry.subject_id) == ("governance.registeredmodel", str(model.pk))
    assert entry.payload["after"]["name"] == "credit-default-scorer"
    grants = entries("permission.granted", subject_type="governance.registeredmodel", subject_id=str(model.pk))
    assert {g.payload["permission"] for g in grants} == {"governance.view_registeredmodel",
                                                        "governance.change_registeredmodel"}
    assert all(g.payload["to"] == "group:team:credit-risk" and g.actor == "user:dana" for g in grants)


def test_model_register_refused_for_other_team(make_user, other_team):
    outsider = make_user("olga", "data_scientist")
    with pytest.raises(ServiceError) as excinfo:
        model_register(by=outsider, name="m", team=other_team, risk_tier="high")
    assert code_of(excinfo) == "permission_denied"


def test_version_digest_computed_server_side(version):
    assert version.manifest_digest == manifests.manifest_digest(MANIFEST)
    entry = last_entry("model_version.registered")
    assert entry.payload["after"]["manifest_digest"] == version.manifest_digest


def test_version_supplied_digest_must_match(make_version):
    with pytest.raises(ServiceError) as excinfo:
        make_version("2.0", manifest_digest="0" * 64)
    assert code_of(excinfo) == "manifest_digest_mismatch"
    assert not ModelVersion.objects.filter(label="2.0").exists()
    assert make_version("2.1", manifest_digest=manifests.manifest_digest(MANIFEST)).label == "2.1"


@pytest.mark.parametrize("why,manifest,_digest_fault", MANIFEST_REJECTED, ids=[case[0] for case in MANIFEST_REJECTED])
def test_version_bad_manifest_refused(make_version, why, manifest, _digest_fault):
    with pytest.raises(ServiceError) as excinfo:
        make_version("3.0", manifest=manifest)
    assert code_of(excinfo) == "manifest_invalid"


def test_version_label_unique_per_model(make_version, version):
    before = entries()
    with pytest.raises(ServiceError) as excinfo:
        make_version(version.label)
    assert code_of(excinfo) == "model_version_label_taken"
    assert entries() == before


def test_version_invisible_model_is_not_found(make_user, model):
    outsider = make_user("olga", "data_scientist")
    with pytest.raises(NotFound):
        model_version_register(model=model, by=outsider, label="x", artifact_uri="s3://x", manifest=MANIFEST)


# --- Submission -----------------------------------------------------------------------------------

def test_submit_snapshots_policy_and_records(pending, version, policy):
    version.refresh_from_db()
    assert version.status == VersionStatus.PENDING_REVIEW
    assert pending.policy_snapshot["quorum"] == 2
    assert pending.policy_snapshot["required_roles"] == ["risk_officer"]
    assert pending.expires_at - pending.submitted_at == timedelta(hours=48)
    entry = last_entry("approval_request.submitted")
    assert entry.actor == "user:dana" and entry.payload["comment"] == "please review"
    assert last_entry("model_version.submitted").payload["after"]["status"] == "pending_review"


def test_submit_without_policy_refused(version, scientist):
    with pytest.raises(ServiceError) as excinfo:
        model_version_submit(version=version, by=scientist)
    assert code_of(excinfo) == "approval_policy_missing"


def test_submit_with_incomplete_card_refused(make_version, scientist, policy):
    draft = make_version("4.0", limitations="")
    with pytest.raises(ServiceError) as excinfo:
        model_version_submit(version=draft, by=scientist)
    assert code_of(excinfo) == "approval_evidence_missing"
    assert excinfo.value.extra["missing"][0]["field"] == "limitations"
    draft.refresh_from_db()
    assert draft.status == VersionStatus.DRAFT


def test_model_policy_overrides_tier_default(model, version, scientist, policy):
    approval_policy_set(by="system:test", model=model, quorum=1, required_roles=[])
    request = model_version_submit(version=version, by=scientist)
    assert request.policy_snapshot["quorum"] == 1
    assert request.policy_snapshot["scope"] == "model:credit-default-scorer"


# --- Decisions (separation of duties: tests/governance/test_separation_of_duties.py) -------------

def test_rejection_needs_reason(pending, approver):
    for comment in ("", "  ", "no"):
        with pytest.raises(ServiceError) as excinfo:
            approval_decide(request=pending, by=approver, decision="reject", comment=comment)
        assert code_of(excinfo) == "approval_reason_required"
    assert not ApprovalDecision.objects.exists()


def test_decision_on_closed_request_refused(pending, approver, approver2):
    approval_decide(request=pending, by=approver, decision="reject", comment="AUC below floor")
    with pytest.raises(ServiceError) as excinfo:
        approval_decide(request=pending, by=approver2, decision="approve", comment="ok")
    assert code_of(excinfo) == "approval_not_pending"
    assert excinfo.value.status_code == 409
    assert excinfo.value.extra["status"] == "rejected"


def test_unknown_decision_refused(pending, approver):
    with pytest.raises(ServiceError) as excinfo:
        approval_decide(request=pending, by=approver, decision="maybe", comment="hmm")
    assert code_of(excinfo) == "invalid_decision"


def test_approver_outside_scope_refused(make_user, pending):
    # Scoped to minimal-risk models only; this model is high risk (and invisible to them).
    limited = make_user("lee", "approver")
    approver_scope_grant(by="system:test", to=limited, risk_tier="minimal")
    from django.contrib.auth import get_user_model
    limited = get_user_model().objects.get(pk=limited.pk)
    with pytest.raises(NotFound):
        approval_decide(request=pending, by=limited, decision="approve", comment="ok")


def test_approver_scoped_to_model_may_decide(make_user, model, pending):
    scoped = make_user("mo", "approver")
    approver_scope_grant(by="system:test", to=scoped, model=model)
    from django.contrib.auth import get_user_model
    scoped = get_user_model().objects.get(pk=scoped.pk)
    decision = approval_decide(request=pending, by=scoped, decision="approve", comment="ok")
    assert decision.approver_roles == ["approver"]


# --- Quorum and required roles -----------------------------------------------------------------

def test_quorum_without_required_role_stays_pending(pending, approver, approver2, version):
    approval_decide(request=pending, by=approver, decision="approve", comment="ok 1")
    approval_decide(request=pending, by=approver2, decision="approve", comment="ok 2")
    pending.refresh_from_db()
    version.refresh_from_db()
    assert pending.status == RequestStatus.PENDING  # two approvals, but no risk officer yet
    assert version.status == VersionStatus.PENDING_REVIEW
    assert quorum_state(pending.decisions.all(), pending.policy_snapshot)["missing_roles"] == ["risk_officer"]


def test_quorum_and_role_approve_request_and_version(pending, approver, risk_officer, version):
    approval_decide(request=pending, by=approver, decision="approve", comment="ok 1")
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING
    approval_decide(request=pending, by=risk_officer, decision="approve", comment="risk ok")
    pending.refresh_from_db()
    version.refresh_from_db()
    assert pending.status == RequestStatus.APPROVED and pending.closed_at is not None
    assert version.status == VersionStatus.APPROVED
    recorded = last_entry("approval_request.approve_recorded")
    assert recorded.actor == "user:rita" and recorded.payload["comment"] == "risk ok"
    approved = last_entry("model_version.approved")
    assert approved.actor == "user:rita" and approved.payload["after"]["status"] == "approved"
    assert approved.payload["approvers"] == ["alice", "rita"]
    assert last_entry("approval_request.approved").payload["after"]["status"] == "approved"


def test_rejection_closes_request_and_version(pending, approver, version):
    approval_decide(request=pending, by=approver, decision="reject", comment="Missing bias tests")
    pending.refresh_from_db()
    version.refresh_from_db()
    assert (pending.status, version.status) == (RequestStatus.REJECTED, VersionStatus.REJECTED)
    entry = last_entry("model_version.rejected")
    assert entry.actor == "user:alice" and entry.payload["comment"] == "Missing bias tests"


# --- Evidence gate ------------------------------------------------------------------------------

@pytest.fixture
def fairness_policy(model):
    return approval_policy_set(by="system:test", risk_tier="high", quorum=1, required_roles=[],
                                        fairness_audit_max_age_days=30)


@pytest.fixture
def fairness_check():
    calls = []
    state = {"ok": False}

    def check(*, version, max_age_days):
        calls.append((version.pk, max_age_days))
        return EvidenceResult(state["ok"], "audit 7 passed" if state["ok"] else "no passing audit", {"audit": 7})

    previous = evidence._checks.get(evidence.FAIRNESS_AUDIT_PASSED)
    evidence.register_evidence_check(evidence.FAIRNESS_AUDIT_PASSED, check)
    yield state, calls
    if previous is None:
        evidence.unregister_evidence_check(evidence.FAIRNESS_AUDIT_PASSED)
    else:
        evidence.register_evidence_check(evidence.FAIRNESS_AUDIT_PASSED, previous)


def test_evidence_missing_blocks_approval(fairness_policy, fairness_check, version, scientist, approver):
    state, calls = fairness_check
    request = model_version_submit(version=version, by=scientist)
    with pytest.raises(ServiceError) as excinfo:
        approval_decide(request=request, by=approver, decision="approve", comment="ok")
    assert code_of(excinfo) == "approval_evidence_missing"
    assert excinfo.value.extra["missing"][0]["evidence"] == "fairness_audit_passed"
    assert calls == [(version.pk, 30)]
    state["ok"] = True
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    version.refresh_from_db()
    assert version.status == VersionStatus.APPROVED
    assert last_entry("model_version.approved").payload["evidence"][0]["references"] == {"audit": 7}


def test_unregistered_evidence_check_denies(fairness_policy, version, scientist, approver):
    evidence.unregister_evidence_check("__none__")
    previous = evidence._checks.pop(evidence.FAIRNESS_AUDIT_PASSED, None)
    try:
        request = model_version_submit(version=version, by=scientist)
        with pytest.raises(ServiceError) as excinfo:
            approval_decide(request=request, by=approver, decision="approve", comment="ok")
        assert code_of(excinfo) == "approval_evidence_missing"
    finally:
        if previous is not None:
            evidence.register_evidence_check(evidence.FAIRNESS_AUDIT_PASSED, previous)


# --- Withdrawal and expiry ----------------------------------------------------------------------

def test_withdraw_returns_version_to_draft(pending, scientist, version):
    approval_withdraw(request=pending, by=scientist, comment="found a bug")
    pending.refresh_from_db()
    version.refresh_from_db()
    assert (pending.status, version.status) == (RequestStatus.WITHDRAWN, VersionStatus.DRAFT)
    entry = last_entry("approval_request.withdrawn")
    assert entry.actor == "user:dana" and entry.payload["comment"] == "found a bug"
    again = model_version_submit(version=version, by=scientist)
    assert again.status == RequestStatus.PENDING


def test_expire_due_expires_only_overdue(pending, version, scientist, make_version):
    fresh_version = make_version("7.0")
    fresh = model_version_submit(version=fresh_version, by=scientist)
    ApprovalRequest.objects.filter(pk=pending.pk).update(expires_at=timezone.now() - timedelta(minutes=1)) \
        if False else None
    from core.actor import acting_as
    with acting_as("system:test"):
        ApprovalRequest.objects.filter(pk=pending.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert approval_expire_due() == [pending.pk]
    assert approval_expire_due() == []  # idempotent
    pending.refresh_from_db()
    fresh.refresh_from_db()
    version.refresh_from_db()
    assert pending.status == RequestStatus.EXPIRED and fresh.status == RequestStatus.PENDING
    assert version.status == VersionStatus.DRAFT
    entry = last_entry("approval_request.expired")
    assert entry.actor == "system:approval_expire_due" and "48 hours" in entry.payload["comment"]


def test_decision_after_deadline_refused(pending, approver):
    from core.actor import acting_as
    with acting_as("system:test"):
        ApprovalRequest.objects.filter(pk=pending.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ServiceError) as excinfo:
        approval_decide(request=pending, by=approver, decision="approve", comment="ok")
    assert code_of(excinfo) == "approval_not_pending"


def test_expire_task_runs_service(pending):
    from core.actor import acting_as
    from governance.tasks import approval_expire_due_task
    with acting_as("system:test"):
        ApprovalRequest.objects.filter(pk=pending.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert approval_expire_due_task.delay().get() == 1


# --- Deployments ---------------------------------------------------------------------------------

@pytest.fixture
def approve(approver, risk_officer, scientist):
    def run(version):
        request = model_version_submit(version=version, by=scientist)
        approval_decide(request=request, by=approver, decision="approve", comment="ok")
        approval_decide(request=request, by=risk_officer, decision="approve", comment="ok")
        version.refresh_from_db()
        return version
    return run


def test_production_takes_only_approved(version, scientist, environments, policy):
    before = entries()
    with pytest.raises(ServiceError) as excinfo:
        deployment_record(version=version, environment=environments["production"], by=scientist)
    assert code_of(excinfo) == "deployment_not_approved"
    assert entries() == before and not Deployment.objects.exists()
    staged = deployment_record(version=version, environment=environments["staging"], by=scientist)
    assert staged.is_active


def test_deploy_replace_and_rollback(make_version, approve, scientist, environments, policy):
    prod = environments["production"]
    v1 = approve(make_version("1.0"))
    v2 = approve(make_version("2.0"))
    d1 = deployment_record(version=v1, environment=prod, by=scientist, comment="first")
    v1.refresh_from_db()
    assert v1.status == VersionStatus.DEPLOYED
    d2 = deployment_record(version=v2, environment=prod, by=scientist)
    d1.refresh_from_db()
    v1.refresh_from_db()
    assert d2.replaced_id == d1.pk and not d1.is_active and v1.status == VersionStatus.APPROVED
    assert last_entry("deployment.recorded").payload["replaced_version"] == "1.0"
    d3 = deployment_rollback(deployment=d2, by=scientist, comment="latency regression")
    assert d3.is_rollback and d3.version_id == v1.pk and d3.replaced_id == d2.pk and d3.is_active
    entry = last_entry("deployment.rolled_back")
    assert entry.actor == "user:dana" and entry.payload["comment"] == "latency regression"
    assert Deployment.objects.filter(is_active=True, environment=prod).get().pk == d3.pk
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (VersionStatus.DEPLOYED, VersionStatus.APPROVED)


def test_rollback_without_previous_refused(make_version, approve, scientist, environments, policy):
    v1 = approve(make_version("1.0"))
    d1 = deployment_record(version=v1, environment=environments["production"], by=scientist)
    with pytest.raises(ServiceError) as excinfo:
        deployment_rollback(deployment=d1, by=scientist)
    assert code_of(excinfo) == "deployment_no_previous"


def test_rollback_of_inactive_deployment_refused(make_version, approve, scientist, environments, policy):
    v1, v2 = approve(make_version("1.0")), approve(make_version("2.0"))
    d1 = deployment_record(version=v1, environment=environments["production"], by=scientist)
    deployment_record(version=v2, environment=environments["production"], by=scientist)
    with pytest.raises(ServiceError) as excinfo:
        deployment_rollback(deployment=d1, by=scientist)
    assert code_of(excinfo) == "deployment_not_active"


def test_rollback_skips_retired_versions(make_version, approve, scientist, environments, policy):
    prod = environments["production"]
    v1, v2, v3 = (approve(make_version(label)) for label in ("1.0", "2.0", "3.0"))
    deployment_record(version=v1, environment=prod, by=scientist)
    deployment_record(version=v2, environment=prod, by=scientist)
    d3 = deployment_record(version=v3, environment=prod, by=scientist)
    model_version_retire(version=v2, by=scientist, comment="data leak found")
    back = deployment_rollback(deployment=d3, by=scientist)
    assert back.version_id == v1.pk


def test_version_transitions_are_enforced(version, scientist):
    with pytest.raises(ServiceError) as excinfo:
        model_version_deprecate(version=version, by=scientist, comment="old")
    assert code_of(excinfo) == "model_version_invalid_transition"
    assert excinfo.value.extra["allowed"] == ["pending_review", "retired"]


def test_state_check_passes_for_governed_rows(pending, approver, environments):
    from audit.capture.state import governed_state_problems
    approval_decide(request=pending, by=approver, decision="approve", comment="ok")
    problems = [p for p in governed_state_problems() if p["subject_type"].startswith("governance.")]
    assert problems == []


def test_card_constant_matches_model(version):
    assert version.missing_card_fields() == []
    assert set(CARD) == {"intended_use", "limitations", "evaluation_data", "ethical_considerations"}

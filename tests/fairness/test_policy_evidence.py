"""Fairness audits as approval evidence under a policy that pins them (issue 14, class 1).

The policy pins the metrics and their floors, the group size and registered data; an audit counts
only if it is at least as strict, for high risk only if someone other than the submitter made or
confirmed its spec, and a failing counted audit blocks approval until a risk officer waives it.
"""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import LedgerEntry
from core.errors import ServiceError
from governance.fairness.models import AuditWaiver
from governance.fairness.services.evidence import audit_spec_confirm, audit_waive
from governance.registry.services.approvals import approval_decide, approval_policy_set, model_version_submit
from lineage.services import datasets as lineage_datasets
from tests.fairness.helpers import FLOORS, credit_csv, make_spec, run_audit, women_never_selected
from tests.fixtures import CARD, SEED, last_entry

pytestmark = pytest.mark.django_db





@pytest.fixture
def pinned(model):  # type: ignore[no-untyped-def]
    return approval_policy_set(by=SEED, risk_tier="high", quorum=2, required_roles=["risk_officer"],
                               required_card_fields=list(CARD), fairness_audit_max_age_days=30,
                               fairness_metric_floors=FLOORS, fairness_min_group_size=50, expiry_hours=48)


@pytest.fixture
def request_(version, scientist, pinned):  # type: ignore[no-untyped-def]
    return model_version_submit(version=version, by=scientist, comment="please")


def refused(request: Any, by: Any) -> ServiceError:
    with pytest.raises(ServiceError) as error:
        approval_decide(request=request, by=by, decision="approve", comment="ok")
    return error.value


def test_lax_spec_that_passes_with_women_never_selected_is_refused_as_evidence(
        scientist, model, version, request_, approver, risk_officer, tmp_path, django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, women_never_selected(tmp_path / "w.csv"), thresholds={})
    audit_spec_confirm(by=risk_officer, spec=spec)  # even confirmed, a lax spec is not evidence
    run = run_audit(spec, scientist, django_capture_on_commit_callbacks)
    assert run.passed is True  # "passes": it checks nothing
    error = refused(request_, approver)
    assert (error.status_code, error.code) == (409, "approval_evidence_spec_weaker")
    fairness = error.extra["missing"][0]
    assert fairness["references"]["metrics"] == ["equalized_odds_difference", "impact_ratio"]
    assert {gap["gap"] for gap in fairness["references"]["runs"][0]["gaps"]} == {"metric_missing"}
    assert not LedgerEntry.objects.filter(action="approval_request.approve_recorded").exists()

    # The same data under the pinned thresholds fails, and that failure blocks approval.
    strict = make_spec(scientist, model, version, women_never_selected(tmp_path / "w2.csv"))
    audit_spec_confirm(by=risk_officer, spec=strict)
    failing = run_audit(strict, scientist, django_capture_on_commit_callbacks)
    assert failing.passed is False
    error = refused(request_, approver)
    assert error.code == "approval_evidence_audit_failed"
    assert error.extra["missing"][0]["references"]["failing_runs"] == [failing.pk]


def test_a_weaker_threshold_is_named(scientist, model, version, request_, approver, risk_officer, tmp_path,
                                     django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"),
                     thresholds={"impact_ratio_min": 0.5, "equalized_odds_difference_max": 0.1})
    audit_spec_confirm(by=risk_officer, spec=spec)
    run_audit(spec, scientist, django_capture_on_commit_callbacks)
    error = refused(request_, approver)
    assert error.code == "approval_evidence_spec_weaker"
    assert error.extra["missing"][0]["references"]["metrics"] == ["impact_ratio"]
    gap = error.extra["missing"][0]["references"]["runs"][0]["gaps"][0]
    assert gap == {"gap": "metric_weaker", "metric": "impact_ratio", "policy": {"min": 0.8}, "spec": {"min": 0.5}}


def test_a_spec_that_leaves_groups_out_as_small_is_weaker(scientist, model, version, request_, approver,
                                                          risk_officer, tmp_path, django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"), min_group_size=5000)
    audit_spec_confirm(by=risk_officer, spec=spec)
    run_audit(spec, scientist, django_capture_on_commit_callbacks)
    error = refused(request_, approver)
    assert error.code == "approval_evidence_spec_weaker"
    assert error.extra["missing"][0]["references"]["runs"][0]["gaps"] == [
        {"gap": "min_group_size_larger", "policy": 50, "spec": 5000}]


def test_registered_dataset_required(scientist, model, version, approver, risk_officer, tmp_path,
                                     django_capture_on_commit_callbacks):
    approval_policy_set(by=SEED, risk_tier="high", quorum=2, required_roles=["risk_officer"],
                        required_card_fields=list(CARD), fairness_metric_floors=FLOORS,
                        fairness_dataset_registered=True, expiry_hours=48)
    request = model_version_submit(version=version, by=scientist)
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"))
    audit_spec_confirm(by=risk_officer, spec=spec)
    run_audit(spec, scientist, django_capture_on_commit_callbacks)
    error = refused(request, approver)
    assert error.code == "approval_evidence_spec_weaker"
    assert error.extra["missing"][0]["references"]["runs"][0]["gaps"] == [{"gap": "dataset_not_registered"}]

    # The same kind of data, registered in lineage with its SHA-256, counts.
    path = credit_csv(tmp_path / "holdout.csv")
    dataset, _ = lineage_datasets.dataset_create(namespace="s3://bank", name="holdout", actor=SEED)
    registered, _ = lineage_datasets.dataset_version_register(
        dataset=dataset, actor=SEED,
        spec=lineage_datasets.VersionSpec(location_uri="s3://bank/holdout.csv", content=path.read_bytes()))
    lineage_spec = make_spec(scientist, model, version, path, dataset_version=registered)
    audit_spec_confirm(by=risk_officer, spec=lineage_spec)
    counted = run_audit(lineage_spec, scientist, django_capture_on_commit_callbacks)
    assert counted.passed is True
    approval_decide(request=request, by=approver, decision="approve", comment="ok")
    assert last_entry("approval_request.approve_recorded").payload["evidence"][0]["references"]["audit_run"] == \
        counted.pk


def test_high_risk_spec_must_be_confirmed_by_someone_other_than_the_submitter(
        scientist, scientist2, model, version, request_, approver, risk_officer, tmp_path,
        django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"))
    run = run_audit(spec, scientist, django_capture_on_commit_callbacks)
    assert run.passed is True
    error = refused(request_, approver)
    assert (error.code, error.extra["missing"][0]["references"]["runs"][0]["gaps"]) == (
        "approval_evidence_spec_unconfirmed", [{"gap": "spec_not_independent"}])

    # The submitter cannot confirm her own spec; a teammate without a review role cannot either.
    for insider in (scientist, scientist2):
        with pytest.raises(ServiceError) as denied:
            audit_spec_confirm(by=insider, spec=spec)
        assert (denied.value.status_code, denied.value.code) == (403, "fairness_spec_confirm_denied")
    refusals = LedgerEntry.objects.filter(action="fairness_spec.confirm.refused").order_by("seq")
    assert [(e.actor, e.payload["code"]) for e in refusals] == [
        ("user:dana", "fairness_spec_confirm_denied"), ("user:dario", "fairness_spec_confirm_denied")]
    spec.refresh_from_db()
    assert spec.confirmed_by_id is None

    audit_spec_confirm(by=risk_officer, spec=spec, comment="holdout checked")
    entry = last_entry("fairness_spec.confirmed")
    assert (entry.actor, entry.subject_id, entry.payload["comment"]) == ("user:rita", str(spec.pk), "holdout checked")
    with pytest.raises(ServiceError) as again:
        audit_spec_confirm(by=approver, spec=spec)
    assert again.value.code == "fairness_spec_already_confirmed"
    approval_decide(request=request_, by=approver, decision="approve", comment="ok")
    approval_decide(request=request_, by=risk_officer, decision="approve", comment="ok")
    version.refresh_from_db()
    assert version.status == "approved"


def test_spec_made_by_a_risk_officer_counts_without_confirmation(
        scientist, model, version, request_, approver, make_user, risk_officer, tmp_path,
        django_capture_on_commit_callbacks):
    other_officer = make_user("rolf", "risk_officer")
    spec = make_spec(other_officer, model, version, credit_csv(tmp_path / "g.csv"))
    run_audit(spec, other_officer, django_capture_on_commit_callbacks)
    approval_decide(request=request_, by=approver, decision="approve", comment="ok")
    assert LedgerEntry.objects.filter(action="approval_request.approve_recorded").count() == 1


def test_a_newer_passing_run_does_not_mask_a_failing_one_until_a_risk_officer_waives_it(
        scientist, model, version, request_, approver, risk_officer, make_user, tmp_path,
        django_capture_on_commit_callbacks):
    biased = make_spec(scientist, model, version, credit_csv(tmp_path / "b.csv", biased=True))
    fair = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"))
    audit_spec_confirm(by=risk_officer, spec=biased)
    audit_spec_confirm(by=risk_officer, spec=fair)
    failing = run_audit(biased, scientist, django_capture_on_commit_callbacks)
    passing = run_audit(fair, scientist, django_capture_on_commit_callbacks)
    assert (failing.passed, passing.passed) == (False, True)
    error = refused(request_, approver)
    assert (error.code, error.extra["missing"][0]["references"]["failing_runs"]) == (
        "approval_evidence_audit_failed", [failing.pk])
    assert f"#{failing.pk}" in error.extra["missing"][0]["message"]

    # Neither the submitter nor an approver waives; a reason is required.
    for insider, code in ((scientist, "fairness_waiver_denied"), (approver, "fairness_waiver_denied")):
        with pytest.raises(ServiceError) as denied:
            audit_waive(by=insider, run=failing, reason="It is fine, trust me.")
        assert (denied.value.status_code, denied.value.code) == (403, code)
    assert LedgerEntry.objects.filter(action="fairness_audit.waive.refused").count() == 2
    with pytest.raises(ServiceError) as short:
        audit_waive(by=risk_officer, run=failing, reason="ok")
    assert (short.value.status_code, short.value.code) == (400, "reason_required")
    with pytest.raises(ServiceError) as passing_run:
        audit_waive(by=risk_officer, run=passing, reason="Nothing to waive here at all.")
    assert passing_run.value.code == "fairness_waiver_not_applicable"
    assert not AuditWaiver.objects.exists()

    waiver = audit_waive(by=risk_officer, run=failing, reason="Biased holdout sample; replaced by the fair one.")
    entry = last_entry("fairness_audit.waived")
    assert (entry.actor, entry.subject_id, entry.payload["reason"], waiver.ledger_seq) == (
        "user:rita", str(failing.pk), "Biased holdout sample; replaced by the fair one.", entry.seq)
    approval_decide(request=request_, by=approver, decision="approve", comment="ok")
    recorded = last_entry("approval_request.approve_recorded")
    assert recorded.payload["evidence"][0]["references"]["audit_run"] == passing.pk
    assert recorded.payload["evidence"][0]["references"]["waived_runs"] == [failing.pk]

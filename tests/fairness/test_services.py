"""Fairness services: runs record one result with its digests in the ledger, unlock approvals as
evidence, fail cleanly on bad files, notify on failure, and survive redelivery and takeover."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from audit import jcs
from audit.models import LedgerEntry
from core.errors import Conflict, InvalidInput, NotFound, ServiceError
from governance.evidence import FAIRNESS_AUDIT_PASSED, run_evidence_check
from governance.fairness import notifications
from governance.fairness.models import AuditRun, AuditSpec, PredictionBatch
from governance.fairness.services import batches, runs, specs
from governance.fairness.services.evidence import audit_spec_confirm
from governance.fairness.tasks import fairness_audit_scheduled_task
from governance.registry.services.approvals import approval_decide, approval_policy_set, model_version_submit
from governance.registry.services.common import ApprovalEvidenceMissing
from governance.registry.services.deployments import deployment_record
from tests.fairness.helpers import credit_csv, make_spec, run_audit
from tests.fixtures import CARD, SEED

pytestmark = pytest.mark.django_db


@pytest.fixture
def webhook_receiver(settings, http_receiver):  # type: ignore[no-untyped-def]
    """The webhook URL points at a real local HTTP server; returns the list of what it receives."""
    url, received = http_receiver
    settings.FAIRNESS_WEBHOOK_URL = url
    settings.FAIRNESS_WEBHOOK_SECRET = "test-webhook-secret"
    return received


# --- Runs, results and the ledger ---------------------------------------------------------------

def test_completed_audit_records_input_and_result_digests(scientist, model, version, tmp_path,
                                                          django_capture_on_commit_callbacks):
    path = credit_csv(tmp_path / "eval.csv")
    spec = make_spec(scientist, model, version, path)
    run = run_audit(spec, scientist, django_capture_on_commit_callbacks)

    assert run.status == AuditRun.Status.SUCCEEDED and run.progress == 100 and run.passed is True
    file_digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.input_sha256 == file_digest == spec.dataset_sha256
    assert run.result_sha256 == hashlib.sha256(jcs.canonicalize(run.result)).hexdigest()
    assert run.result["rows"] == 2000 and {g["attributes"]["sex"] for g in run.result["groups"]} == {"female", "male"}
    completed = LedgerEntry.objects.get(action="fairness_audit.completed")
    assert (completed.subject_type, completed.subject_id) == ("fairness.auditrun", str(run.pk))
    assert completed.payload["input_sha256"] == file_digest
    assert completed.payload["result_sha256"] == run.result_sha256
    assert completed.payload["passed"] is True and completed.payload["version_id"] == version.pk
    assert completed.actor == "system:fairness_audit_run_task" and run.ledger_seq == completed.seq
    evidence = LedgerEntry.objects.get(action="fairness_audit.evidence_attached")
    assert (evidence.subject_type, evidence.subject_id) == ("governance.modelversion", str(version.pk))
    requested = LedgerEntry.objects.get(action="fairness_audit.requested")
    assert requested.actor == "user:dana" and requested.payload["inputs"][0]["sha256"] == file_digest


def test_score_and_threshold_match_the_equivalent_prediction_column(scientist, model, version, tmp_path,
                                                                    django_capture_on_commit_callbacks):
    path = credit_csv(tmp_path / "eval.csv")
    by_label = run_audit(make_spec(scientist, model, version, path), scientist, django_capture_on_commit_callbacks)
    by_score = run_audit(make_spec(scientist, model, version, path, y_pred="", score="score", threshold=0.5),
                         scientist, django_capture_on_commit_callbacks)
    assert by_score.result["groups"] == by_label.result["groups"]
    assert by_score.result["disparities"] == by_label.result["disparities"]


def test_biased_predictions_fail_with_findings_that_name_the_metric(scientist, model, version, tmp_path,
                                                                   django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "eval.csv", biased=True))
    run = run_audit(spec, scientist, django_capture_on_commit_callbacks)
    assert run.status == AuditRun.Status.SUCCEEDED and run.passed is False
    failed = {(f["attributes"], f["metric"]) for f in run.findings if not f["passed"]}
    assert ("sex", "impact_ratio") in failed
    impact = next(f for f in run.findings if f["metric"] == "impact_ratio")
    assert impact["value"] < 0.8 and impact["rule"] == ">="
    assert LedgerEntry.objects.get(action="fairness_audit.completed").payload["passed"] is False


def test_thresholds_accept_both_spellings_and_refuse_unknown_names(scientist, model, version, tmp_path):
    assert specs.normalise_thresholds({"impact_ratio_min": 0.8, "equalized_odds_difference": 0.1}) == {
        "impact_ratio": 0.8, "equalized_odds_difference": 0.1}
    with pytest.raises(InvalidInput) as refused:
        make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv"), thresholds={"accuracy_min": 0.9})
    assert refused.value.code == "fairness_bad_thresholds"
    assert not AuditSpec.objects.exists() and not LedgerEntry.objects.filter(action__startswith="fairness").exists()


def test_spec_with_a_missing_column_is_refused_and_nothing_is_stored(scientist, model, version, tmp_path, settings):
    with pytest.raises(InvalidInput) as refused:
        make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv"), sensitive=["ethnicity"])
    assert refused.value.code == "fairness_missing_column" and refused.value.extra["missing"] == ["ethnicity"]
    assert not AuditSpec.objects.exists()
    stored = list((Path(settings.MEDIA_ROOT) / "fairness").rglob("*.*"))
    assert stored == []


# --- Failures: bad files ------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "code"), [
    pytest.param("repaid,predicted,sex\n", "fairness_empty_input", id="header-only"),
    # Past the first 1 MiB (the header check at spec creation reads only that far).
    pytest.param("repaid,predicted,sex\n" + "1,1,f\n0,0,m\n" * 100_000 + "0,1\n", "fairness_malformed_file",
                 id="short-row-after-1MiB"),
    pytest.param("repaid,predicted,sex\n1,1,f\n7,1,m\n", "fairness_bad_label", id="label-outside-the-set"),
])
def test_bad_file_fails_the_run_with_its_code_and_no_partial_result(content, code, scientist, model, version,
                                                                    tmp_path, django_capture_on_commit_callbacks):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    spec = make_spec(scientist, model, version, path, min_group_size=0)
    run = run_audit(spec, scientist, django_capture_on_commit_callbacks)
    assert run.status == AuditRun.Status.FAILED and run.error_code == code, run.error_message
    assert run.result is None and run.passed is None and run.result_sha256 == "" and run.findings == []
    failed = LedgerEntry.objects.get(action="fairness_audit.failed")
    assert failed.payload["code"] == code and failed.subject_id == str(run.pk)
    assert not LedgerEntry.objects.filter(action__in=["fairness_audit.completed",
                                                      "fairness_audit.evidence_attached"]).exists()
    assert run_evidence_check(FAIRNESS_AUDIT_PASSED, version=version, max_age_days=30).ok is False


def test_spec_with_a_malformed_file_is_refused_with_the_engine_code(scientist, model, version, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("repaid,predicted,sex\n1,1,f\n0,1\n")
    with pytest.raises(InvalidInput) as refused:
        make_spec(scientist, model, version, path)
    assert refused.value.code == "fairness_malformed_file"
    assert not AuditSpec.objects.exists()


def test_a_file_changed_in_storage_fails_the_run(scientist, model, version, tmp_path,
                                                 django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "eval.csv"))
    # The stored file is sealed: plaintext written over it is not a sealed file, and fails before any read.
    Path(spec.dataset_file.path).write_text("repaid,predicted,sex\n1,1,f\n")
    run = run_audit(spec, scientist, django_capture_on_commit_callbacks)
    assert run.status == AuditRun.Status.FAILED and run.error_code == "sealed_file_corrupt"
    assert run.result is None


# --- Idempotency, redelivery, takeover ----------------------------------------------------------

def test_executing_a_finished_run_again_records_nothing(scientist, model, version, tmp_path,
                                                        django_capture_on_commit_callbacks):
    run = run_audit(make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv")), scientist,
                    django_capture_on_commit_callbacks)
    before = LedgerEntry.objects.count()
    again = runs.audit_execute(run_id=run.pk, task_id="redelivered")
    assert again.result_sha256 == run.result_sha256 and again.attempt == run.attempt
    assert LedgerEntry.objects.count() == before
    assert LedgerEntry.objects.filter(action="fairness_audit.completed").count() == 1


def test_redelivered_message_takes_over_a_run_whose_worker_died(scientist, model, version, tmp_path):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv"))
    run = runs.audit_request(spec=spec, by=scientist)  # no commit callbacks: nothing runs yet
    # The first delivery claimed the run, then its worker was killed.
    claimed = runs._claim(run.pk, task_id="message-1")
    assert claimed is not None and claimed[1] == 1
    # Another message (not the same one) must wait while the lease is fresh ...
    with pytest.raises(runs.AuditRunBusy):
        runs.audit_execute(run_id=run.pk, task_id="message-2")
    # ... but the broker's redelivery of the same message takes over at once.
    done = runs.audit_execute(run_id=run.pk, task_id="message-1")
    assert done.status == AuditRun.Status.SUCCEEDED and done.attempt == 2
    # The killed attempt, were it to finish late, records nothing.
    runs._finish_failed(run.pk, 1, "late", "from the first attempt")
    assert AuditRun.objects.get(pk=run.pk).status == AuditRun.Status.SUCCEEDED
    assert LedgerEntry.objects.filter(action__in=["fairness_audit.completed", "fairness_audit.failed"]).count() == 1


def test_stale_run_is_recovered_by_the_beat_job(scientist, model, version, tmp_path, settings,
                                                django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv"))
    run = runs.audit_request(spec=spec, by=scientist)
    runs._claim(run.pk, task_id="dead-worker")
    AuditRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(
        seconds=settings.FAIRNESS_RUN_LEASE_S + 1))
    with django_capture_on_commit_callbacks(execute=True):
        recovered = runs.audit_recover_stale()
    assert recovered == [run.pk]
    run.refresh_from_db()
    assert run.status == AuditRun.Status.SUCCEEDED and run.attempt == 2
    assert LedgerEntry.objects.filter(action="fairness_audit.completed").count() == 1


def test_superseded_attempt_stops_at_its_next_progress_update(scientist, model, version, tmp_path):
    run = runs.audit_request(spec=make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv")),
                             by=scientist)
    runs._claim(run.pk, task_id="a")
    AuditRun.objects.filter(pk=run.pk).update(attempt=5)  # someone else took it over
    with pytest.raises(runs._Superseded):
        runs._report_progress(run.pk, 1, 50, "reading")


# --- Evidence gate ------------------------------------------------------------------------------

def test_passing_audit_unlocks_approval_under_a_policy_that_requires_it(
        scientist, model, version, approver, risk_officer, tmp_path, django_capture_on_commit_callbacks):
    approval_policy_set(by=SEED, risk_tier="high", quorum=2, required_roles=["risk_officer"],
                                            required_card_fields=list(CARD), fairness_audit_max_age_days=30,
                                            expiry_hours=48)
    request = model_version_submit(version=version, by=scientist, comment="please")
    with pytest.raises(ApprovalEvidenceMissing) as missing:
        approval_decide(request=request, by=approver, decision="approve")
    assert missing.value.extra["missing"][0]["evidence"] == FAIRNESS_AUDIT_PASSED

    # High risk: the scientist's own spec counts once a risk officer has confirmed it.
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"))
    passing = run_audit(spec, scientist, django_capture_on_commit_callbacks)
    with pytest.raises(ApprovalEvidenceMissing) as unconfirmed:
        approval_decide(request=request, by=approver, decision="approve")
    assert unconfirmed.value.code == "approval_evidence_spec_unconfirmed"
    audit_spec_confirm(by=risk_officer, spec=spec)
    approval_decide(request=request, by=approver, decision="approve")
    approval_decide(request=request, by=risk_officer, decision="approve")
    version.refresh_from_db()
    assert version.status == "approved"
    approved = LedgerEntry.objects.filter(action="approval_request.approved").get()
    assert approved.payload["evidence"][0]["references"]["audit_run"] == passing.pk


def test_evidence_ages_out_after_max_age_days(scientist, model, version, tmp_path,
                                              django_capture_on_commit_callbacks):
    run = run_audit(make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv")), scientist,
                    django_capture_on_commit_callbacks)
    assert run_evidence_check(FAIRNESS_AUDIT_PASSED, version=version, max_age_days=30).ok is True
    AuditRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=31))
    result = run_evidence_check(FAIRNESS_AUDIT_PASSED, version=version, max_age_days=30)
    assert result.ok is False and "30 days" in result.message


# --- Notifications ------------------------------------------------------------------------------

def test_failing_audit_sends_one_email_and_one_signed_webhook(scientist, model, version, tmp_path, webhook_receiver,
                                                             django_capture_on_commit_callbacks):
    run = run_audit(make_spec(scientist, model, version, credit_csv(tmp_path / "b.csv", biased=True)), scientist,
                    django_capture_on_commit_callbacks)
    assert len(webhook_receiver) == 1
    headers, body = webhook_receiver[0]
    assert notifications.verify("test-webhook-secret", headers=headers, body=body)
    assert not notifications.verify("another-secret", headers=headers, body=body)
    assert not notifications.verify("test-webhook-secret", headers=headers, body=body + b" ")
    assert headers[notifications.DELIVERY_ID_HEADER] and headers[notifications.TIMESTAMP_HEADER].isdigit()
    event = json.loads(body)
    assert event["audit_run"] == run.pk and event["passed"] is False and event["failed_findings"]
    assert "test-webhook-secret" not in body.decode()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["risk@example.org"]
    assert f"#{run.pk}" in mail.outbox[0].subject
    # Sending again (a redelivered notify task) sends nothing.
    assert runs.audit_notify(run_id=run.pk) is False
    assert len(webhook_receiver) == 1 and len(mail.outbox) == 1


def test_passing_audit_notifies_nobody(scientist, model, version, tmp_path, webhook_receiver,
                                       django_capture_on_commit_callbacks):
    run_audit(make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv")), scientist,
              django_capture_on_commit_callbacks)
    assert webhook_receiver == [] and mail.outbox == []


# --- Access -------------------------------------------------------------------------------------

def test_roles_that_may_run_audits(scientist, model, version, auditor, make_user, other_team, tmp_path):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"))
    assert runs.audit_request(spec=spec, by=auditor).requested_by_label == "user:audrey"
    viewer = make_user("victor", "viewer", teams=(model.team,))
    with pytest.raises(ServiceError) as denied:
        runs.audit_request(spec=spec, by=viewer)
    assert denied.value.status_code == 403
    outsider = make_user("hiro", "data_scientist", teams=(other_team,))
    with pytest.raises(NotFound):
        runs.audit_request(spec=spec, by=outsider)
    assert AuditRun.objects.count() == 1


# --- Schedules and monitoring -------------------------------------------------------------------

def test_spec_schedule_is_a_periodic_task_that_requests_a_run(scientist, model, version, tmp_path,
                                                              django_capture_on_commit_callbacks):
    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "g.csv"), schedule_interval_s=3600)
    task = spec.periodic_task
    assert task.task == specs.SCHEDULED_TASK and json.loads(task.kwargs) == {"spec_id": spec.pk}
    assert task.interval.every == 3600
    with django_capture_on_commit_callbacks(execute=True):
        run_id = fairness_audit_scheduled_task.apply(kwargs=json.loads(task.kwargs)).get()
    run = AuditRun.objects.get(pk=run_id)
    assert run.trigger == AuditRun.Trigger.SCHEDULE and run.requested_by_label == "system:fairness_schedule"
    assert run.status == AuditRun.Status.SUCCEEDED


def _upload(by: Any, model: Any, path: Path) -> PredictionBatch:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return batches.prediction_batch_upload(by=by, model=model, uploaded=SimpleUploadedFile(
        path.name, path.read_bytes(), "text/csv"))[0]


def test_monitoring_audits_the_production_version_on_recent_batches(
        scientist, model, version, policy, approver, risk_officer, environments, tmp_path,
        django_capture_on_commit_callbacks):
    monitor = specs.audit_spec_create(by=scientist, model=model, name="monitor", target=AuditSpec.Target.PRODUCTION,
                                      y_true="repaid", score="score", threshold=0.5, sensitive=["sex"])
    with pytest.raises(Conflict) as undeployed:
        runs.audit_request(spec=monitor, by=scientist)
    assert undeployed.value.code == "fairness_no_production_deployment"
    request = model_version_submit(version=version, by=scientist)
    approval_decide(request=request, by=approver, decision="approve")
    approval_decide(request=request, by=risk_officer, decision="approve")
    version.refresh_from_db()
    deployment_record(version=version, environment=environments["production"], by=scientist)
    with pytest.raises(InvalidInput) as no_batches:
        runs.audit_request(spec=monitor, by=scientist)
    assert no_batches.value.code == "fairness_no_batches"

    first = _upload(scientist, model, credit_csv(tmp_path / "w1.csv", rows=600, seed=2, unknown_outcomes=100))
    assert first.served_version_id == version.pk and first.rows == 600
    run1 = run_audit(monitor, scientist, django_capture_on_commit_callbacks)
    _upload(scientist, model, credit_csv(tmp_path / "w2.csv", rows=600, seed=3, biased=True))
    run2 = run_audit(monitor, scientist, django_capture_on_commit_callbacks)
    assert run1.status == run2.status == AuditRun.Status.SUCCEEDED
    assert run1.model_version_id == version.pk
    assert run1.result["rows"] == 500 and run1.result["rows_without_outcome"] == 100
    assert run2.result["rows"] == 1100 and len(run2.input_files) == 2
    assert run2.input_sha256 == hashlib.sha256(jcs.canonicalize([f["sha256"] for f in run2.input_files])).hexdigest()
    from governance.fairness import selectors

    trend = selectors.fairness_trend(user=scientist, model_name=model.name)
    assert [point["audit"] for point in trend] == [run1.pk, run2.pk]
    assert trend[1]["attributes"]["sex"]["min_impact_ratio"] < trend[0]["attributes"]["sex"]["min_impact_ratio"]


def test_an_unexpected_engine_error_fails_the_run_once_instead_of_retrying_forever(
        scientist, model, version, tmp_path, monkeypatch, django_capture_on_commit_callbacks):
    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("a bug with a secret-looking detail")

    monkeypatch.setattr(runs, "compute_report", broken)
    run = run_audit(make_spec(scientist, model, version, credit_csv(tmp_path / "e.csv")), scientist,
                    django_capture_on_commit_callbacks)
    assert run.status == AuditRun.Status.FAILED and run.error_code == "fairness_internal_error"
    assert "secret" not in run.error_message and "RuntimeError" in run.error_message
    assert LedgerEntry.objects.get(action="fairness_audit.failed").payload["code"] == "fairness_internal_error"


def test_a_retry_after_the_email_failed_does_not_post_the_webhook_again(scientist, model, version, tmp_path,
                                                                       webhook_receiver, settings):
    import socket

    spec = make_spec(scientist, model, version, credit_csv(tmp_path / "b.csv", biased=True))
    run = runs.audit_execute(run_id=runs.audit_request(spec=spec, by=scientist).pk)  # notify not run yet
    assert run.passed is False
    with socket.socket() as probe:  # a port nobody listens on: the SMTP connection is refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port
    with pytest.raises(OSError):
        runs.audit_notify(run_id=run.pk)
    run.refresh_from_db()
    assert len(webhook_receiver) == 1 and run.webhook_sent_at is not None
    assert run.emailed_at is None and run.notified_at is None

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert runs.audit_notify(run_id=run.pk) is True
    assert len(webhook_receiver) == 1 and len(mail.outbox) == 1
    assert runs.audit_notify(run_id=run.pk) is False


def test_evaluation_data_must_be_the_lineage_dataset_version_it_names(scientist, model, version, tmp_path, settings):
    from lineage.services import datasets as lineage_services

    settings.FAIRNESS_LOCAL_DATASET_ROOT = str(tmp_path)

    path = credit_csv(tmp_path / "holdout.csv", rows=300)
    dataset, _ = lineage_services.dataset_create(namespace="s3://bank", name="holdout", actor=SEED)
    registered, _ = lineage_services.dataset_version_register(
        dataset=dataset, actor=SEED,
        spec=lineage_services.VersionSpec(location_uri=f"file://{path}", content=path.read_bytes()))
    # The file is found through the dataset version's location when none is uploaded.
    spec = specs.audit_spec_create(by=scientist, model=model, version=version, name="lineage", y_true="repaid",
                                   y_pred="predicted", sensitive=["sex"], dataset_version=registered)
    assert spec.dataset_sha256 == registered.digest and spec.dataset_version_id == registered.pk
    # Other bytes under the same reference are refused.
    with pytest.raises(InvalidInput) as mismatch:
        make_spec(scientist, model, version, credit_csv(tmp_path / "other.csv", rows=300, seed=9),
                  dataset_version=registered)
    assert mismatch.value.code == "fairness_dataset_mismatch"
    assert AuditSpec.objects.count() == 1


def test_a_dataset_version_outside_the_local_root_is_never_read(scientist, model, version, tmp_path, settings):
    from lineage.services import datasets as lineage_services

    settings.FAIRNESS_LOCAL_DATASET_ROOT = str(tmp_path / "datasets")
    outside = credit_csv(tmp_path / "private.csv", rows=50)
    dataset, _ = lineage_services.dataset_create(namespace="s3://bank", name="private", actor=SEED)
    registered, _ = lineage_services.dataset_version_register(
        dataset=dataset, actor=SEED,
        spec=lineage_services.VersionSpec(location_uri=f"file://{tmp_path}/datasets/../private.csv",
                                          content=outside.read_bytes()))
    with pytest.raises(InvalidInput) as refused:
        specs.audit_spec_create(by=scientist, model=model, version=version, name="x", y_true="repaid",
                                y_pred="predicted", sensitive=["sex"], dataset_version=registered)
    assert refused.value.code == "fairness_no_dataset"

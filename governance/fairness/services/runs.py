"""Writes of audit runs: requests, their execution, notices of failing audits, and the evidence check.

Each service is one transaction with its ledger entry. `audit_execute` is the task body; it is
idempotent and safe under redelivery:

* a run is *claimed* under `SELECT ... FOR UPDATE`: a finished run is left alone; a running run
  is taken over only by a redelivery of the same task message, or once its heartbeat is older
  than FAIRNESS_RUN_LEASE_S (its worker is gone); each takeover bumps `attempt`;
* progress updates carry the attempt, so a superseded worker notices and stops;
* the result is stored under the lock only if the attempt still owns the run, so a run records
  exactly one result and one `fairness_audit.completed` (or `.failed`) ledger entry.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from audit import jcs
from audit.ledger import actor_label, draft, ledger_append, ledger_append_many, lock_for_update
from core.errors import Conflict, InvalidInput, NotFound, ServiceError
from core.outbox.services import task_enqueue_on_commit
from core.sealed import SealedPath, SealError, arrow_source, open_plain
from governance.evidence import FAIRNESS_AUDIT_PASSED
from governance.fairness import reader
from governance.fairness.engine import ConfusionAccumulator, FairnessInputError, compute_report
from governance.fairness.models import MIN_THRESHOLDS, AuditRun, AuditSpec, PredictionBatch
from governance.fairness.services import vault
from governance.fairness.services.access import can_run_audits, require_allowed, require_visible
from governance.models import Deployment, ModelVersion, RegisteredModel

logger = logging.getLogger(__name__)

# Tasks are enqueued by name (core.outbox.services.task_enqueue_on_commit): the tasks
# module imports this one, so this one never imports it.
RUN_TASK = "governance.fairness.tasks.fairness_audit_run_task"
NOTIFY_TASK = "governance.fairness.tasks.fairness_notify_task"


class AuditRunBusy(Conflict):
    """Another live worker holds the run; the task retries after the lease."""

    code = "fairness_audit_busy"


class _Superseded(Exception):
    """This attempt lost the run to a takeover; stop working, record nothing."""


def production_version(model: RegisteredModel) -> ModelVersion | None:
    """The version deployed in a production environment (the latest active deployment)."""
    deployment = (Deployment.objects.filter(model=model, environment__is_production=True, is_active=True)
                  .select_related("version").order_by("-deployed_at", "-pk").first())
    return deployment.version if deployment else None


def _window_inputs(spec: AuditSpec, now: datetime) -> tuple[list[dict[str, Any]], datetime]:
    start = now - timedelta(days=spec.window_days)
    batches = list(PredictionBatch.objects.filter(model=spec.model, uploaded_at__gte=start, uploaded_at__lte=now)
                   .order_by("uploaded_at", "pk"))
    if not batches:
        raise InvalidInput(f"'{spec.model.name}' has no prediction batches in the last {spec.window_days} days.",
                           code="fairness_no_batches", extra={"window_days": spec.window_days})
    return [{"path": batch.file.name, "sha256": batch.sha256, "batch": batch.pk} for batch in batches], start


def audit_request(*, spec: AuditSpec, by: Any, trigger: str = AuditRun.Trigger.MANUAL) -> AuditRun:
    """Queue a run of the spec; the task is published after commit (through the outbox).

    `by` is a user (checked) or a `system:<task>` label (schedules). Records `fairness_audit.requested`.
    """
    model = spec.model
    if not isinstance(by, str):
        require_visible(by, model)
        require_allowed(can_run_audits(by, model), f"You may not run fairness audits of '{model.name}'.")
    now = timezone.now()
    window_start = None
    if spec.target == AuditSpec.Target.PRODUCTION:
        version = production_version(model)
        if version is None:
            raise Conflict(f"'{model.name}' is not deployed in a production environment.",
                           code="fairness_no_production_deployment", extra={"model": model.name})
        inputs, window_start = _window_inputs(spec, now)
        dataset_label = f"{len(inputs)} prediction batch(es) of the last {spec.window_days} days"
    else:
        version = spec.version
        if not spec.dataset_file:
            raise InvalidInput("The spec has no evaluation data.", code="fairness_no_dataset")
        inputs = [{"path": spec.dataset_file.name, "sha256": spec.dataset_sha256}]
        dataset_label = spec.dataset_file.name
        if spec.dataset_version_id:
            dataset_label = f"lineage dataset version {spec.dataset_version_id}: {dataset_label}"
    with transaction.atomic():
        run = AuditRun.objects.create(
            spec=spec, model_version=version, trigger=trigger,
            requested_by=None if isinstance(by, str) else by, requested_by_label=actor_label(by),
            parameters=spec.config(), thresholds=dict(spec.thresholds), dataset_label=dataset_label[:1000],
            input_files=inputs, window_start=window_start, window_end=now if window_start else None, stage="queued")
        ledger_append(actor=by, action="fairness_audit.requested", subject=run, payload={
            "spec": spec.pk, "model": model.name, "version": version.label if version else None,
            "version_id": version.pk if version else None, "trigger": trigger,
            "inputs": [{"sha256": item["sha256"], "batch": item.get("batch")} for item in inputs]})
        task_enqueue_on_commit(RUN_TASK, run.pk)
    return run


def _claim(run_id: int, *, task_id: str | None) -> tuple[AuditRun, int, list[Any] | FairnessInputError] | None:
    """Lock the run and take it for this attempt; None if it is already finished.

    The claim records the reads of the run's sealed inputs (`sealed_file.read`) in its own
    transaction: the reads it causes and the run taking them commit together.
    """
    lease = timedelta(seconds=settings.FAIRNESS_RUN_LEASE_S)
    with transaction.atomic():
        run = lock_for_update(AuditRun.objects).filter(pk=run_id).first()
        if run is None:
            raise NotFound(f"No fairness audit {run_id}.", code="fairness_audit_not_found", extra={"id": run_id})
        if run.status in (AuditRun.Status.SUCCEEDED, AuditRun.Status.FAILED):
            return None
        now = timezone.now()
        if run.status == AuditRun.Status.RUNNING:
            same_message = bool(task_id) and run.task_id == task_id
            fresh = run.heartbeat_at is not None and now - run.heartbeat_at < lease
            if fresh and not same_message:
                raise AuditRunBusy(f"Fairness audit {run_id} is running on another worker.", extra={"id": run_id})
        run.status = AuditRun.Status.RUNNING
        run.attempt += 1
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.progress = 1
        run.stage = "reading"
        run.task_id = (task_id or "")[:200]
        run.save(update_fields=["status", "attempt", "started_at", "heartbeat_at", "progress", "stage", "task_id"])
        try:
            records: list[Any] | FairnessInputError = _sealed_inputs(run)
        except FairnessInputError as error:
            records = error
        else:
            live = [record for record in records if record.erased_at is None]
            vault.sealed_file_reads_record(by=run.requested_by_label, records=live, purpose="fairness_audit",
                                           cause=run, cause_label=f"fairness audit run {run.pk} (attempt {run.attempt})")
        return run, run.attempt, records


def _report_progress(run_id: int, attempt: int, progress: int, stage: str) -> None:
    updated = AuditRun.objects.filter(pk=run_id, attempt=attempt, status=AuditRun.Status.RUNNING).update(
        progress=max(1, min(99, progress)), stage=stage[:100], heartbeat_at=timezone.now())
    if not updated:
        raise _Superseded


def _outcome_known(column: Any) -> Any:
    """Mask of rows whose outcome is known (monitoring batches may lack outcomes)."""
    valid = pc.is_valid(column)
    if pa.types.is_dictionary(column.type) or pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        text = pc.cast(column, pa.string()) if pa.types.is_dictionary(column.type) else column
        return pc.and_kleene(valid, pc.not_equal(pc.utf8_trim_whitespace(text), ""))
    if pa.types.is_floating(column.type):
        return pc.and_kleene(valid, pc.invert(pc.is_nan(column)))
    return valid


def _estimated_rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pa_parquet

        return max(1, int(pa_parquet.ParquetFile(arrow_source(path)).metadata.num_rows))
    size = path.size() if isinstance(path, SealedPath) else path.stat().st_size
    with open_plain(path) as handle:
        sample = handle.read(64 << 10)
    lines = max(1, sample.count(b"\n"))
    return max(1, int(size / (len(sample) / lines)))


def audit_inputs(
    paths: list[Path],
    *,
    config: dict[str, Any],
    skip_unknown_outcomes: bool,
    on_progress: Callable[[float, str], None] | None = None,
    chunk_rows: int | None = None,
) -> dict[str, Any]:
    """Stream one or more files through one accumulator and report (the engine's report plus inputs)."""
    chunk_rows = chunk_rows or settings.FAIRNESS_CHUNK_ROWS
    y_true, y_pred, score, threshold = config["y_true"], config["y_pred"], config["score"], config["threshold"]
    sensitive = list(config["sensitive"])
    accumulator = ConfusionAccumulator(sensitive, pos_label=config.get("pos_label"))
    needed = list(dict.fromkeys([y_true, y_pred or score, *sensitive]))
    delay_s = float(settings.FAIRNESS_CHUNK_DELAY_S)
    skipped = 0
    rows = 0
    for index, path in enumerate(paths):
        fmt = reader._detect_format(path)
        expected = _estimated_rows(path, fmt)
        batches = (reader._parquet_batches(path, needed, chunk_rows) if fmt == "parquet"
                   else reader._csv_batches(path, needed, chunk_rows, score))

        def tracked(batches: Iterator[Any], index: int = index, expected: int = expected,
                    name: str = path.name) -> Iterator[Any]:
            nonlocal skipped
            seen = 0
            for batch in batches:
                if skip_unknown_outcomes:
                    mask = _outcome_known(batch.column(y_true))
                    kept = batch.filter(mask)
                    skipped += batch.num_rows - kept.num_rows
                    batch = kept
                seen += batch.num_rows
                yield batch
                if delay_s:
                    time.sleep(delay_s)  # test hook: makes an audit slow enough to interrupt
                if on_progress is not None:
                    on_progress((index + min(1.0, seen / expected)) / len(paths), f"reading {name}")

        rows += reader._accumulate(tracked(batches), accumulator, y_true=y_true, y_pred=y_pred, score=score,
                                   threshold=threshold)
    if rows == 0:
        raise FairnessInputError("fairness_empty_input", "no data rows to audit"
                                 + (f" ({skipped} rows have no known outcome)" if skipped else ""))
    if on_progress is not None:
        on_progress(1.0, "computing metrics")
    report = compute_report(accumulator.counts(), min_group_size=config["min_group_size"],
                            include_small_groups=config["include_small_groups"],
                            reference_group=config.get("reference_group"), bootstrap=config["bootstrap"],
                            seed=config.get("seed"))
    report["input_columns"] = {"y_true": y_true, "y_pred": y_pred, "score": score, "threshold": threshold,
                               "sensitive": sensitive}
    report["rows_without_outcome"] = skipped
    return report


def evaluate(report: dict[str, Any], thresholds: dict[str, float]) -> list[dict[str, Any]]:
    """One finding per (attribute set, threshold). An undefined metric fails (deny by default)."""
    findings: list[dict[str, Any]] = []
    for attributes, disparity in (report.get("disparities") or {}).items():
        for metric, limit in sorted(thresholds.items()):
            if metric == "impact_ratio":
                ratios = [row["impact_ratio_to_best"] for row in disparity.get("impact_ratios") or []
                          if row.get("impact_ratio_to_best") is not None
                          and (report["parameters"]["include_small_groups"] or not row.get("small_group"))]
                value = min(ratios) if len(ratios) >= 2 else None
            else:
                value = disparity.get(metric)
            rule = ">=" if metric in MIN_THRESHOLDS else "<="
            if value is None:
                passed = False
            else:
                passed = value >= limit if rule == ">=" else value <= limit
            findings.append({"attributes": attributes, "metric": metric, "value": value, "threshold": limit,
                             "rule": rule, "passed": passed,
                             **({"reason": "undefined: fewer than two comparable groups"} if value is None else {})})
    return findings


def result_sha256(result: dict[str, Any]) -> str:
    """Hex SHA-256 of the RFC 8785 (JCS) canonical bytes of the result."""
    return hashlib.sha256(jcs.canonicalize(result)).hexdigest()


def _input_sha256(inputs: list[dict[str, Any]]) -> str:
    """One file: its SHA-256. Several (a monitoring window): SHA-256 of the JCS list of their digests."""
    if len(inputs) == 1:
        return str(inputs[0]["sha256"])
    return hashlib.sha256(jcs.canonicalize([item["sha256"] for item in inputs])).hexdigest()


def _sealed_inputs(run: AuditRun) -> list[Any]:
    """The sealed records of the run's inputs, each still the file the run was requested on."""
    records = []
    for item in run.input_files:
        record = vault.sealed_file_for(item["path"])
        if record is None:
            raise FairnessInputError("fairness_file_not_found", f"{item['path']} is not a sealed data file "
                                     "(stored before encryption at rest: run manage.py data_files_encrypt)")
        if record.source_sha256 != item["sha256"]:
            raise FairnessInputError("fairness_input_changed",
                                     f"{item['path']} no longer has the digest it was stored with",
                                     expected=item["sha256"], actual=record.source_sha256)
        records.append(record)
    return records


def _verified_paths(records: list[Any]) -> list[SealedPath]:
    """Readable views of the inputs; an erased input fails the run with `data_erased`."""
    paths = []
    for record in records:
        try:
            paths.append(vault.sealed_file_open(record=record, purpose="fairness_audit"))
        except vault.DataErased as error:
            raise FairnessInputError("data_erased", str(error)) from None
        except vault.SealedFileCorrupt as error:
            raise FairnessInputError("sealed_file_corrupt", str(error)) from None
    return paths


def audit_execute(*, run_id: int, task_id: str | None = None) -> AuditRun:
    """The task body: run the audit once, store one result (or one error), record it, attach evidence."""
    claimed = _claim(run_id, task_id=task_id)
    if claimed is None:
        return AuditRun.objects.get(pk=run_id)
    run, attempt, records = claimed
    config = run.parameters

    def progress(fraction: float, stage: str) -> None:
        _report_progress(run_id, attempt, 5 + int(85 * fraction), stage)

    try:
        if isinstance(records, FairnessInputError):
            raise records
        paths = _verified_paths(records)
        report = audit_inputs(paths, config=config, on_progress=progress,
                              skip_unknown_outcomes=config["target"] == AuditSpec.Target.PRODUCTION)
    except _Superseded:
        logger.warning("fairness audit %s: attempt %s was taken over; its work is discarded", run_id, attempt)
        return AuditRun.objects.get(pk=run_id)
    except FairnessInputError as error:
        return _finish_failed(run_id, attempt, error.code, str(error))
    except SealError as error:
        # No partial result: the engine reports only after the last chunk authenticated.
        return _finish_failed(run_id, attempt, "sealed_file_corrupt", f"A stored input fails authentication: {error}.")
    except (DatabaseError, OSError):
        raise  # transient (database, storage): the task retries with backoff and takes the run over
    except Exception as error:
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(error, SoftTimeLimitExceeded):
            return _finish_failed(run_id, attempt, "fairness_time_limit", "The audit exceeded its time limit.")
        # A bug or an input the engine did not foresee: record it once instead of retrying forever.
        logger.exception("fairness audit %s failed unexpectedly", run_id)
        return _finish_failed(run_id, attempt, "fairness_internal_error",
                              f"The audit failed unexpectedly ({type(error).__name__}).")
    report["input_sha256"] = _input_sha256(run.input_files)
    report["input_files"] = [{"sha256": item["sha256"], "batch": item.get("batch")} for item in run.input_files]
    report["thresholds"] = dict(run.thresholds)
    findings = evaluate(report, run.thresholds)
    report["findings"] = findings
    return _finish_succeeded(run_id, attempt, report, findings)


def _locked_own_run(run_id: int, attempt: int) -> AuditRun | None:
    run = lock_for_update(AuditRun.objects, of=("self",)).select_related("spec__model", "model_version").get(pk=run_id)
    if run.status != AuditRun.Status.RUNNING or run.attempt != attempt:
        return None
    return run


def _finish_succeeded(run_id: int, attempt: int, report: dict[str, Any], findings: list[dict[str, Any]]) -> AuditRun:
    digest = result_sha256(report)
    passed = all(finding["passed"] for finding in findings)
    with transaction.atomic():
        run = _locked_own_run(run_id, attempt)
        if run is None:
            return AuditRun.objects.get(pk=run_id)
        now = timezone.now()
        run.status = AuditRun.Status.SUCCEEDED
        run.progress, run.stage = 100, "done"
        run.finished_at = run.heartbeat_at = now
        run.result, run.findings, run.passed = report, findings, passed
        run.input_sha256, run.result_sha256 = report["input_sha256"], digest
        actor = "system:fairness_audit_run_task"
        version = run.model_version
        payload = {"spec": run.spec_id, "model": run.spec.model.name, "version": version.label if version else None,
                   "version_id": version.pk if version else None, "trigger": run.trigger,
                   "requested_by": run.requested_by_label, "input_sha256": run.input_sha256,
                   "result_sha256": digest, "passed": passed, "rows": report["rows"],
                   "failed_findings": [f for f in findings if not f["passed"]][:20]}
        drafts = [draft(actor=actor, action="fairness_audit.completed", subject=run, payload=payload)]
        if version is not None:
            drafts.append(draft(actor=actor, action="fairness_audit.evidence_attached", subject=version, payload={
                "evidence": FAIRNESS_AUDIT_PASSED, "audit_run": run.pk, "passed": passed,
                "result_sha256": digest, "input_sha256": run.input_sha256}))
        entries = ledger_append_many(drafts)
        run.ledger_seq = entries[0].seq
        run.save()
        if not passed:
            _notify_on_commit(run.pk)
    return run


def _finish_failed(run_id: int, attempt: int, code: str, message: str) -> AuditRun:
    with transaction.atomic():
        run = _locked_own_run(run_id, attempt)
        if run is None:
            return AuditRun.objects.get(pk=run_id)
        now = timezone.now()
        run.status = AuditRun.Status.FAILED
        run.stage = "failed"
        run.finished_at = run.heartbeat_at = now
        run.result, run.passed, run.findings, run.result_sha256 = None, None, [], ""
        run.error_code, run.error_message = code[:100], message[:5000]
        version = run.model_version
        entry = ledger_append(actor="system:fairness_audit_run_task", action="fairness_audit.failed", subject=run,
                              payload={"spec": run.spec_id, "model": run.spec.model.name,
                                       "version_id": version.pk if version else None, "trigger": run.trigger,
                                       "code": run.error_code, "message": run.error_message[:500],
                                       "inputs": [item["sha256"] for item in run.input_files]})
        run.ledger_seq = entry.seq
        run.save()
        _notify_on_commit(run.pk)
    return run


def _notify_on_commit(run_id: int) -> None:
    task_enqueue_on_commit(NOTIFY_TASK, run_id)


def audit_notify(*, run_id: int) -> bool:
    """Send the failing audit's signed webhook and e-mail, each once; True once both are sent.

    Each channel is marked in its own transaction right after it succeeded, so a retry after the
    e-mail failed does not post the webhook again.
    """
    from governance.fairness import notifications

    steps = (("webhook_sent_at", notifications.send_webhook), ("emailed_at", notifications.send_email))
    for field, send in steps:
        with transaction.atomic():
            run = lock_for_update(AuditRun.objects, of=("self",)).select_related("spec__model", "model_version").get(pk=run_id)
            if run.notified_at is not None or run.passed is True or run.status not in (
                    AuditRun.Status.SUCCEEDED, AuditRun.Status.FAILED):
                return False
            if getattr(run, field) is None:
                send(run)  # raises on failure: the task retries; nothing is marked
                setattr(run, field, timezone.now())
                run.save(update_fields=[field])
    with transaction.atomic():
        return bool(AuditRun.objects.filter(pk=run_id, notified_at__isnull=True).update(notified_at=timezone.now()))


def audit_recover_stale() -> list[int]:
    """Queue again runs whose worker is gone (stale heartbeat) or that waited too long in the queue."""
    now = timezone.now()
    stale_running = now - timedelta(seconds=settings.FAIRNESS_RUN_LEASE_S)
    stale_queued = now - timedelta(seconds=settings.FAIRNESS_REQUEUE_AFTER_S)
    from django.db.models import Q

    ids = list(AuditRun.objects.filter(Q(status=AuditRun.Status.RUNNING, heartbeat_at__lt=stale_running)
                                       | Q(status=AuditRun.Status.QUEUED, created_at__lt=stale_queued))
               .order_by("pk").values_list("pk", flat=True)[:500])
    with transaction.atomic():
        for run_id in ids:
            task_enqueue_on_commit(RUN_TASK, run_id)
    return ids


def audit_scheduled(*, spec_id: int) -> AuditRun | None:
    """What beat runs: request a run of the spec as `system:fairness_schedule`; None if it cannot run now."""
    spec = AuditSpec.objects.select_related("model", "version").filter(pk=spec_id).first()
    if spec is None:
        logger.warning("fairness schedule: spec %s no longer exists", spec_id)
        return None
    try:
        return audit_request(spec=spec, by="system:fairness_schedule", trigger=AuditRun.Trigger.SCHEDULE)
    except ServiceError as error:
        logger.warning("fairness schedule: spec %s not run: %s (%s)", spec_id, error.message, error.code)
        return None

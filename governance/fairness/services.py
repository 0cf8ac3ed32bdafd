"""Writes of the fairness app: specs, audit requests and their execution, prediction uploads.

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
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from audit import jcs
from audit.errors import Conflict, InvalidInput, NotFound, ServiceError
from audit.ledger import actor_label, draft, ledger_append, ledger_append_many
from governance.evidence import FAIRNESS_AUDIT_PASSED, EvidenceResult
from governance.fairness import reader
from governance.fairness.engine import ConfusionAccumulator, FairnessInputError, compute_report
from governance.fairness.models import (
    DEFAULT_THRESHOLDS,
    MAX_THRESHOLDS,
    MIN_THRESHOLDS,
    AuditRun,
    AuditSpec,
    PredictionBatch,
)
from governance.models import Deployment, ModelVersion, RegisteredModel
from governance.outbox.services import task_enqueue_on_commit
from governance.permissions import can_view_model, can_write_model, is_active_user
from governance.roles import ADMIN, AUDITOR, DATA_SCIENTIST, RISK_OFFICER

logger = logging.getLogger(__name__)

RUN_ROLES = frozenset({DATA_SCIENTIST, RISK_OFFICER, AUDITOR, ADMIN})
SPEC_ROLES = frozenset({DATA_SCIENTIST, RISK_OFFICER, ADMIN})
# Tasks are enqueued by name (governance.outbox.services.task_enqueue_on_commit): the tasks
# module imports this one, so this one never imports it.
RUN_TASK = "governance.fairness.tasks.fairness_audit_run_task"
NOTIFY_TASK = "governance.fairness.tasks.fairness_notify_task"
SCHEDULED_TASK = "governance.fairness.tasks.fairness_audit_scheduled_task"
# Where a threshold name given with an explicit direction maps to (both spellings are accepted).
_THRESHOLD_ALIASES = {f"{name}_min": name for name in MIN_THRESHOLDS} | {f"{name}_max": name for name in MAX_THRESHOLDS}
_THRESHOLD_ALIASES["min_impact_ratio"] = "impact_ratio"
KNOWN_METRICS = frozenset(MIN_THRESHOLDS + MAX_THRESHOLDS)


class UploadTooLarge(ServiceError):
    code = "fairness_upload_too_large"
    status_code = 413


class AuditRunBusy(Conflict):
    """Another live worker holds the run; the task retries after the lease."""

    code = "fairness_audit_busy"


class _Superseded(Exception):
    """This attempt lost the run to a takeover; stop working, record nothing."""


# --- Access ------------------------------------------------------------------------------------

def _roles(user: Any) -> set[str]:
    if not is_active_user(user):
        return set()
    return set(user.groups.values_list("name", flat=True))


def can_run_audits(user: Any, model: RegisteredModel) -> bool:
    """Data scientists, risk officers, auditors and admins who can see the model may run its audits."""
    if not can_view_model(user, model):
        return False
    return bool(user.is_superuser or _roles(user) & RUN_ROLES)


def can_manage_specs(user: Any, model: RegisteredModel) -> bool:
    if not can_view_model(user, model):
        return False
    return bool(user.is_superuser or _roles(user) & SPEC_ROLES)


def _require_visible(user: Any, model: RegisteredModel) -> None:
    if not can_view_model(user, model):
        raise NotFound(f"No model named '{model.name}'.", code="model_not_found", extra={"model": model.name})


def _require(allowed: bool, message: str) -> None:
    if not allowed:
        raise ServiceError(message, code="permission_denied", status_code=403)


# --- Specs -------------------------------------------------------------------------------------

def normalise_thresholds(raw: Any) -> dict[str, float]:
    """`{"impact_ratio_min": 0.8}` and `{"impact_ratio": 0.8}` both mean: every impact ratio >= 0.8."""
    if raw is None:
        return dict(DEFAULT_THRESHOLDS)
    if not isinstance(raw, dict):
        raise InvalidInput("'thresholds' must be an object of metric -> number.", code="fairness_bad_thresholds")
    thresholds: dict[str, float] = {}
    for key, value in raw.items():
        name = _THRESHOLD_ALIASES.get(key, key)
        if name not in KNOWN_METRICS:
            raise InvalidInput(f"Unknown threshold '{key}'.", code="fairness_bad_thresholds",
                               extra={"threshold": key, "known": sorted(KNOWN_METRICS)})
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InvalidInput(f"Threshold '{key}' must be a number between 0 and 1.", code="fairness_bad_thresholds",
                               extra={"threshold": key})
        thresholds[name] = float(value)
    return thresholds


def _validate_columns(*, y_true: str, y_pred: str, score: str, threshold: float | None, sensitive: Any) -> list[str]:
    if not y_true:
        raise InvalidInput("'y_true' names the outcome column and is required.", code="fairness_bad_arguments")
    if bool(y_pred) == bool(score):
        raise InvalidInput("Give exactly one of 'y_pred' or 'score'.", code="fairness_bad_arguments")
    if score and threshold is None:
        raise InvalidInput("A 'score' column needs a 'threshold'.", code="fairness_bad_arguments")
    if not isinstance(sensitive, list) or not sensitive or not all(isinstance(c, str) and c for c in sensitive):
        raise InvalidInput("'sensitive' must be a non-empty list of column names.", code="fairness_bad_arguments")
    return list(dict.fromkeys(sensitive))


def file_columns(path: Path) -> list[str]:
    """Column names of a CSV or Parquet file (header / schema only)."""
    import pyarrow.parquet as pa_parquet  # type: ignore[import-untyped]

    try:
        if reader._detect_format(path) == "parquet":
            return list(pa_parquet.ParquetFile(path).schema_arrow.names)
        reader._check_csv_header(path)
        with pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 20, use_threads=False)) as csv:
            return list(csv.schema.names)
    except FairnessInputError:
        raise
    except (pa.ArrowException, OSError) as error:
        raise FairnessInputError("fairness_malformed_file", f"{path.name} is not a readable CSV or Parquet file: {error}",
                                 ) from error


def _require_columns(path: Path, needed: list[str]) -> None:
    present = set(file_columns(path))
    missing = [name for name in needed if name not in present]
    if missing:
        raise FairnessInputError("fairness_missing_column", f"{path.name} lacks column(s) {missing}", missing=missing)


def _input_error(error: FairnessInputError, *, temp: Path | None = None, shown: str = "") -> InvalidInput:
    """The engine's error as a 400; a temporary file's name in the message becomes the uploaded name."""
    message = str(error)
    if temp is not None:
        message = message.replace(temp.name, shown or "the file")
    return InvalidInput(message, code=error.code, extra=dict(getattr(error, "extra", {}) or {}))


def _store_upload(uploaded: Any, *, folder: str, max_bytes: int) -> tuple[Path, str, int]:
    """Copy an upload to a private temporary file under MEDIA_ROOT, hashing it; refuse oversize."""
    size = getattr(uploaded, "size", None)
    if size is not None and size > max_bytes:
        raise UploadTooLarge(f"The file is {size} bytes; the limit is {max_bytes}.",
                             extra={"size_bytes": size, "max_bytes": max_bytes})
    tmp_dir = Path(settings.MEDIA_ROOT) / "fairness" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix=folder, delete=False)
    digest = hashlib.sha256()
    written = 0
    try:
        with handle:
            for chunk in uploaded.chunks() if hasattr(uploaded, "chunks") else iter(lambda: uploaded.read(1 << 20), b""):
                written += len(chunk)
                if written > max_bytes:
                    raise UploadTooLarge(f"The file is larger than the limit of {max_bytes} bytes.",
                                         extra={"max_bytes": max_bytes})
                digest.update(chunk)
                handle.write(chunk)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return Path(handle.name), digest.hexdigest(), written


def _save_to_storage(temp: Path, name: str) -> str:
    with temp.open("rb") as source:
        return default_storage.save(name, File(source))


def _schedule_task(spec: AuditSpec, *, interval_s: int | None, crontab: str | None) -> Any:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    if interval_s is None and not crontab:
        return None
    fields: dict[str, Any] = {}
    if crontab:
        parts = crontab.split()
        if len(parts) != 5:
            raise InvalidInput("'schedule_crontab' needs 5 fields: minute hour day month weekday.",
                               code="fairness_bad_schedule")
        minute, hour, day_of_month, month_of_year, day_of_week = parts
        from celery.schedules import crontab as celery_crontab

        try:
            celery_crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                           day_of_week=day_of_week)
        except (ValueError, TypeError) as error:
            raise InvalidInput(f"'schedule_crontab' is not a valid crontab: {error}", code="fairness_bad_schedule")
        fields["crontab"], _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
            day_of_week=day_of_week, timezone="UTC")
    else:
        assert interval_s is not None
        if interval_s < 1:
            raise InvalidInput("'schedule_interval_s' must be >= 1.", code="fairness_bad_schedule")
        fields["interval"], _ = IntervalSchedule.objects.get_or_create(every=interval_s,
                                                                       period=IntervalSchedule.SECONDS)
    import json

    return PeriodicTask.objects.create(name=f"fairness audit: {spec.name} (spec {spec.pk})", task=SCHEDULED_TASK,
                                       kwargs=json.dumps({"spec_id": spec.pk}), **fields)


def audit_spec_create(
    *,
    by: Any,
    model: RegisteredModel,
    name: str,
    y_true: str,
    sensitive: list[str],
    target: str = AuditSpec.Target.VERSION,
    version: ModelVersion | None = None,
    dataset_version: Any = None,
    dataset_file: Any = None,
    dataset_path: str | os.PathLike[str] | None = None,
    y_pred: str = "",
    score: str = "",
    threshold: float | None = None,
    pos_label: str = "",
    metrics: list[str] | None = None,
    thresholds: dict[str, Any] | None = None,
    min_group_size: int = 30,
    include_small_groups: bool = False,
    reference_group: dict[str, Any] | None = None,
    bootstrap: int = 0,
    seed: int | None = None,
    window_days: int = 30,
    schedule_interval_s: int | None = None,
    schedule_crontab: str | None = None,
) -> AuditSpec:
    """Create an audit spec (and its beat schedule, if one is given); records `fairness_spec.created`.

    The evaluation data is an uploaded file (`dataset_file`) or a local file copied in
    (`dataset_path`); a spec on production monitoring reads prediction batches instead.
    """
    _require_visible(by, model)
    _require(can_manage_specs(by, model), f"You may not define fairness audits for '{model.name}'.")
    sensitive = _validate_columns(y_true=y_true, y_pred=y_pred, score=score, threshold=threshold, sensitive=sensitive)
    normalised = normalise_thresholds(thresholds)
    unknown_metrics = [m for m in (metrics or []) if m not in KNOWN_METRICS]
    if unknown_metrics:
        raise InvalidInput(f"Unknown metric(s) {unknown_metrics}.", code="fairness_bad_metrics",
                           extra={"known": sorted(KNOWN_METRICS)})
    if target not in AuditSpec.Target.values:
        raise InvalidInput(f"'target' must be one of {AuditSpec.Target.values}.", code="fairness_bad_arguments")
    if dataset_version is not None and dataset_file is None and dataset_path is None:
        dataset_path = _local_dataset_path(dataset_version)
    if target == AuditSpec.Target.VERSION:
        if version is None or version.model_id != model.pk:
            raise InvalidInput("A spec on a model version needs a version of this model.",
                               code="fairness_bad_arguments")
        if dataset_file is None and dataset_path is None:
            raise InvalidInput("A spec on a model version needs its evaluation data (a CSV or Parquet file).",
                               code="fairness_no_dataset")
    if threshold is not None and not math.isfinite(threshold):
        raise InvalidInput("'threshold' must be a finite number.", code="fairness_bad_arguments")
    if seed is not None and not 0 <= seed < 2**63:
        raise InvalidInput("'seed' must be between 0 and 2**63 - 1.", code="fairness_bad_arguments")
    if bootstrap < 0 or bootstrap > settings.FAIRNESS_MAX_BOOTSTRAP:
        raise InvalidInput(f"'bootstrap' must be between 0 and {settings.FAIRNESS_MAX_BOOTSTRAP}.",
                           code="fairness_bad_arguments")
    if min_group_size < 0 or window_days < 1:
        raise InvalidInput("'min_group_size' must be >= 0 and 'window_days' >= 1.", code="fairness_bad_arguments")
    needed = list(dict.fromkeys([y_true, y_pred or score, *sensitive]))

    temp: Path | None = None
    stored_name = ""
    digest = ""
    try:
        if dataset_file is not None or dataset_path is not None:
            if dataset_path is not None:
                with open(dataset_path, "rb") as source:
                    temp, digest, _ = _store_upload(File(source), folder="spec-",
                                                    max_bytes=settings.FAIRNESS_MAX_DATASET_BYTES)
            else:
                temp, digest, _ = _store_upload(dataset_file, folder="spec-", max_bytes=settings.FAIRNESS_MAX_DATASET_BYTES)
            try:
                _require_columns(temp, needed)
            except FairnessInputError as error:
                shown = Path(str(dataset_path)).name if dataset_path is not None else getattr(dataset_file, "name", "")
                raise _input_error(error, temp=temp, shown=shown) from error
            if (dataset_version is not None and dataset_version.digest_kind == "content"
                    and dataset_version.digest != digest):
                raise InvalidInput("The evaluation data is not the lineage dataset version it names: the SHA-256 "
                                   "of its bytes differs.", code="fairness_dataset_mismatch",
                                   extra={"dataset_version": dataset_version.pk, "expected": dataset_version.digest,
                                          "actual": digest})
            suffix = "parquet" if reader._detect_format(temp) == "parquet" else "csv"
            stored_name = _save_to_storage(temp, f"fairness/datasets/{digest}.{suffix}")
        with transaction.atomic():
            spec = AuditSpec.objects.create(
                name=name.strip()[:200] or f"{model.name} fairness", model=model, target=target,
                version=version if target == AuditSpec.Target.VERSION else None, dataset_version=dataset_version,
                dataset_file=stored_name, dataset_sha256=digest, y_true=y_true, y_pred=y_pred, score=score,
                threshold=threshold, sensitive=sensitive, pos_label=pos_label or "", metrics=list(metrics or []),
                thresholds=normalised, min_group_size=min_group_size, include_small_groups=include_small_groups,
                reference_group=reference_group or None, bootstrap=bootstrap, seed=seed, window_days=window_days,
                created_by=by if is_active_user(by) else None)
            periodic = _schedule_task(spec, interval_s=schedule_interval_s, crontab=schedule_crontab)
            if periodic is not None:
                spec.periodic_task = periodic
                spec.save(update_fields=["periodic_task"])
            ledger_append(actor=by, action="fairness_spec.created", subject=spec, payload={
                "model": model.name, "version": version.label if version else None, "target": target,
                "dataset_sha256": digest or None,
                "dataset_version": getattr(dataset_version, "pk", None), "config": spec.config(),
                "schedule": _schedule_text(periodic)})
    except BaseException:
        if stored_name:
            default_storage.delete(stored_name)
        raise
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)
    return spec


def _local_dataset_path(dataset_version: Any) -> Path | None:
    """The dataset version's file when its location is a local path under FAIRNESS_LOCAL_DATASET_ROOT.

    Only under that folder (empty: never), so that a dataset version cannot make the server read
    an arbitrary local file.
    """
    root = settings.FAIRNESS_LOCAL_DATASET_ROOT
    uri = str(dataset_version.location_uri or "")
    if not root or not uri.startswith(("file:///", "/")):
        return None
    path = Path(uri.removeprefix("file://")).resolve()
    if not path.is_relative_to(Path(root).resolve()) or not path.is_file():
        return None
    return path


def _schedule_text(periodic: Any) -> str | None:
    if periodic is None:
        return None
    return str(periodic.crontab or periodic.interval)


# --- Requests ----------------------------------------------------------------------------------

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
        _require_visible(by, model)
        _require(can_run_audits(by, model), f"You may not run fairness audits of '{model.name}'.")
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


# --- Execution ---------------------------------------------------------------------------------

def _claim(run_id: int, *, task_id: str | None) -> tuple[AuditRun, int] | None:
    """Lock the run and take it for this attempt; None if it is already finished."""
    lease = timedelta(seconds=settings.FAIRNESS_RUN_LEASE_S)
    with transaction.atomic():
        run = AuditRun.objects.select_for_update().filter(pk=run_id).first()
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
        return run, run.attempt


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

        return max(1, int(pa_parquet.ParquetFile(path).metadata.num_rows))
    size = path.stat().st_size
    with path.open("rb") as handle:
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


def _verified_paths(run: AuditRun) -> list[Path]:
    paths = []
    for item in run.input_files:
        path = Path(default_storage.path(item["path"]))
        if not path.is_file():
            raise FairnessInputError("fairness_file_not_found", f"{item['path']} is missing from storage")
        actual = reader.file_sha256(path)
        if actual != item["sha256"]:
            raise FairnessInputError("fairness_input_changed",
                                     f"{item['path']} no longer has the digest it was stored with",
                                     expected=item["sha256"], actual=actual)
        paths.append(path)
    return paths


def audit_execute(*, run_id: int, task_id: str | None = None) -> AuditRun:
    """The task body: run the audit once, store one result (or one error), record it, attach evidence."""
    claimed = _claim(run_id, task_id=task_id)
    if claimed is None:
        return AuditRun.objects.get(pk=run_id)
    run, attempt = claimed
    config = run.parameters

    def progress(fraction: float, stage: str) -> None:
        _report_progress(run_id, attempt, 5 + int(85 * fraction), stage)

    try:
        paths = _verified_paths(run)
        report = audit_inputs(paths, config=config, on_progress=progress,
                              skip_unknown_outcomes=config["target"] == AuditSpec.Target.PRODUCTION)
    except _Superseded:
        logger.warning("fairness audit %s: attempt %s was taken over; its work is discarded", run_id, attempt)
        return AuditRun.objects.get(pk=run_id)
    except FairnessInputError as error:
        return _finish_failed(run_id, attempt, error.code, str(error))
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
    run = AuditRun.objects.select_for_update(of=("self",)).select_related("spec__model", "model_version").get(pk=run_id)
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
            run = AuditRun.objects.select_for_update(of=("self",)).select_related("spec__model", "model_version").get(pk=run_id)
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


# --- Production prediction batches --------------------------------------------------------------

def _validate_batch(path: Path) -> tuple[str, int, list[str]]:
    """Read the whole file (chunked) so a malformed row is refused now, not at audit time."""
    fmt = reader._detect_format(path)
    columns = file_columns(path)
    if not columns:
        raise FairnessInputError("fairness_empty_input", f"{path.name} has no columns")
    batches = (reader._parquet_batches(path, columns, 1_000_000) if fmt == "parquet"
               else reader._csv_batches(path, columns, 1_000_000, None))
    rows = sum(batch.num_rows for batch in batches)
    if rows == 0:
        raise FairnessInputError("fairness_empty_input", f"{path.name} has a header but no data rows")
    return fmt, rows, columns


def _monitoring_columns(model: RegisteredModel) -> list[str]:
    needed: list[str] = []
    for spec in AuditSpec.objects.filter(model=model, target=AuditSpec.Target.PRODUCTION):
        needed += [spec.y_true, spec.y_pred or spec.score, *spec.sensitive]
    return list(dict.fromkeys(needed))


def prediction_batch_upload(*, by: Any, model: RegisteredModel, uploaded: Any,
                            served_version: ModelVersion | None = None) -> tuple[PredictionBatch, bool]:
    """Store a batch of production predictions; (batch, created). The same bytes again return the first batch.

    Oversized: 413 `fairness_upload_too_large`; unreadable, empty, or lacking a column a monitoring
    spec needs: 400 with the engine's code. Nothing is stored for a refused upload.
    """
    _require_visible(by, model)
    _require(can_write_model(by, model, "governance.add_modelversion"),
             f"You may not upload predictions of '{model.name}'.")
    if served_version is not None and served_version.model_id != model.pk:
        raise InvalidInput("'version' is not a version of this model.", code="fairness_bad_arguments")
    temp, digest, size = _store_upload(uploaded, folder="batch-", max_bytes=settings.FAIRNESS_MAX_UPLOAD_BYTES)
    stored_name = ""
    try:
        existing = PredictionBatch.objects.filter(model=model, sha256=digest).first()
        if existing is not None:
            return existing, False
        try:
            fmt, rows, columns = _validate_batch(temp)
            missing = [name for name in _monitoring_columns(model) if name not in columns]
            if missing:
                raise FairnessInputError("fairness_missing_column",
                                         f"the batch lacks column(s) {missing} that this model's monitoring audits read",
                                         missing=missing)
        except FairnessInputError as error:
            raise _input_error(error, temp=temp, shown=getattr(uploaded, "name", "")) from error
        version = served_version or production_version(model)
        batch = PredictionBatch(model=model, served_version=version, file_format=fmt, sha256=digest,
                                size_bytes=size, rows=rows, columns=columns, uploaded_by_label=actor_label(by))
        stored_name = _save_to_storage(temp, f"fairness/predictions/{model.name}/{digest}.{fmt}")
        batch.file.name = stored_name
        try:
            with transaction.atomic():
                batch.save()
                ledger_append(actor=by, action="prediction_batch.uploaded", subject=batch, payload={
                    "model": model.name, "sha256": digest, "size_bytes": size, "rows": rows, "format": fmt,
                    "served_version": version.label if version else None})
        except IntegrityError:
            default_storage.delete(stored_name)
            stored_name = ""
            existing = PredictionBatch.objects.filter(model=model, sha256=digest).first()
            if existing is None:
                raise
            return existing, False
        stored_name = ""  # committed: keep it
        return batch, True
    finally:
        temp.unlink(missing_ok=True)
        if stored_name:
            default_storage.delete(stored_name)


# --- Evidence ----------------------------------------------------------------------------------

def fairness_audit_passed(*, version: ModelVersion, max_age_days: int | None = None, **_: Any) -> EvidenceResult:
    """Evidence check: the version's latest completed audit within `max_age_days` exists and passed."""
    runs = AuditRun.objects.filter(model_version=version, status=AuditRun.Status.SUCCEEDED)
    if max_age_days is not None:
        runs = runs.filter(finished_at__gte=timezone.now() - timedelta(days=int(max_age_days)))
    latest = runs.order_by("-finished_at", "-pk").first()
    age = f" in the last {max_age_days} days" if max_age_days is not None else ""
    if latest is None:
        return EvidenceResult(False, f"No completed fairness audit of this version{age}.")
    references = {"audit_run": latest.pk, "result_sha256": latest.result_sha256, "input_sha256": latest.input_sha256,
                  "finished_at": latest.finished_at.isoformat() if latest.finished_at else None,
                  "ledger_seq": latest.ledger_seq}
    if not latest.passed:
        failed = [f"{f['attributes']} {f['metric']}" for f in latest.findings if not f.get("passed")]
        return EvidenceResult(False, f"The latest fairness audit (#{latest.pk}) failed: {', '.join(failed[:5])}.",
                              references)
    return EvidenceResult(True, f"Fairness audit #{latest.pk} passed.", references)



def audit_spec_schedule_set(*, by: Any, spec: AuditSpec, periodic_task: Any) -> AuditSpec:
    """Link (or unlink, with None) a django-celery-beat schedule to the spec; records the change."""
    _require_visible(by, spec.model)
    _require(can_manage_specs(by, spec.model), f"You may not schedule fairness audits of '{spec.model.name}'.")
    if periodic_task is not None and periodic_task.task != SCHEDULED_TASK:
        raise InvalidInput(f"The periodic task must run {SCHEDULED_TASK}.", code="fairness_bad_schedule")
    import json

    with transaction.atomic():
        spec = AuditSpec.objects.select_for_update().get(pk=spec.pk)
        before = spec.periodic_task_id
        if periodic_task is not None:
            wanted = {"spec_id": spec.pk}
            if json.loads(periodic_task.kwargs or "{}") != wanted:
                periodic_task.kwargs = json.dumps(wanted)
                periodic_task.save(update_fields=["kwargs"])
        spec.periodic_task = periodic_task
        spec.save(update_fields=["periodic_task"])
        ledger_append(actor=by, action="fairness_spec.schedule_changed", subject=spec, payload={
            "before": before, "after": getattr(periodic_task, "pk", None),
            "schedule": _schedule_text(periodic_task)})
    return spec

"""Writes of audit specs: what to audit, on which data, against which thresholds, on which schedule."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction

from audit.ledger import ledger_append, lock_for_update
from core.errors import InvalidInput
from governance.fairness import reader
from governance.fairness.engine import FairnessInputError
from governance.fairness.models import DEFAULT_THRESHOLDS, MAX_THRESHOLDS, MIN_THRESHOLDS, AuditSpec
from governance.fairness.services import vault
from governance.fairness.services.access import (
    can_manage_specs,
    require_allowed,
    require_dataset_owner,
    require_visible,
)
from governance.fairness.services.uploads import input_error, require_columns, store_upload
from governance.models import ModelVersion, RegisteredModel
from governance.permissions import is_active_user
from lineage import manifests

# Beat runs this task by name (see the tasks module); a spec's PeriodicTask must name it.
SCHEDULED_TASK = "governance.fairness.tasks.fairness_audit_scheduled_task"
# Where a threshold name given with an explicit direction maps to (both spellings are accepted).
_THRESHOLD_ALIASES = {f"{name}_min": name for name in MIN_THRESHOLDS} | {f"{name}_max": name for name in MAX_THRESHOLDS}
_THRESHOLD_ALIASES["min_impact_ratio"] = "impact_ratio"
KNOWN_METRICS = frozenset(MIN_THRESHOLDS + MAX_THRESHOLDS)


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
    identifier_columns: list[str] | None = None,
) -> AuditSpec:
    """Create an audit spec (and its beat schedule, if one is given); records `fairness_spec.created`.

    The evaluation data is an uploaded file (`dataset_file`) or a local file copied in
    (`dataset_path`), stored sealed, its `identifier_columns` replaced by the team's keyed hashes;
    a spec on production monitoring reads prediction batches instead.
    """
    require_visible(by, model)
    require_allowed(can_manage_specs(by, model), f"You may not define fairness audits for '{model.name}'.")
    sensitive = _validate_columns(y_true=y_true, y_pred=y_pred, score=score, threshold=threshold, sensitive=sensitive)
    normalised = normalise_thresholds(thresholds)
    unknown_metrics = [m for m in (metrics or []) if m not in KNOWN_METRICS]
    if unknown_metrics:
        raise InvalidInput(f"Unknown metric(s) {unknown_metrics}.", code="fairness_bad_metrics",
                           extra={"known": sorted(KNOWN_METRICS)})
    if target not in AuditSpec.Target.values:
        raise InvalidInput(f"'target' must be one of {AuditSpec.Target.values}.", code="fairness_bad_arguments")
    if dataset_version is not None:
        require_dataset_owner(by, dataset_version)
        _require_checkable(dataset_version)
    if dataset_version is not None and dataset_file is None and dataset_path is None:
        dataset_path = vault.lineage_dataset_local_path(dataset_version)
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
    identifiers = _validate_identifiers(identifier_columns, needed)

    temp: Any = None
    stored_name = ""
    sealed_record = None
    digest = ""
    try:
        if dataset_file is not None or dataset_path is not None:
            if dataset_path is not None:
                with open(dataset_path, "rb") as source:
                    temp, digest, _ = store_upload(File(source), folder="spec-",
                                                   max_bytes=settings.FAIRNESS_MAX_DATASET_BYTES)
            else:
                temp, digest, _ = store_upload(dataset_file, folder="spec-", max_bytes=settings.FAIRNESS_MAX_DATASET_BYTES)
            # The bytes were hashed as they were copied; they are checked against the dataset
            # version before anything parses them.
            if dataset_version is not None:
                _require_digest(dataset_version, digest)
            try:
                require_columns(temp, list(dict.fromkeys([*needed, *identifiers])))
            except FairnessInputError as error:
                shown = Path(str(dataset_path)).name if dataset_path is not None else getattr(dataset_file, "name", "")
                raise input_error(error, temp=temp, shown=shown) from None
            suffix = "parquet" if reader._detect_format(temp) == "parquet" else "csv"
            sealed_record = vault.sealed_file_prepare(
                temp=temp, name=f"fairness/datasets/{digest}.{suffix}", kind="dataset", fmt=suffix, source_sha256=digest,
                model=model, identifier_columns=identifiers, sensitive_columns=sensitive,
                purpose=f"bias detection (EU AI Act Art. 10(5)): fairness audit spec '{name.strip()[:200]}' of "
                        f"'{model.name}' over {', '.join(sensitive)}")
            stored_name = sealed_record.name
        with transaction.atomic():
            spec = AuditSpec.objects.create(
                name=name.strip()[:200] or f"{model.name} fairness", model=model, target=target,
                version=version if target == AuditSpec.Target.VERSION else None, dataset_version=dataset_version,
                dataset_file=stored_name, dataset_sha256=digest, y_true=y_true, y_pred=y_pred, score=score,
                threshold=threshold, sensitive=sensitive, pos_label=pos_label or "", metrics=list(metrics or []),
                thresholds=normalised, min_group_size=min_group_size, include_small_groups=include_small_groups,
                reference_group=reference_group or None, bootstrap=bootstrap, seed=seed, window_days=window_days,
                created_by=by if is_active_user(by) else None)
            if sealed_record is not None:
                sealed_record.save()
            periodic = _schedule_task(spec, interval_s=schedule_interval_s, crontab=schedule_crontab)
            if periodic is not None:
                spec.periodic_task = periodic
                spec.save(update_fields=["periodic_task"])
            ledger_append(actor=by, action="fairness_spec.created", subject=spec, payload={
                "model": model.name, "version": version.label if version else None, "target": target,
                "dataset_sha256": digest or None,
                "dataset_file": vault.sealed_file_summary(sealed_record) if sealed_record is not None else None,
                "dataset_version": getattr(dataset_version, "pk", None), "config": spec.config(),
                "schedule": _schedule_text(periodic)})
    except BaseException:
        vault.sealed_file_discard(stored_name)
        raise
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)
    return spec


def _validate_identifiers(identifier_columns: Any, needed: list[str]) -> list[str]:
    """Direct identifiers are pseudonymised before storage; the columns an audit reads cannot be among them."""
    if identifier_columns is None:
        return []
    if not isinstance(identifier_columns, list) or not all(isinstance(c, str) and c for c in identifier_columns):
        raise InvalidInput("'identifier_columns' must be a list of column names.", code="fairness_bad_arguments")
    clash = [name for name in identifier_columns if name in needed]
    if clash:
        raise InvalidInput(f"Column(s) {clash} are read by the audit, so they cannot be direct identifiers.",
                           code="fairness_bad_arguments", extra={"columns": clash})
    return list(dict.fromkeys(identifier_columns))


def _require_checkable(dataset_version: Any) -> None:
    """Only a dataset version whose digest covers its bytes (content, or a manifest of file digests)
    can vouch for evaluation data; an OpenLineage identity digest saw no content."""
    if dataset_version.digest_kind not in ("content", "manifest"):
        raise InvalidInput("The dataset version's digest does not cover its content, so no file can be checked "
                           "against it.", code="fairness_dataset_unverifiable",
                           extra={"dataset_version": dataset_version.pk, "digest_kind": dataset_version.digest_kind})


def _require_digest(dataset_version: Any, digest: str) -> None:
    """The SHA-256 of the evaluation bytes must be the version's content digest, or one file of its
    manifest, the manifest itself hashing to the version's digest."""
    if dataset_version.digest_kind == "content":
        matches = dataset_version.digest == digest
    else:
        try:
            matches = (manifests.manifest_digest(dataset_version.manifest) == dataset_version.digest
                       and digest in manifests.validate_manifest(dataset_version.manifest).values())
        except manifests.ManifestError:
            matches = False
    if not matches:
        raise InvalidInput("The evaluation data is not the lineage dataset version it names: the SHA-256 "
                           "of its bytes differs.", code="fairness_dataset_mismatch",
                           extra={"dataset_version": dataset_version.pk, "digest_kind": dataset_version.digest_kind,
                                  "expected": dataset_version.digest, "actual": digest})


def _schedule_text(periodic: Any) -> str | None:
    if periodic is None:
        return None
    return str(periodic.crontab or periodic.interval)


def audit_spec_schedule_set(*, by: Any, spec: AuditSpec, periodic_task: Any) -> AuditSpec:
    """Link (or unlink, with None) a django-celery-beat schedule to the spec; records the change."""
    require_visible(by, spec.model)
    require_allowed(can_manage_specs(by, spec.model), f"You may not schedule fairness audits of '{spec.model.name}'.")
    if periodic_task is not None and periodic_task.task != SCHEDULED_TASK:
        raise InvalidInput(f"The periodic task must run {SCHEDULED_TASK}.", code="fairness_bad_schedule")
    import json

    with transaction.atomic():
        spec = lock_for_update(AuditSpec.objects).get(pk=spec.pk)
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

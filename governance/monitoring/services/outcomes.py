"""Late outcomes: outcomes that arrive after their predictions, joined to a prediction batch by its
prediction id column, and the restatement of every window they change.

A restatement never updates a run: it is a new run over the same batches and reference profile,
linked to the run it replaces (`restates`), with its own `monitor_run.restated` entry naming the
replaced run and its result digest. Recording the outcomes and restating the runs they touch is
one transaction (`late_outcomes.recorded` and the restatements commit together, or nothing does).
Outcomes change a window's performance only: a restatement computes the performance again and keeps
the replaced run's drift while nothing it was computed from has changed (`_drift_unchanged`), so the
transaction does not read and compare every column of the window again. The join and its checks
(ids present, none repeated, every outcome's id in the batch) run in Arrow, not row by row.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from django.db import transaction

from audit.ledger import ledger_append, lock_for_update
from core.errors import Conflict, InvalidInput
from governance.fairness.models import PredictionBatch, SealedFile
from governance.fairness.services import vault
from governance.fairness.services.access import require_allowed, require_visible
from governance.monitoring.drift import ENGINE_VERSION, DriftInputError
from governance.monitoring.models import Alert, LateOutcome, MonitorRun
from governance.monitoring.reader import read_columns
from governance.monitoring.services.monitors import (
    DRIFT_THRESHOLDS,
    _alerts_raise,
    _canonical_sha256,
    _evaluate,
    _window_files,
)
from governance.monitoring.services.profiles import drift_input_error, reference_profile_load, reference_profile_sealed
from governance.permissions import can_write_model

MAX_OUTCOMES = 100_000


def _checked(outcomes: Any) -> dict[str, float]:
    if not isinstance(outcomes, list) or not outcomes:
        raise InvalidInput("'outcomes' must be a non-empty list of {prediction_id, outcome}.",
                           code="monitoring_bad_arguments")
    if len(outcomes) > MAX_OUTCOMES:
        raise InvalidInput(f"At most {MAX_OUTCOMES} outcomes per request.", code="monitoring_bad_arguments")
    checked: dict[str, float] = {}
    duplicates: list[str] = []
    for item in outcomes:
        prediction_id = item.get("prediction_id") if isinstance(item, dict) else None
        value = item.get("outcome") if isinstance(item, dict) else None
        if isinstance(prediction_id, int) and not isinstance(prediction_id, bool):
            prediction_id = str(prediction_id)
        if not isinstance(prediction_id, str) or not prediction_id or len(prediction_id) > 200:
            raise InvalidInput("Each outcome needs a 'prediction_id' (text, at most 200 characters).",
                               code="monitoring_bad_arguments")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInput("Each outcome needs a finite number 'outcome'.", code="monitoring_bad_arguments")
        if prediction_id in checked:
            duplicates.append(prediction_id)
        checked[prediction_id] = float(value)
    if duplicates:
        raise InvalidInput("A prediction id appears more than once in the outcomes.",
                           code="monitoring_duplicate_prediction_id", extra={"prediction_ids": sorted(set(duplicates))[:20]})
    return checked


def _batch_ids(batch: PredictionBatch, id_column: str) -> tuple[Any, list[Any]]:
    """The batch's prediction ids (an Arrow text array, in row order) and its sealed record; checked in
    Arrow (every id present, none repeated), not row by row."""
    if id_column not in (batch.columns or []):
        raise InvalidInput(f"The batch has no prediction id column {id_column!r}.", code="monitoring_no_prediction_id",
                           extra={"columns": list(batch.columns or [])[:100]})
    records = list(SealedFile.objects.filter(name=batch.file.name))  # an erased one: 410 data_erased on open
    try:
        ids = next(values for _name, values in read_columns(
            vault.sealed_file_open(record=records[0], purpose="monitoring_run"), [], [id_column], arrow_text=True))
    except DriftInputError as error:
        raise drift_input_error(error) from error
    counted = pc.value_counts(ids)
    values, counts = counted.field("values"), counted.field("counts")
    repeated = pc.filter(values, pc.and_(pc.greater(counts, 1), pc.is_valid(values)))
    if len(repeated):
        raise InvalidInput(f"The batch repeats prediction ids in {id_column!r}; outcomes cannot be joined.",
                           code="monitoring_duplicate_prediction_id",
                           extra={"prediction_ids": sorted(repeated.to_pylist())[:20]})
    if ids.null_count:
        raise InvalidInput(f"Some rows of the batch have no prediction id in {id_column!r}.",
                           code="monitoring_no_prediction_id")
    return ids, records


def _unknown_ids(checked: dict[str, float], ids: Any) -> list[str]:
    """The outcomes' prediction ids that are not in the batch, sorted."""
    keys = pa.array(list(checked), type=pa.string())
    return sorted(pc.filter(keys, pc.invert(pc.is_in(keys, value_set=ids))).to_pylist())


def late_outcomes_record(*, by: Any, batch: PredictionBatch, outcomes: Any, id_column: str = "prediction_id"
                         ) -> tuple[list[LateOutcome], list[MonitorRun]]:
    """Record outcomes of a batch's predictions by prediction id, and restate each latest run over
    the batch whose monitor measures performance. Records `late_outcomes.recorded` and one
    `monitor_run.restated` per restatement. A prediction id not in the batch: 400
    `monitoring_unknown_prediction_id`; twice in the request or the batch: 400
    `monitoring_duplicate_prediction_id`; already given an outcome: 409 `monitoring_outcome_exists`."""
    model = batch.model
    require_visible(by, model)
    require_allowed(can_write_model(by, model, "governance.add_modelversion"),
                    f"You may not record outcomes of '{model.name}'.")
    if not isinstance(id_column, str) or not id_column or len(id_column) > 200:
        raise InvalidInput("'id_column' must be a column name.", code="monitoring_bad_arguments")
    checked = _checked(outcomes)
    ids, batch_records = _batch_ids(batch, id_column)
    unknown = _unknown_ids(checked, ids)
    if unknown:
        raise InvalidInput("Some prediction ids are not in the batch.", code="monitoring_unknown_prediction_id",
                           extra={"prediction_ids": unknown[:20]})
    with transaction.atomic():
        lock_for_update(PredictionBatch.objects.filter(pk=batch.pk)).get()
        existing = sorted(LateOutcome.objects.filter(batch=batch, prediction_id__in=list(checked))
                          .values_list("prediction_id", flat=True))
        if existing:
            raise Conflict("Some predictions already have their outcome.", code="monitoring_outcome_exists",
                           extra={"prediction_ids": existing[:20]})
        other_column = LateOutcome.objects.filter(batch=batch).exclude(id_column=id_column).first()
        if other_column is not None:
            raise InvalidInput(f"Outcomes of this batch are joined by {other_column.id_column!r}.",
                               code="monitoring_bad_arguments")
        rows = LateOutcome.objects.bulk_create([LateOutcome(batch=batch, id_column=id_column, prediction_id=key,
                                                            outcome=value) for key, value in sorted(checked.items())])
        entry = ledger_append(actor=by, action="late_outcomes.recorded", subject=batch, payload={
            "model": model.name, "batch": batch.pk, "batch_sha256": batch.sha256, "id_column": id_column,
            "count": len(rows), "outcomes_sha256": _canonical_sha256(sorted(checked.items()))})
        LateOutcome.objects.filter(pk__in=[row.pk for row in rows]).update(ledger_seq=entry.seq)
        for row in rows:
            row.ledger_seq = entry.seq
        vault.sealed_file_reads_record(by=by, records=batch_records, purpose="monitoring_run", cause=batch,
                                       cause_label=f"late outcomes of prediction batch {batch.pk}")
        restated = [monitor_run_restate(run=run, by=by, cause_seq=entry.seq)
                    for run in MonitorRun.objects.filter(batches__contains=[{"id": batch.pk}], restatements__isnull=True)
                    .exclude(monitor__y_true="").select_related("monitor__version__model", "profile").order_by("pk")]
    return rows, restated


def _drift_unchanged(run: MonitorRun, columns: list[Any], records: list[Any], digests: list[dict[str, Any]]
                     ) -> dict[str, Any] | None:
    """The replaced run's drift when a restatement would compute the same again, else None: outcomes
    change performance only, so the drift stands while its inputs do (the same batch files, none
    rewritten since the run, the same engine and drift thresholds) and the outcome column is not one
    of the profiled columns. The stored drift is the computed one, JSON floats round-tripping exactly."""
    monitor = run.monitor
    drift = (run.result or {}).get("drift")
    if not drift or drift.get("engine") != ENGINE_VERSION or digests != run.batches:
        return None
    stored = (run.result or {}).get("thresholds") or {}
    if any(stored.get(key) != monitor.thresholds.get(key) for key in DRIFT_THRESHOLDS):
        return None
    if monitor.y_true in {column.column for column in columns}:
        return None
    if any(record.created_at > run.created_at for record in records):  # a row-level erasure rewrote a batch
        return None
    return dict(drift)


def monitor_run_restate(*, run: MonitorRun, by: Any, cause_seq: int | None = None) -> MonitorRun:
    """A new run over the replaced run's batches and profile with the outcomes known now; records
    `monitor_run.restated` (naming the replaced run and its result digest). Alerts only for breaches
    the replaced runs had not raised. One transaction (joins the caller's)."""
    with transaction.atomic():
        locked = lock_for_update(MonitorRun.objects.filter(pk=run.pk)).get()
        if MonitorRun.objects.filter(restates=locked).exists():
            raise Conflict("This run was already restated; restate its latest restatement.",
                           code="monitoring_run_restated")
        monitor, profile = run.monitor, run.profile
        columns = reference_profile_load(profile)
        batch_ids = [item["id"] for item in locked.batches]
        batches = sorted(PredictionBatch.objects.filter(pk__in=batch_ids), key=lambda b: b.pk)
        batches, records = _window_files(batches)
        if not batches:
            raise Conflict("Every batch of the run was erased; it cannot be restated.", code="monitoring_run_restated")
        digests = [{"id": b.pk, "sha256": b.sha256} for b in batches]
        result, result_sha256, breaches = _evaluate(monitor, columns, records, batches,
                                                    known_drift=_drift_unchanged(locked, columns, records, digests))
        new = MonitorRun.objects.create(monitor=monitor, profile=profile, window_start=locked.window_start,
                                        window_end=locked.window_end, batches=digests, result=result,
                                        result_sha256=result_sha256, breached=bool(breaches), restates=locked)
        entry = ledger_append(actor=by, action="monitor_run.restated", subject=new, payload={
            "monitor": monitor.pk, "model": monitor.version.model.name, "version": monitor.version.label,
            "replaces": locked.pk, "replaces_result_sha256": locked.result_sha256, "replaces_seq": locked.ledger_seq,
            "outcomes_seq": cause_seq, "profile_sha256": profile.profile_sha256, "batches": digests,
            "result_sha256": result_sha256, "window": [locked.window_start.isoformat(), locked.window_end.isoformat()],
            "performance": {k: v for k, v in (result.get("performance") or {}).items() if k != "calibration"}})
        new.ledger_seq = entry.seq
        new.save(update_fields=["ledger_seq"])
        vault.sealed_file_reads_record(by=by, records=[reference_profile_sealed(profile), *records],
                                       purpose="monitoring_run", cause=new,
                                       cause_label=f"restatement {new.pk} of monitor run {locked.pk}")
        chain, seen = [], locked
        while seen is not None:
            chain.append(seen.pk)
            seen = seen.restates
        raised = set(Alert.objects.filter(run__in=chain).values_list("kind", "subject"))
        _alerts_raise(new, by, [b for b in breaches if (b[0], b[1]) not in raised], result_sha256)
    return new

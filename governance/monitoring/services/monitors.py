"""Monitors: create them, set their thresholds (policy: risk officers only; a weakening takes a
second risk officer), run them over a window of prediction batches, raise and acknowledge alerts.

Every write names its ledger action here. A run's entry carries the digests of the reference
profile, each input batch and the result, so a bundle can show what was compared with what.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.ledger import ledger_append, lock_for_update
from audit.refusals import refusal_recorded
from core.errors import Conflict, Forbidden, InvalidInput
from core.outbox.services import task_enqueue_on_commit
from core.sealed import SealError
from governance.fairness.models import PredictionBatch, SealedFile
from governance.fairness.services import vault
from governance.fairness.services.access import can_manage_specs, require_allowed, require_visible
from governance.models import ModelVersion
from governance.monitoring.drift import CORRECTIONS, DriftInputError, NumericProfile, drift_report_columns
from governance.monitoring.models import Alert, LateOutcome, Monitor, MonitorRun, ThresholdChange
from governance.monitoring.performance import HIGHER_IS_BETTER, classification_metrics, regression_metrics
from governance.monitoring.reader import CSV_WHOLE_MAX_BYTES, read_columns
from governance.monitoring.services.profiles import (
    drift_input_error,
    reference_profile_latest,
    reference_profile_load,
    reference_profile_sealed,
)
from governance.monitoring.services.reapproval import reapproval_for_alert
from governance.permissions import is_active_user
from governance.roles import RISK_OFFICER

DEFAULT_THRESHOLDS: dict[str, Any] = {"alpha": 0.05, "correction": "benjamini-hochberg", "numeric_effect": 0.1,
                                      "categorical_effect": 0.1, "performance": {}, "on_alert": "none",
                                      "revalidate_days": None, "reapprove_on_alert": False}
# What an open alert of the monitor does to its version: nothing more, or block its promotion to
# production until the alert is acknowledged. Independently, `reapprove_on_alert` opens a
# re-approval of a production version (services.reapproval).
ON_ALERT = ("none", "block_promotion")
KNOWN_PERFORMANCE = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc", "brier", "mae", "rmse", "r2"})


# --- thresholds as policy ------------------------------------------------------------------

def normalise_thresholds(raw: Any) -> dict[str, Any]:
    """Defaults filled in; every value checked. `performance` maps a metric to its bound (a minimum
    for metrics where higher is better, a maximum for brier, mae and rmse)."""
    if raw is None:
        return json.loads(json.dumps(DEFAULT_THRESHOLDS))
    if not isinstance(raw, dict):
        raise InvalidInput("'thresholds' must be an object.", code="monitoring_bad_thresholds")
    unknown = set(raw) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise InvalidInput(f"Unknown threshold(s) {sorted(unknown)}.", code="monitoring_bad_thresholds",
                           extra={"known": sorted(DEFAULT_THRESHOLDS)})
    thresholds = {**json.loads(json.dumps(DEFAULT_THRESHOLDS)), **raw}
    for key in ("alpha", "numeric_effect", "categorical_effect"):
        value = thresholds[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise InvalidInput(f"'{key}' must be a non-negative number.", code="monitoring_bad_thresholds")
        thresholds[key] = float(value)
    if not 0 < thresholds["alpha"] < 1:
        raise InvalidInput("'alpha' must be between 0 and 1.", code="monitoring_bad_thresholds")
    if thresholds["correction"] not in CORRECTIONS:
        raise InvalidInput(f"'correction' must be one of {list(CORRECTIONS)}.", code="monitoring_bad_thresholds")
    performance = thresholds["performance"]
    if not isinstance(performance, dict) or set(performance) - KNOWN_PERFORMANCE or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in performance.values()):
        raise InvalidInput("'performance' maps known metric names to numbers.", code="monitoring_bad_thresholds",
                           extra={"known": sorted(KNOWN_PERFORMANCE)})
    thresholds["performance"] = {name: float(value) for name, value in sorted(performance.items())}
    if thresholds["on_alert"] not in ON_ALERT:
        raise InvalidInput(f"'on_alert' must be one of {list(ON_ALERT)}.", code="monitoring_bad_thresholds")
    if not isinstance(thresholds["reapprove_on_alert"], bool):
        raise InvalidInput("'reapprove_on_alert' must be true or false.", code="monitoring_bad_thresholds")
    days = thresholds["revalidate_days"]
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650):
        raise InvalidInput("'revalidate_days' is null or a whole number of days from 1 to 3650.",
                           code="monitoring_bad_thresholds")
    return thresholds


def weakens(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when ``new`` would let through something ``old`` alerts on: a smaller alpha, larger
    effect thresholds, Bonferroni instead of Benjamini-Hochberg, a lower minimum or higher maximum
    on a performance metric, a performance bound removed, or an escalation turned off (blocking
    promotion, re-approval on alert, periodic revalidation). The one home of this rule."""
    if new["alpha"] < old["alpha"] or new["numeric_effect"] > old["numeric_effect"]:
        return True
    if new["categorical_effect"] > old["categorical_effect"]:
        return True
    if old["correction"] == "benjamini-hochberg" and new["correction"] == "bonferroni":
        return True
    if old.get("on_alert", "none") == "block_promotion" and new.get("on_alert", "none") != "block_promotion":
        return True
    if old.get("reapprove_on_alert") is True and new.get("reapprove_on_alert") is not True:
        return True
    old_days, new_days = old.get("revalidate_days"), new.get("revalidate_days")
    if old_days is not None and (new_days is None or new_days > old_days):
        return True
    for metric, bound in old["performance"].items():
        if metric not in new["performance"]:
            return True
        if (new["performance"][metric] < bound) if metric in HIGHER_IS_BETTER else (new["performance"][metric] > bound):
            return True
    return False


def _is_risk_officer(user: Any) -> bool:
    return bool(is_active_user(user) and user.groups.filter(name=RISK_OFFICER).exists())


def _require_risk_officer(user: Any) -> None:
    if not _is_risk_officer(user):
        raise Forbidden("Only risk officers set monitoring thresholds.", code="monitoring_thresholds_risk_officer_only")


def monitor_create(*, by: Any, version: ModelVersion, name: str = "", window_days: int = 7, y_true: str = "",
                   y_pred: str = "", score: str = "", task: str = "classification",
                   thresholds: dict[str, Any] | None = None) -> Monitor:
    """Create a monitor; records `monitor.created`. Thresholds other than the defaults need a risk officer."""
    model = version.model
    require_visible(by, model)
    require_allowed(can_manage_specs(by, model), f"You may not define the monitoring of '{model.name}'.")
    if not 1 <= window_days <= 3650:
        raise InvalidInput("'window_days' must be between 1 and 3650.", code="monitoring_bad_arguments")
    if task not in ("classification", "regression"):
        raise InvalidInput("'task' is classification or regression.", code="monitoring_bad_arguments")
    if y_true and not (y_pred or score):
        raise InvalidInput("Performance needs 'y_pred' (or 'score' for classification) next to 'y_true'.",
                           code="monitoring_bad_arguments")
    normalised = normalise_thresholds(thresholds)
    with refusal_recorded(actor=by, action="monitor.create", subject=version, attempt={"thresholds": normalised}):
        if thresholds is not None and normalised != normalise_thresholds(None):
            _require_risk_officer(by)
        with transaction.atomic():
            monitor = Monitor(name=name.strip()[:200] or f"{model.name} {version.label}", version=version,
                              window_days=window_days, y_true=y_true, y_pred=y_pred, score=score, task=task,
                              thresholds=normalised, created_by=by if is_active_user(by) else None)
            monitor.save_recorded(action="monitor.created", by=by, extra={"model": model.name, "version": version.label})
    return monitor


def monitor_thresholds_set(*, monitor: Monitor, by: Any, thresholds: dict[str, Any], comment: str = ""
                           ) -> Monitor | ThresholdChange:
    """A risk officer sets thresholds: a tightening applies at once (`monitor.thresholds_set`); a
    weakening waits for a second risk officer (`monitor.thresholds_weakening_proposed`)."""
    require_visible(by, monitor.version.model)
    new = normalise_thresholds(thresholds)
    with refusal_recorded(actor=by, action="monitor.thresholds_set", subject=monitor, attempt={"thresholds": new}):
        _require_risk_officer(by)
        with transaction.atomic():
            locked = lock_for_update(Monitor.objects.filter(pk=monitor.pk)).get()
            if weakens(locked.thresholds, new):
                if ThresholdChange.objects.filter(monitor=locked, status=ThresholdChange.Status.PENDING).exists():
                    raise Conflict("A weakening of these thresholds already waits for a second risk officer.",
                                   code="monitoring_change_pending")
                change = ThresholdChange(monitor=locked, old=locked.thresholds, new=new, comment=comment[:2000],
                                         proposed_by=by)
                change.save_recorded(action="monitor.thresholds_weakening_proposed", by=by)
                return change
            locked.thresholds = new
            locked.save_recorded(action="monitor.thresholds_set", by=by, update_fields=["thresholds"],
                                 extra={"comment": comment[:2000]})
            return locked


def threshold_change_confirm(*, change: ThresholdChange, by: Any, comment: str = "") -> Monitor:
    """A second risk officer applies a proposed weakening; records `monitor.thresholds_set`."""
    require_visible(by, change.monitor.version.model)
    with refusal_recorded(actor=by, action="monitor.thresholds_weakening_confirm", subject=change.monitor,
                          attempt={"change": change.pk}):
        _require_risk_officer(by)
        if change.proposed_by_id == getattr(by, "pk", None):
            raise Forbidden("Weakening thresholds takes a second risk officer, not the one who proposed it.",
                            code="monitoring_second_risk_officer")
        with transaction.atomic():
            locked = lock_for_update(ThresholdChange.objects.filter(pk=change.pk)).get()
            if locked.status != ThresholdChange.Status.PENDING:
                raise Conflict("This change was already applied.", code="monitoring_change_pending")
            monitor = lock_for_update(Monitor.objects.filter(pk=locked.monitor_id)).get()
            locked.status = ThresholdChange.Status.APPLIED
            locked.confirmed_by = by
            locked.save_recorded(action="monitor.thresholds_weakening_confirmed", by=by,
                                 update_fields=["status", "confirmed_by"])
            monitor.thresholds = locked.new
            monitor.save_recorded(action="monitor.thresholds_set", by=by, update_fields=["thresholds"],
                                  extra={"comment": comment[:2000], "proposed_by": locked.proposed_by.get_username(),
                                         "change": locked.pk})
    return monitor


# --- runs ------------------------------------------------------------------------------------

def _canonical_sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def _finite(value: Any) -> Any:
    """JSON has no infinity: an infinite effect (zero reference spread) is stored as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _window_files(batches: list[PredictionBatch]) -> tuple[list[PredictionBatch], list[Any]]:
    """The batches whose sealed file still exists, with their records (erased ones drop out of the window)."""
    records = {record.name: record for record in SealedFile.objects.filter(name__in=[b.file.name for b in batches])}
    kept = [batch for batch in batches if batch.file.name in records and records[batch.file.name].erased_at is None]
    return kept, [records[batch.file.name] for batch in kept]


def _read_error(error: Exception, record: Any) -> Exception:
    """The coded 4xx of a window file that cannot be read (bad content, or failing authentication)."""
    if isinstance(error, DriftInputError):
        return drift_input_error(error)
    return vault.SealedFileCorrupt(f"A stored prediction batch fails authentication: {error}.",
                                   extra={"file_id": record.file_id})


def _window_columns(records: list[Any], profiles: list[Any]) -> Iterator[tuple[Any, Any]]:
    """(profile, the window's values of its column) for each profile in turn, one column at a time:
    every batch's reader is advanced by one column, the parts joined (numeric into one fresh float64
    array, text into one chunked Arrow array) and handed over before the next column is read. Small
    CSV batches are parsed once each within one shared budget (``CSV_WHOLE_MAX_BYTES``); larger ones
    are read one column per pass, Parquet ones column by column."""
    numeric = [c.column for c in profiles if isinstance(c, NumericProfile)]
    categorical = [c.column for c in profiles if not isinstance(c, NumericProfile)]
    order = [c.column for c in profiles]
    budget = CSV_WHOLE_MAX_BYTES // max(len(records), 1)
    readers = [read_columns(vault.sealed_file_open(record=record, purpose="monitoring_run"), numeric, categorical,
                            arrow_text=True, order=order, whole_max_bytes=budget) for record in records]
    for profile in profiles:
        parts: list[Any] = []
        for record, columns in zip(records, readers, strict=True):
            try:
                parts.append(next(columns)[1])
            except (DriftInputError, SealError) as error:
                raise _read_error(error, record) from None
        if isinstance(profile, NumericProfile):
            values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        else:
            values = parts[0] if len(parts) == 1 else pa.chunked_array(
                [chunk for part in parts for chunk in getattr(part, "chunks", [part])], type=pa.string())
        del parts
        yield profile, values
        del values


def _window_data(monitor: Monitor, records: list[Any], numeric: list[str], categorical: list[str],
                 batches: list[PredictionBatch] | None = None) -> dict[str, Any]:
    performance_columns = [c for c in (monitor.y_true, monitor.y_pred, monitor.score) if c]
    wanted_numeric = list(dict.fromkeys([*numeric, *[c for c in performance_columns if c not in categorical]]))
    parts: dict[str, list[Any]] = {name: [] for name in [*wanted_numeric, *categorical]}
    late = _late_outcomes(monitor, batches or [])
    for index, record in enumerate(records):
        batch = batches[index] if batches else None
        outcomes = late.get(batch.pk) if batch is not None else None
        # A batch whose outcomes all arrive late may lack the outcome column: it reads as unknown.
        absent = monitor.y_true if (batch is not None and monitor.y_true and monitor.y_true not in batch.columns) else ""
        numeric_here = [name for name in wanted_numeric if name != absent]
        id_column = outcomes[0] if outcomes else None
        categorical_here = [*categorical, *([id_column] if id_column and id_column not in categorical else [])]
        read: dict[str, Any] = {}
        try:
            for name, values in read_columns(vault.sealed_file_open(record=record, purpose="monitoring_run"),
                                             numeric_here, categorical_here, arrow_text=True):
                read[name] = values
        except (DriftInputError, SealError) as error:
            raise _read_error(error, record) from None
        if absent:
            rows = len(next(iter(read.values()))) if read else int(batch.rows)  # type: ignore[union-attr]
            read[absent] = np.full(rows, np.nan)
        if outcomes:
            read[monitor.y_true] = _joined_truth(read[monitor.y_true], read[outcomes[0]], outcomes[1])
        for name in parts:
            parts[name].append(read[name])
    joined: dict[str, Any] = {}
    for name, chunks in parts.items():
        joined[name] = np.concatenate(chunks) if name in wanted_numeric else [v for chunk in chunks for v in chunk.to_pylist()]
    return joined


def _late_outcomes(monitor: Monitor, batches: list[PredictionBatch]) -> dict[int, tuple[str, dict[str, float]]]:
    """Per batch with late outcomes: its id column and {prediction id: outcome}."""
    if not monitor.y_true or not batches:
        return {}
    found: dict[int, tuple[str, dict[str, float]]] = {}
    for outcome in LateOutcome.objects.filter(batch__in=[b.pk for b in batches]).order_by("pk"):
        _column, values = found.setdefault(outcome.batch_id, (outcome.id_column, {}))
        values[outcome.prediction_id] = outcome.outcome
    return found


def _joined_truth(truth: Any, ids: Any, outcomes: dict[str, float]) -> Any:
    """The batch's outcomes, with each late outcome filled in by prediction id (a late outcome wins):
    the ids (an Arrow text array) are looked up among the outcomes' ids in Arrow, not row by row."""
    joined = np.array(truth, dtype=np.float64, copy=True)
    values = np.fromiter(outcomes.values(), dtype=np.float64, count=len(outcomes))
    found = pc.index_in(ids, value_set=pa.array(list(outcomes), type=pa.string()))
    positions = pc.fill_null(found, -1).to_numpy(zero_copy_only=False) if len(ids) else np.empty(0, dtype=np.int64)
    rows = np.flatnonzero(positions >= 0)
    joined[rows] = values[positions[rows]]
    return joined


def _performance(monitor: Monitor, data: dict[str, Any]) -> dict[str, Any] | None:
    if not monitor.y_true:
        return None
    truth = np.asarray(data[monitor.y_true], dtype=np.float64)
    known = ~np.isnan(truth)  # outcomes not known yet are left out
    if not known.any():
        return None
    try:
        if monitor.task == "regression":
            return regression_metrics(truth[known], np.asarray(data[monitor.y_pred])[known])
        score = np.asarray(data[monitor.score])[known] if monitor.score else None
        predicted = (np.asarray(data[monitor.y_pred])[known] if monitor.y_pred
                     else (score >= 0.5).astype(np.float64) if score is not None else None)
        return classification_metrics(truth[known], predicted, score)
    except DriftInputError as error:
        raise drift_input_error(error) from error


RUN_TASK = "governance.monitoring.tasks.monitor_run_scheduled_task"
SYSTEM_ACTOR = "system:monitor_run_scheduled_task"


def current_slot(monitor: Monitor, now: datetime) -> datetime | None:
    """The latest beat slot at or before ``now``: a multiple of run_every_hours since the epoch (UTC)."""
    if monitor.run_every_hours < 1:
        return None
    period_s = monitor.run_every_hours * 3600
    return datetime.fromtimestamp(int(now.timestamp()) // period_s * period_s, tz=UTC)


def monitor_runs_due(*, now: datetime | None = None) -> list[tuple[int, str]]:
    """Beat job: queue the run of every scheduled monitor whose current slot has no run yet."""
    moment = now or timezone.now()
    queued: list[tuple[int, str]] = []
    for monitor in Monitor.objects.filter(run_every_hours__gt=0):
        slot = current_slot(monitor, moment)
        if slot is None or MonitorRun.objects.filter(monitor=monitor, scheduled_for=slot).exists():
            continue
        with transaction.atomic():
            task_enqueue_on_commit(RUN_TASK, monitor.pk, slot.isoformat())
        queued.append((monitor.pk, slot.isoformat()))
    return queued


def monitor_run_scheduled(*, monitor_id: int, slot: datetime) -> MonitorRun | None:
    """The run of one beat slot, exactly once: a redelivered or duplicated task finds the slot's run
    and returns it. The run and its entries are one transaction, so a worker killed mid-run leaves
    nothing, and the redelivery computes the same window (batches uploaded up to the slot) again."""
    monitor = Monitor.objects.select_related("version__model").get(pk=monitor_id)
    existing = MonitorRun.objects.filter(monitor=monitor, scheduled_for=slot).first()
    if existing is not None:
        return existing
    try:
        return _run(monitor=monitor, by=SYSTEM_ACTOR, end=slot, scheduled=True)
    except InvalidInput:
        return None  # nothing to compare in this window (no batches): no run, no entry


def monitor_run(*, monitor: Monitor, by: Any, now: datetime | None = None) -> MonitorRun:
    """Evaluate the window ending ``now``; records `monitor_run.completed` and one `alert.raised` per breach."""
    require_visible(by, monitor.version.model)
    return _run(monitor=monitor, by=by, end=now or timezone.now(), scheduled=False)


DRIFT_THRESHOLDS = ("alpha", "correction", "numeric_effect", "categorical_effect")


def _evaluate(monitor: Monitor, columns: list[Any], records: list[Any], batches: list[PredictionBatch],
              known_drift: dict[str, Any] | None = None) -> tuple[dict[str, Any], str, list[tuple[str, str, dict[str, Any]]]]:
    """The result of a window (drift and performance), its digest, and the breaches of the thresholds.
    ``known_drift``: the drift of this very window, profile and drift thresholds, computed before
    (a restatement whose outcomes cannot change it); only the performance is computed again."""
    thresholds = monitor.thresholds
    try:  # drift one column at a time; then the performance columns, which are needed together
        drift = known_drift if known_drift is not None else drift_report_columns(
            _window_columns(records, columns), correction=thresholds["correction"], alpha=thresholds["alpha"],
            numeric_effect=thresholds["numeric_effect"], categorical_effect=thresholds["categorical_effect"],
            given_up=True)
    except DriftInputError as error:
        raise drift_input_error(error) from error
    measured = {monitor.y_true, monitor.y_pred, monitor.score}
    categorical = [c.column for c in columns if not isinstance(c, NumericProfile) and c.column in measured]
    performance = _performance(monitor, _window_data(monitor, records, [], categorical, batches)) if monitor.y_true else None
    breaches: list[tuple[str, str, dict[str, Any]]] = [
        ("drift", column["column"], {"pvalue_adjusted": column["pvalue_adjusted"], "effect_size": column["effect_size"]})
        for column in drift["columns"] if column["drift"]]
    for metric, bound in thresholds["performance"].items():
        value = (performance or {}).get(metric)
        if value is None:
            continue
        if (value < bound) if metric in HIGHER_IS_BETTER else (value > bound):
            breaches.append(("performance", metric, {"value": value, "bound": bound,
                                                     "direction": "min" if metric in HIGHER_IS_BETTER else "max"}))
    result = _finite({"drift": drift, "performance": performance, "thresholds": thresholds})
    return result, _canonical_sha256(result), breaches


def _run(*, monitor: Monitor, by: Any, end: datetime, scheduled: bool) -> MonitorRun:
    start = end - timedelta(days=monitor.window_days)
    profile = reference_profile_latest(monitor.version)
    columns = reference_profile_load(profile)
    # Batches served by this version, or that do not say which version served them.
    batches = list(PredictionBatch.objects.filter(model=monitor.version.model, uploaded_at__gt=start, uploaded_at__lte=end)
                   .filter(Q(served_version=monitor.version) | Q(served_version__isnull=True)).order_by("pk"))
    batches, records = _window_files(batches)
    if not batches:
        raise InvalidInput(f"No prediction batches of {monitor.version} in the last {monitor.window_days} days.",
                           code="fairness_no_batches")
    result, result_sha256, breaches = _evaluate(monitor, columns, records, batches)
    drift = result["drift"]
    batch_digests = [{"id": b.pk, "sha256": b.sha256} for b in batches]
    with transaction.atomic():
        if scheduled:
            # The monitor row lock serialises two deliveries of one slot; the second finds the first's run.
            lock_for_update(Monitor.objects.filter(pk=monitor.pk)).get()
            existing = MonitorRun.objects.filter(monitor=monitor, scheduled_for=end).first()
            if existing is not None:
                return existing
        run = MonitorRun.objects.create(monitor=monitor, profile=profile, window_start=start, window_end=end,
                                        scheduled_for=end if scheduled else None, batches=batch_digests, result=result,
                                        result_sha256=result_sha256, breached=bool(breaches))
        entry = ledger_append(actor=by, action="monitor_run.completed", subject=run, payload={
            "monitor": monitor.pk, "model": monitor.version.model.name, "version": monitor.version.label,
            "profile_sha256": profile.profile_sha256, "batches": batch_digests, "result_sha256": result_sha256,
            "window": [start.isoformat(), end.isoformat()], "drifted": drift["drifted"], "breaches": len(breaches)})
        run.ledger_seq = entry.seq
        run.save(update_fields=["ledger_seq"])
        vault.sealed_file_reads_record(by=by, records=[reference_profile_sealed(profile), *records],
                                       purpose="monitoring_run", cause=run,
                                       cause_label=f"monitor run {run.pk} of monitor {monitor.pk}")
        _alerts_raise(run, by, breaches, result_sha256)
    return run


def _alerts_raise(run: MonitorRun, by: Any, breaches: list[tuple[str, str, dict[str, Any]]], result_sha256: str) -> None:
    for kind, subject, detail in breaches:
        alert = Alert.objects.create(run=run, monitor=run.monitor, kind=kind, subject=subject, detail=_finite(detail))
        reapproval = reapproval_for_alert(alert=alert, by=by)
        ledger_append(actor=by, action="alert.raised", subject=alert, payload={
            "monitor": run.monitor_id, "run": run.pk, "kind": kind, "subject": subject, "detail": alert.detail,
            "result_sha256": result_sha256, **({"reapproval": reapproval.pk} if reapproval else {})})
    if breaches:
        task_enqueue_on_commit(NOTIFY_TASK, run.pk)


NOTIFY_TASK = "governance.monitoring.tasks.monitor_run_notify_task"


def monitor_run_notify(*, run_id: int) -> bool:
    """Send the signed webhook and the e-mail of a run's alerts, each once; True once both are sent.

    Each channel is marked in its own transaction right after it succeeded, so a retry after the
    e-mail failed does not post the webhook again (as the fairness notifications do).
    """
    from governance.monitoring import notifications

    steps = (("webhook_sent_at", notifications.send_webhook), ("emailed_at", notifications.send_email))
    for field, send in steps:
        with transaction.atomic():
            run = (lock_for_update(MonitorRun.objects, of=("self",))
                   .select_related("monitor__version__model", "profile").get(pk=run_id))
            if run.notified_at is not None or not run.breached:
                return False
            if getattr(run, field) is None:
                send(run)  # raises on failure: the task retries; nothing is marked
                setattr(run, field, timezone.now())
                run.save(update_fields=[field])
    with transaction.atomic():
        return bool(MonitorRun.objects.filter(pk=run_id, notified_at__isnull=True).update(notified_at=timezone.now()))


def promotion_blocking_alerts(version: ModelVersion) -> list[Alert]:
    """The open alerts of the version's monitors whose policy blocks promotion (oldest first)."""
    return [alert for alert in Alert.objects.filter(monitor__version=version, status=Alert.Status.OPEN)
            .select_related("monitor").order_by("pk")
            if (alert.monitor.thresholds or {}).get("on_alert") == "block_promotion"]


def require_promotion_allowed(version: ModelVersion) -> None:
    """409 `monitoring_alert_blocks_promotion` while such an alert is open (acknowledge it first)."""
    blocking = promotion_blocking_alerts(version)
    if blocking:
        raise Conflict(f"{len(blocking)} open monitoring alert(s) of {version.label} block its promotion to production; "
                       "acknowledge them first.", code="monitoring_alert_blocks_promotion",
                       extra={"alerts": [alert.pk for alert in blocking][:20]})


def alert_acknowledge(*, alert: Alert, by: Any, comment: str) -> Alert:
    """A person acknowledges an open alert with a comment; records `alert.acknowledged`."""
    model = alert.monitor.version.model
    require_visible(by, model)
    require_allowed(can_manage_specs(by, model), f"You may not acknowledge the alerts of '{model.name}'.")
    comment = (comment or "").strip()
    if not comment:
        raise InvalidInput("Acknowledging an alert takes a comment: what was done about it.", code="monitoring_bad_arguments")
    with transaction.atomic():
        locked = lock_for_update(Alert.objects.filter(pk=alert.pk)).get()
        if locked.status != Alert.Status.OPEN:
            raise Conflict("The alert was already acknowledged.", code="monitoring_alert_closed")
        locked.status = Alert.Status.ACKNOWLEDGED
        locked.acknowledged_by = by
        locked.acknowledged_at = timezone.now()
        locked.comment = comment[:5000]
        locked.save(update_fields=["status", "acknowledged_by", "acknowledged_at", "comment"])
        ledger_append(actor=by, action="alert.acknowledged", subject=locked,
                      payload={"monitor": locked.monitor_id, "run": locked.run_id, "comment": locked.comment})
    return locked

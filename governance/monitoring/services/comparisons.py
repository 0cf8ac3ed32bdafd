"""Champion and challenger: two versions of one model scored on the same window (shadow or A/B
traffic), compared per metric with the paired bootstrap CI of `governance.monitoring.comparison`.

The window's batches served by each version are joined row by row on their prediction id column
(the same requests scored by both); the outcome is the champion's row's (or a late outcome of it),
else the challenger's. Rows whose outcome is not known are left out. The comparison is stored with
the digests of its batches and result, and recorded as `comparison.completed`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from audit.ledger import ledger_append
from core.errors import InvalidInput
from governance.fairness.models import PredictionBatch
from governance.fairness.services import vault
from governance.fairness.services.access import can_manage_specs, require_allowed, require_visible
from governance.models import ModelVersion
from governance.monitoring.comparison import champion_challenger
from governance.monitoring.drift import DriftInputError
from governance.monitoring.models import Comparison, Monitor
from governance.monitoring.services.monitors import _canonical_sha256, _finite, _window_data, _window_files
from governance.monitoring.services.profiles import drift_input_error
from governance.permissions import is_active_user


def _side(probe: Monitor, version: ModelVersion, start: datetime, end: datetime, id_column: str
          ) -> tuple[list[PredictionBatch], list[Any], dict[str, Any]]:
    batches = list(PredictionBatch.objects.filter(model=version.model, served_version=version, uploaded_at__gt=start,
                                                  uploaded_at__lte=end).order_by("pk"))
    batches, records = _window_files(batches)
    if not batches:
        raise InvalidInput(f"No prediction batches served by {version.label} in the window.", code="fairness_no_batches")
    missing = [b.pk for b in batches if id_column not in (b.columns or [])]
    if missing:
        raise InvalidInput(f"Batches {missing[:20]} have no prediction id column {id_column!r}.",
                           code="monitoring_no_prediction_id")
    data = _window_data(probe, records, [], [id_column], batches)
    ids = data[id_column]
    if len(set(ids)) != len(ids) or any(value is None for value in ids):
        raise InvalidInput(f"The batches of {version.label} repeat or lack prediction ids; rows cannot be paired.",
                           code="monitoring_duplicate_prediction_id")
    return batches, records, data


def comparison_run(*, by: Any, champion: ModelVersion, challenger: ModelVersion, window_days: int = 7,
                   y_true: str, y_pred: str = "", score: str = "", task: str = "classification",
                   id_column: str = "prediction_id", replicates: int = 1000, seed: int = 0,
                   now: datetime | None = None) -> Comparison:
    """Score both versions on the rows both served in the window; records `comparison.completed`."""
    model = champion.model
    require_visible(by, model)
    require_allowed(can_manage_specs(by, model), f"You may not compare the versions of '{model.name}'.")
    if challenger.model_id != champion.model_id or challenger.pk == champion.pk:
        raise InvalidInput("Champion and challenger must be two different versions of one model.",
                           code="monitoring_not_comparable")
    if not 1 <= window_days <= 3650 or not 1 <= replicates <= 10_000 or task not in ("classification", "regression"):
        raise InvalidInput("'window_days' 1..3650, 'replicates' 1..10000, 'task' classification or regression.",
                           code="monitoring_bad_arguments")
    if not y_true or not (y_pred or score) or (task == "regression" and not y_pred):
        raise InvalidInput("Give 'y_true' and 'y_pred' (or 'score' for classification).", code="monitoring_bad_arguments")
    end = now or timezone.now()
    start = end - timedelta(days=window_days)
    probe = Monitor(version=champion, y_true=y_true, y_pred=y_pred, score=score, task=task)  # never saved
    sides = [_side(probe, version, start, end, id_column) for version in (champion, challenger)]
    position = {value: row for row, value in enumerate(sides[1][2][id_column])}
    pairs = [(row, position[value]) for row, value in enumerate(sides[0][2][id_column]) if value in position]
    first = np.asarray([a for a, _ in pairs], dtype=np.int64)
    second = np.asarray([b for _, b in pairs], dtype=np.int64)
    truth = np.asarray(sides[0][2][y_true], dtype=np.float64)[first]
    fallback = np.asarray(sides[1][2][y_true], dtype=np.float64)[second]
    truth = np.where(np.isnan(truth), fallback, truth)
    known = ~np.isnan(truth)
    if not known.any():
        raise InvalidInput("No row was scored by both versions with a known outcome in the window.",
                           code="monitoring_not_comparable")

    def scored(data: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
        return {name: np.asarray(data[column], dtype=np.float64)[rows][known]
                for name, column in (("y_pred", y_pred), ("score", score)) if column}

    try:
        result = champion_challenger(truth[known], scored(sides[0][2], first), scored(sides[1][2], second), task=task,
                                     n_boot=replicates, seed=seed)
    except DriftInputError as error:
        raise drift_input_error(error) from error
    result = _finite({**result, "champion": champion.label, "challenger": challenger.label,
                      "columns": {"y_true": y_true, "y_pred": y_pred, "score": score, "id": id_column},
                      "rows": {"champion": len(sides[0][2][id_column]), "challenger": len(sides[1][2][id_column]),
                               "paired": len(pairs), "with_outcome": int(known.sum())}})
    result_sha256 = _canonical_sha256(result)
    digests = [{"id": b.pk, "sha256": b.sha256, "version": version.label}
               for (batches, _r, _d), version in zip(sides, (champion, challenger), strict=True) for b in batches]
    with transaction.atomic():
        comparison = Comparison.objects.create(champion=champion, challenger=challenger, window_start=start,
                                               window_end=end, batches=digests, result=result,
                                               result_sha256=result_sha256,
                                               created_by=by if is_active_user(by) else None)
        entry = ledger_append(actor=by, action="comparison.completed", subject=comparison, payload={
            "model": model.name, "champion": champion.label, "challenger": challenger.label, "batches": digests,
            "window": [start.isoformat(), end.isoformat()], "result_sha256": result_sha256, "n": result["n"],
            "differences": {name: m["difference"] for name, m in result["metrics"].items()}})
        comparison.ledger_seq = entry.seq
        comparison.save(update_fields=["ledger_seq"])
        vault.sealed_file_reads_record(by=by, records=[*sides[0][1], *sides[1][1]], purpose="monitoring_run",
                                       cause=comparison, cause_label=f"champion/challenger comparison {comparison.pk}")
    return comparison

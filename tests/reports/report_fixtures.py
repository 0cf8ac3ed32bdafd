"""Realistic fairness results for report tests: the fairness engine on the German-credit data."""

from __future__ import annotations

import csv
from datetime import datetime
from typing import Any

import numpy as np

from governance.fairness import engine
from governance.fairness.models import AuditRun, AuditSpec
from tests.conftest import DATA_DIR

GERMAN_CREDIT = DATA_DIR / "german-credit" / "german-credit.csv"


def german_credit_result(*, seed: int = 7, female_rate: float = 0.55, bootstrap: int = 200) -> dict[str, Any]:
    """Engine output for synthetic predictions on the German-credit rows (sex x foreign_worker, some Unknown)."""
    with GERMAN_CREDIT.open() as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(seed)
    sex = [row["sex"] if rng.random() > 0.03 else "" for row in rows]
    foreign = ["yes" if row["foreign_worker"] == "A201" else "no" for row in rows]
    rates = np.array([female_rate if value == "female" else 0.72 for value in sex])
    y_pred = (rng.random(len(rows)) < rates).astype(int)
    y_true = np.array([int(row["credit_good"]) for row in rows])
    accumulator = engine.ConfusionAccumulator(sensitive_columns=["sex", "foreign_worker"])
    accumulator.add(y_true, y_pred, {"sex": sex, "foreign_worker": foreign})
    return engine.compute_report(accumulator.counts(), min_group_size=30, bootstrap=bootstrap, seed=seed)


def fake_audit(pk: int, version: Any, result: dict[str, Any], finished_at: datetime, *,
               thresholds: dict[str, float] | None = None, passed: bool | None = None) -> AuditRun:
    """An unsaved fairness audit run of `version` with the given result (the report reads only its fields)."""
    spec = AuditSpec(name="german-credit", model=version.model, version=version, target=AuditSpec.Target.VERSION)
    return AuditRun(
        pk=pk, spec=spec, model_version=version, result=result, finished_at=finished_at,
        thresholds=thresholds if thresholds is not None else {"impact_ratio": 0.8,
                                                              "demographic_parity_difference": 0.1},
        status=AuditRun.Status.SUCCEEDED, input_sha256="a1" * 32, result_sha256="b2" * 32, passed=passed,
        dataset_label="german-credit")

"""Helpers the fairness tests share: deterministic loan data, an audit spec over it, and running it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from governance.fairness.models import AuditRun, AuditSpec
from governance.fairness.services import runs
from governance.fairness.services.specs import audit_spec_create

# Floors an approval policy pins: the four-fifths rule and a ten-point equalized-odds gap.
FLOORS = {"impact_ratio": {"min": 0.8}, "equalized_odds_difference": {"max": 0.1}}


def credit_csv(path: Path, *, rows: int = 2000, seed: int = 1, biased: bool = False,
               unknown_outcomes: int = 0) -> Path:
    """Deterministic loan data: repaid, score, prediction, sex, age_group; `biased` under-selects women."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], size=rows)
    age = rng.choice(["young", "old"], size=rows)
    repaid = (rng.random(rows) < 0.6).astype(int)
    score = 1 / (1 + np.exp(-(3.0 * (repaid - 0.5) + rng.normal(0, 1.0, rows))))
    if biased:
        score = np.where(sex == "female", score * 0.6, score)
    predicted = (score >= 0.5).astype(int)
    lines = ["repaid,score,predicted,sex,age_group"]
    for index, (r, s, p, x, a) in enumerate(zip(repaid, score, predicted, sex, age, strict=True)):
        outcome = "" if index < unknown_outcomes else str(r)
        lines.append(f"{outcome},{s:.6f},{p},{x},{a}")
    path.write_text("\n".join(lines) + "\n")
    return path


def make_spec(by: Any, model: Any, version: Any, path: Path, **overrides: Any) -> AuditSpec:
    fields: dict[str, Any] = {"name": "holdout", "y_true": "repaid", "y_pred": "predicted", "sensitive": ["sex"],
                              "dataset_path": path, "min_group_size": 30,
                              "thresholds": {"impact_ratio_min": 0.8, "equalized_odds_difference_max": 0.1}}
    fields.update(overrides)
    return audit_spec_create(by=by, model=model, version=version, **fields)


def women_never_selected(path: Path, *, rows: int = 2000, seed: int = 3) -> Path:
    """Loan data where no woman is ever predicted to repay (selected), whatever her outcome."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], size=rows)
    repaid = (rng.random(rows) < 0.6).astype(int)
    predicted = np.where(sex == "female", 0, repaid)
    lines = ["repaid,score,predicted,sex,age_group"]
    lines += [f"{r},0.5,{p},{x},old" for r, p, x in zip(repaid, predicted, sex, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_audit(spec: AuditSpec, by: Any, capture: Any) -> AuditRun:
    """Request a run and let the (eager) task run after commit; `capture` is django_capture_on_commit_callbacks."""
    with capture(execute=True):
        run = runs.audit_request(spec=spec, by=by)
    return AuditRun.objects.get(pk=run.pk)

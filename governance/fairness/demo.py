"""Demo fairness audits for `seed_demo`: synthetic but realistic credit and hiring data.

The data is generated here, deterministically (numpy, fixed seeds), so the demo needs no files
from outside the repository. It shows:

* a passing audit of credit-default-scorer 1.0.0 (deployed) and 1.2.0 (pending approval: the
  policy requires a passing audit, which this supplies as evidence);
* a failing audit of resume-screener 0.9.0 (the screener under-selects women; the impact ratio
  is below the four-fifths rule), which notifies by e-mail (and webhook, if configured);
* production monitoring of credit-default-scorer: four weekly prediction batches, the later
  ones drifting against applicants under 25, each followed by a rolling-window audit: the trend.

Audits run synchronously here (the services are called directly, not through a worker).
Idempotent: if the demo specs exist, nothing is written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.fairness.models import AuditRun, AuditSpec
from governance.fairness.services.batches import prediction_batch_upload
from governance.fairness.services.evidence import audit_spec_confirm
from governance.fairness.services.runs import audit_execute, audit_request
from governance.fairness.services.specs import audit_spec_create
from governance.models import ModelVersion, RegisteredModel

CREDIT = "credit-default-scorer"
SCREENER = "resume-screener"
SPEC_PREFIX = "demo:"


def _credit_rows(rng: np.random.Generator, rows: int, *, under_25_shift: float = 0.0) -> str:
    """Loan applications: repaid (1) or defaulted (0), the model's repayment score, age group and sex."""
    age = rng.choice(["under_25", "25_to_60", "over_60"], size=rows, p=[0.18, 0.67, 0.15])
    sex = rng.choice(["female", "male"], size=rows, p=[0.45, 0.55])
    base = np.where(age == "under_25", 0.62, np.where(age == "over_60", 0.70, 0.72))
    repaid = (rng.random(rows) < base).astype(int)
    logit = 1.9 * (repaid - 0.5) * 2 + rng.normal(0.0, 1.2, rows) + 0.35
    logit = logit - np.where(age == "under_25", under_25_shift, 0.0)
    score = 1.0 / (1.0 + np.exp(-logit))
    lines = ["repaid,score,age_group,sex"]
    lines += [f"{r},{s:.4f},{a},{x}" for r, s, a, x in zip(repaid, score, age, sex, strict=True)]
    return "\n".join(lines) + "\n"


def _screener_rows(rng: np.random.Generator, rows: int) -> str:
    """CV screening: qualified (1) or not, shortlisted by the model (1) or not, sex and ethnicity."""
    sex = rng.choice(["female", "male"], size=rows, p=[0.42, 0.58])
    ethnicity = rng.choice(["group_a", "group_b", "group_c"], size=rows, p=[0.6, 0.25, 0.15])
    qualified = (rng.random(rows) < 0.35).astype(int)
    logit = 2.2 * (qualified - 0.5) * 2 + rng.normal(0.0, 1.0, rows) - 0.9
    logit = logit - np.where(sex == "female", 0.9, 0.0)  # the bias the audit must catch
    shortlisted = (logit >= 0).astype(int)
    lines = ["qualified,shortlisted,sex,ethnicity"]
    lines += [f"{q},{s},{x},{e}" for q, s, x, e in zip(qualified, shortlisted, sex, ethnicity, strict=True)]
    return "\n".join(lines) + "\n"


def _user(username: str) -> Any:
    return get_user_model().objects.filter(username=username).first()


def _version(model: RegisteredModel, label: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(model=model, label=label).first()


def _run(spec: AuditSpec, by: Any) -> AuditRun:
    run = audit_request(spec=spec, by=by)
    return audit_execute(run_id=run.pk)


def seed(stdout: Any) -> str:
    credit = RegisteredModel.objects.filter(name=CREDIT).first()
    screener = RegisteredModel.objects.filter(name=SCREENER).first()
    dana, hiro, rita = _user("dana"), _user("hiro"), _user("rita")
    if credit is None or screener is None or dana is None or hiro is None:
        return "skipped (no demo models)"
    if AuditSpec.objects.filter(name__startswith=SPEC_PREFIX).exists():
        return "already seeded"
    rng = np.random.default_rng(20260101)
    summary = []
    with tempfile.TemporaryDirectory(prefix="fairness-demo-") as folder:
        credit_csv = Path(folder) / "credit-eval.csv"
        credit_csv.write_text(_credit_rows(rng, 8000))
        for label in ("1.0.0", "1.2.0"):
            version = _version(credit, label)
            if version is None:
                continue
            spec = audit_spec_create(
                by=dana, model=credit, version=version, name=f"{SPEC_PREFIX} {CREDIT} {label} holdout",
                dataset_path=credit_csv, y_true="repaid", score="score", threshold=0.5,
                sensitive=["age_group", "sex"], pos_label="1", bootstrap=1000, seed=7, min_group_size=50,
                thresholds={"impact_ratio_min": 0.8, "equalized_odds_difference_max": 0.1})
            if label == "1.2.0" and rita is not None:
                # High risk: the spec counts as evidence once someone other than the submitter confirms it.
                audit_spec_confirm(by=rita, spec=spec, comment="Holdout and thresholds match the tier policy.")
            run = _run(spec, dana)
            summary.append(f"{CREDIT} {label}: audit #{run.pk} {'passed' if run.passed else 'FAILED'}")

        screener_csv = Path(folder) / "screener-eval.csv"
        screener_csv.write_text(_screener_rows(rng, 6000))
        version = _version(screener, "0.9.0")
        if version is not None:
            spec = audit_spec_create(
                by=hiro, model=screener, version=version, name=f"{SPEC_PREFIX} {SCREENER} 0.9.0 holdout",
                dataset_path=screener_csv, y_true="qualified", y_pred="shortlisted", sensitive=["sex", "ethnicity"],
                bootstrap=1000, seed=11, thresholds={"impact_ratio_min": 0.8, "equalized_odds_difference_max": 0.1})
            run = _run(spec, hiro)
            summary.append(f"{SCREENER} 0.9.0: audit #{run.pk} {'passed' if run.passed else 'FAILED'}")

    # Production monitoring: weekly batches, the later ones drifting against applicants under 25.
    monitor = audit_spec_create(
        by=dana, model=credit, target=AuditSpec.Target.PRODUCTION, name=f"{SPEC_PREFIX} {CREDIT} production monitoring",
        y_true="repaid", score="score", threshold=0.5, sensitive=["age_group"], pos_label="1", min_group_size=50,
        window_days=28, thresholds={"impact_ratio_min": 0.8, "equalized_odds_difference_max": 0.1},
        schedule_crontab="0 6 * * 1")
    points = []
    for week, shift in enumerate((0.0, 0.2, 0.6, 1.1), start=1):
        content = _credit_rows(rng, 1500, under_25_shift=shift).encode()
        prediction_batch_upload(by=dana, model=credit,
                                uploaded=SimpleUploadedFile(f"week-{week}.csv", content, "text/csv"))
        run = _run(monitor, dana)
        points.append("pass" if run.passed else "FAIL")
    summary.append(f"{CREDIT} monitoring trend over 4 weekly batches: {' -> '.join(points)} "
                   "(GET /api/fairness/trend/?model=credit-default-scorer)")
    for line in summary:
        stdout.write(f"  fairness: {line}")
    return "; ".join(summary)

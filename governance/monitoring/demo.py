"""Demo production monitoring for `seed_demo`: credit-default-scorer 1.0.0 (the version in
production) gets a reference profile (frozen: the version is approved), a monitor over 7-day
windows with performance thresholds set by the risk officer, and six weekly prediction batches.

From week 4 applicants' debt ratio drifts upward; in weeks 5 and 6 the score separates repayers
from defaulters less well (ROC AUC and accuracy drop below their thresholds). Each week is
evaluated when it closes, so the model page shows drift per column over time, performance
against its threshold lines, and open alerts; the first drift alert is acknowledged. In the last
week 1.1.0 scores the same requests in shadow (paired by prediction id), and a champion/challenger
comparison of the two is recorded for the comparison page.

The data is generated here (numpy, fixed seed), small enough to keep seed_demo fast. The batches
are placed in their weeks by setting their upload time (a demo stands in for six weeks of
uploads; the upload entries in the ledger keep the moment the demo ran). Idempotent: if the
version has a reference profile, nothing is written.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from governance.fairness.models import PredictionBatch
from governance.fairness.services.batches import prediction_batch_upload
from governance.models import ModelVersion
from governance.monitoring.models import Alert, ReferenceProfile
from governance.monitoring.services.comparisons import comparison_run
from governance.monitoring.services.monitors import alert_acknowledge, monitor_create, monitor_run, monitor_thresholds_set
from governance.monitoring.services.profiles import reference_profile_create

MODEL, LABEL = "credit-default-scorer", "1.0.0"
# 1.1.0 (rolled back in production) scores the last week's requests in shadow: the comparison page.
CHALLENGER, CHALLENGER_NOISE = "1.1.0", 1.4
WEEKS = 6
# Per week: debt-ratio shift (in reference standard deviations) and the score's extra noise.
DEBT_SHIFT = (0.0, 0.0, 0.0, 0.35, 0.6, 0.8)
SCORE_NOISE = (1.0, 1.0, 1.0, 1.1, 2.6, 3.4)
PURPOSES = (["car", "home_improvement", "debt_consolidation", "education", "other"], [0.3, 0.2, 0.3, 0.08, 0.12])
EMPLOYMENT = (["employed", "self_employed", "unemployed", "retired"], [0.7, 0.15, 0.05, 0.1])


def _rows(rng: np.random.Generator, rows: int, *, debt_shift: float = 0.0, noise: float = 1.0,
          ids: str = "") -> bytes:
    return _csv(_columns(rng, rows, debt_shift=debt_shift, noise=noise), ids=ids)


def _columns(rng: np.random.Generator, rows: int, *, debt_shift: float = 0.0, noise: float = 1.0) -> dict[str, Any]:
    age = rng.integers(19, 80, rows)
    income = np.round(rng.lognormal(10.4, 0.45, rows), 0)
    debt_ratio = np.clip(rng.normal(0.32 + 0.12 * debt_shift, 0.12, rows), 0.0, 1.5)
    purpose = rng.choice(PURPOSES[0], size=rows, p=PURPOSES[1])
    employment = rng.choice(EMPLOYMENT[0], size=rows, p=EMPLOYMENT[1])
    repaid = (rng.random(rows) < 0.72).astype(int)
    logit = 2.2 * (2 * repaid - 1) + rng.normal(0.0, 1.2 * noise, rows) + 0.3
    score = 1.0 / (1.0 + np.exp(-logit))
    age_group = np.where(age < 25, "under_25", np.where(age > 60, "over_60", "25_to_60"))
    sex = rng.choice(["female", "male"], size=rows, p=[0.45, 0.55])
    return {"income": income, "debt_ratio": debt_ratio, "age": age, "purpose": purpose, "employment": employment,
            "repaid": repaid, "score": score, "age_group": age_group, "sex": sex}


def _rescored(rng: np.random.Generator, columns: dict[str, Any], *, noise: float) -> dict[str, Any]:
    """The same requests scored by another version (its own score noise)."""
    repaid = columns["repaid"]
    logit = 2.2 * (2 * repaid - 1) + rng.normal(0.0, 1.2 * noise, len(repaid)) + 0.3
    return {**columns, "score": 1.0 / (1.0 + np.exp(-logit))}


def _csv(c: dict[str, Any], *, ids: str = "") -> bytes:
    """CSV of the columns; with `ids`, a prediction_id column (`<ids>-<row>`) pairs rows across versions."""
    header = "income,debt_ratio,age,loan_purpose,employment,repaid,score,age_group,sex"
    rows = [f"{i:.0f},{d:.4f},{a},{p},{e},{r},{s:.4f},{g},{x}" for i, d, a, p, e, r, s, g, x
            in zip(c["income"], c["debt_ratio"], c["age"], c["purpose"], c["employment"], c["repaid"], c["score"],
                   c["age_group"], c["sex"], strict=True)]
    if ids:
        header, rows = f"prediction_id,{header}", [f"{ids}-{n},{row}" for n, row in enumerate(rows)]
    return ("\n".join([header, *rows]) + "\n").encode()


def seed(stdout: Any) -> str:
    users = {u.username: u for u in get_user_model().objects.filter(username__in=["dana", "rita"])}
    version = ModelVersion.objects.filter(model__name=MODEL, label=LABEL).select_related("model").first()
    if version is None or set(users) != {"dana", "rita"}:
        return "skipped (no demo model)"
    if ReferenceProfile.objects.filter(version=version).exists():
        return "already seeded"
    dana, rita = users["dana"], users["rita"]
    rng = np.random.default_rng(20260216)
    profile = reference_profile_create(
        by=dana, version=version, file=SimpleUploadedFile("credit-train-2024Q4.csv", _rows(rng, 4000), "text/csv"),
        columns=["income", "debt_ratio", "age"], categorical=["loan_purpose", "employment"])
    monitor = monitor_create(by=dana, version=version, name=f"{MODEL} {LABEL} production", window_days=7,
                             y_true="repaid", score="score")
    monitor_thresholds_set(monitor=monitor, by=rita, thresholds={**monitor.thresholds,
                                                                 "performance": {"roc_auc": 0.85, "accuracy": 0.8}},
                           comment="Validation AUC 0.92: alert when production falls below 0.85.")
    monitor.refresh_from_db()
    # The last window closes an hour ago: the fairness demo's batches (uploaded just now, without
    # these feature columns) belong to the next one.
    first_end = timezone.now() - timedelta(hours=1) - timedelta(weeks=WEEKS - 1)
    challenger = ModelVersion.objects.filter(model=version.model, label=CHALLENGER).first()
    runs, comparison = [], None
    for week in range(WEEKS):
        end = first_end + timedelta(weeks=week)
        columns = _columns(rng, 1200, debt_shift=DEBT_SHIFT[week], noise=SCORE_NOISE[week])
        shadow = challenger is not None and week == WEEKS - 1
        ids = f"w{week + 1}" if shadow else ""
        batch, _ = prediction_batch_upload(by=dana, model=version.model, served_version=version,
                                           uploaded=SimpleUploadedFile(f"week-{week + 1}.csv", _csv(columns, ids=ids),
                                                                       "text/csv"))
        PredictionBatch.objects.filter(pk=batch.pk).update(uploaded_at=end - timedelta(hours=6))
        if shadow:
            # The same requests scored in shadow by the challenger (its batch is not in 1.0.0's monitor window).
            content = _csv(_rescored(rng, columns, noise=CHALLENGER_NOISE), ids=ids)
            shadow_batch, _ = prediction_batch_upload(
                by=dana, model=version.model, served_version=challenger,
                uploaded=SimpleUploadedFile(f"week-{week + 1}-shadow-{CHALLENGER}.csv", content, "text/csv"))
            PredictionBatch.objects.filter(pk=shadow_batch.pk).update(uploaded_at=end - timedelta(hours=6))
        runs.append(monitor_run(monitor=monitor, by=dana, now=end))
        if shadow:
            comparison = comparison_run(by=dana, champion=version, challenger=challenger, window_days=7,
                                        y_true="repaid", score="score", now=end)
    first = Alert.objects.filter(monitor=monitor, kind="drift").order_by("pk").first()
    if first is not None:
        alert_acknowledge(alert=first, by=dana, comment="Debt ratio rose after the March rate change; "
                                                        "investigating with the credit policy team.")
    alerts = Alert.objects.filter(monitor=monitor)
    summary = (f"reference profile #{profile.pk} of {MODEL} {LABEL}; {len(runs)} weekly runs; "
               f"{alerts.count()} alerts ({alerts.filter(status=Alert.Status.OPEN).count()} open): "
               + ", ".join(f"{a.kind} {a.subject}" for a in alerts.order_by("pk"))
               + (f"; champion/challenger comparison #{comparison.pk} ({LABEL} vs {CHALLENGER} in shadow)"
                  if comparison is not None else ""))
    stdout.write(f"  monitoring: {summary}")
    return summary

"""Champion and challenger: two model versions scored on the same window (shadow or A/B traffic
with outcomes), the difference in each metric (challenger - champion) with a paired percentile
bootstrap confidence interval. Pure numpy; no ORM.

Paired: every replicate resamples the same rows for both versions, so the interval reflects the
uncertainty of the difference on this traffic, not of each metric alone. Seeded, so a recorded
comparison can be recomputed exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from governance.monitoring.drift import DriftInputError
from governance.monitoring.performance import classification_metrics, regression_metrics

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier")
REGRESSION = ("mae", "rmse", "r2")


def _metrics(task: str, truth: np.ndarray, side: dict[str, np.ndarray | None]) -> dict[str, float | None]:
    if task == "regression":
        return {k: v for k, v in regression_metrics(truth, side["y_pred"]).items() if k in REGRESSION}
    result = classification_metrics(truth, side["y_pred"], side.get("score"), n_bins=2)
    return {name: result[name] for name in CLASSIFICATION}


def _side(values: dict[str, Any], size: int, task: str) -> dict[str, np.ndarray | None]:
    score = values.get("score")
    predicted = values.get("y_pred")
    score_array = None if score is None else np.asarray(score, dtype=np.float64)
    if predicted is None:
        if score_array is None or task == "regression":
            raise DriftInputError("performance_bad_arguments", "each version needs y_pred (or a score)")
        predicted = (score_array >= 0.5).astype(np.float64)
    side = {"y_pred": np.asarray(predicted, dtype=np.float64), "score": score_array}
    if any(array is not None and array.size != size for array in side.values()):
        raise DriftInputError("performance_length_mismatch", "both versions must score every row of the window")
    return side


def champion_challenger(y_true: Any, champion: dict[str, Any], challenger: dict[str, Any], *,
                        task: str = "classification", n_boot: int = 1000, seed: int = 0,
                        confidence: float = 0.95) -> dict[str, Any]:
    """Per metric: champion, challenger, difference (challenger - champion) and its bootstrap CI."""
    if task not in ("classification", "regression"):
        raise DriftInputError("performance_bad_arguments", "task is classification or regression")
    if not 0 < confidence < 1 or n_boot < 1:
        raise DriftInputError("performance_bad_arguments", "confidence must be in (0, 1) and n_boot positive")
    truth = np.asarray(y_true, dtype=np.float64)
    if truth.size == 0:
        raise DriftInputError("drift_empty_input", "no rows with outcomes in the window")
    sides = [_side(champion, truth.size, task), _side(challenger, truth.size, task)]
    point = [_metrics(task, truth, side) for side in sides]
    rng = np.random.default_rng(seed)
    names = list(point[0])
    differences: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(n_boot):
        rows = rng.integers(0, truth.size, truth.size)
        resampled = [_metrics(task, truth[rows], {k: (None if v is None else v[rows]) for k, v in side.items()})
                     for side in sides]
        for name in names:
            a, b = resampled[0][name], resampled[1][name]
            if a is not None and b is not None:
                differences[name].append(b - a)
    tail = (1 - confidence) / 2
    metrics: dict[str, Any] = {}
    for name in names:
        a, b = point[0][name], point[1][name]
        draws = np.asarray(differences[name])
        metrics[name] = {
            "champion": a, "challenger": b, "difference": None if a is None or b is None else b - a,
            "ci": None if draws.size == 0 else [float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))],
            "replicates_defined": int(draws.size),
        }
    return {"n": int(truth.size), "task": task, "metrics": metrics,
            "bootstrap": {"method": "paired percentile", "replicates": n_boot, "seed": seed, "confidence": confidence}}

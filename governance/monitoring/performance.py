"""Model performance over a window of labelled predictions, pure numpy.

Classification (binary, ``positive`` label 1 by default): accuracy, precision, recall, F1,
ROC AUC (ties between scores count one half, as the trapezoid over scikit-learn's ROC
curve), Brier score and calibration bins (``n_bins`` equal-width bins of the score, as
``sklearn.calibration.calibration_curve(strategy="uniform")``). Regression: MAE, RMSE, R²
(1 - SS_res / SS_tot; a constant target gives 1.0 when predicted perfectly, else 0.0, as
scikit-learn's ``force_finite``). Undefined values (no positives for recall, one class for
AUC) are None, never a made-up number.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from governance.monitoring.drift import DriftInputError

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier")
REGRESSION_METRICS = ("mae", "rmse", "r2")
# Metrics where a higher value is better; the others (brier, mae, rmse) breach upward.
HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc", "r2"})


def _arrays(*columns: Any) -> list[np.ndarray]:
    arrays = [np.asarray(column, dtype=np.float64).ravel() for column in columns]
    if len({array.size for array in arrays}) != 1:
        raise DriftInputError("performance_length_mismatch", "outcomes and predictions differ in length")
    if arrays[0].size == 0:
        raise DriftInputError("performance_empty", "no labelled predictions in the window")
    if any(np.isnan(array).any() for array in arrays):
        raise DriftInputError("performance_missing_values", "outcomes and predictions must not be missing")
    return arrays


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve with ties averaged (the Mann-Whitney U over n_pos * n_neg)."""
    positives = y_true == 1
    n_pos = int(positives.sum())
    n_neg = int(y_true.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ordered = score[order]
    ranks = np.empty(score.size, dtype=np.float64)
    # Average ranks over ties: each run of equal scores gets the mean of its positions.
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.concatenate((starts[1:], [ordered.size]))
    mean_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    u_statistic = float(ranks[positives].sum()) - n_pos * (n_pos + 1) / 2.0
    return u_statistic / (n_pos * n_neg)


def calibration_bins(y_true: np.ndarray, score: np.ndarray, *, n_bins: int = 10) -> list[dict[str, Any]]:
    """Per non-empty bin of [0, 1]: its range, count, mean score and observed positive share."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], score)
    sums = np.bincount(bin_ids, weights=score, minlength=n_bins)
    trues = np.bincount(bin_ids, weights=y_true, minlength=n_bins)
    totals = np.bincount(bin_ids, minlength=n_bins)
    return [{"low": float(edges[index]), "high": float(edges[index + 1]), "count": int(totals[index]),
             "mean_predicted": float(sums[index] / totals[index]), "observed": float(trues[index] / totals[index])}
            for index in range(n_bins) if totals[index] > 0]


def classification_metrics(y_true: Any, y_pred: Any, score: Any | None = None, *, n_bins: int = 10) -> dict[str, Any]:
    """Binary metrics; labels are 0/1, ``score`` (probability of 1) enables AUC, Brier and calibration."""
    truth, predicted = _arrays(y_true, y_pred)
    if not np.isin(truth, (0.0, 1.0)).all() or not np.isin(predicted, (0.0, 1.0)).all():
        raise DriftInputError("performance_not_binary", "labels must be 0 or 1")
    true_positive = float(np.sum((truth == 1) & (predicted == 1)))
    predicted_positive = float(np.sum(predicted == 1))
    actual_positive = float(np.sum(truth == 1))
    precision = true_positive / predicted_positive if predicted_positive else None
    recall = true_positive / actual_positive if actual_positive else None
    denominator = predicted_positive + actual_positive
    result: dict[str, Any] = {
        "n": int(truth.size),
        "accuracy": float(np.mean(truth == predicted)),
        "precision": precision, "recall": recall,
        "f1": 2 * true_positive / denominator if denominator else None,
        "roc_auc": None, "brier": None, "calibration": [],
    }
    if score is not None:
        (scores,) = _arrays(score)
        if scores.size != truth.size:
            raise DriftInputError("performance_length_mismatch", "scores and outcomes differ in length")
        if (scores < 0).any() or (scores > 1).any():
            raise DriftInputError("performance_bad_score", "scores must be probabilities in [0, 1]")
        result["roc_auc"] = roc_auc(truth, scores)
        result["brier"] = float(np.mean((truth - scores) ** 2))
        result["calibration"] = calibration_bins(truth, scores, n_bins=n_bins)
    return result


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    truth, predicted = _arrays(y_true, y_pred)
    errors = truth - predicted
    residual = float(np.sum(errors**2))
    total = float(np.sum((truth - np.mean(truth)) ** 2))
    if total != 0:
        r2 = 1.0 - residual / total
    else:
        r2 = 1.0 if residual == 0 else 0.0
    return {"n": int(truth.size), "mae": float(np.mean(np.abs(errors))),
            "rmse": math.sqrt(float(np.mean(errors**2))), "r2": r2}

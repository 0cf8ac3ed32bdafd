"""Performance metrics against scikit-learn, within 1e-12."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from governance.monitoring.drift import DriftInputError
from governance.monitoring.performance import classification_metrics, regression_metrics, roc_auc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_equal_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, 3_000)
    # scores rounded to 2 decimals: many ties, which AUC must average
    score = np.clip(np.round(0.3 * y_true + rng.uniform(0, 0.7, 3_000), 2), 0, 1)
    y_pred = (score >= 0.5).astype(int)
    result = classification_metrics(y_true, y_pred, score)
    assert result["n"] == 3_000
    assert abs(result["accuracy"] - skm.accuracy_score(y_true, y_pred)) <= 1e-12
    assert abs(result["precision"] - skm.precision_score(y_true, y_pred)) <= 1e-12
    assert abs(result["recall"] - skm.recall_score(y_true, y_pred)) <= 1e-12
    assert abs(result["f1"] - skm.f1_score(y_true, y_pred)) <= 1e-12
    assert abs(result["roc_auc"] - skm.roc_auc_score(y_true, score)) <= 1e-12
    assert abs(result["brier"] - skm.brier_score_loss(y_true, score)) <= 1e-12
    observed, predicted = calibration_curve(y_true, score, n_bins=10, strategy="uniform")
    assert np.allclose([b["observed"] for b in result["calibration"]], observed, rtol=0, atol=1e-12)
    assert np.allclose([b["mean_predicted"] for b in result["calibration"]], predicted, rtol=0, atol=1e-12)


def test_auc_with_all_scores_tied_is_one_half_and_undefined_with_one_class() -> None:
    assert roc_auc(np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.3, 0.3, 0.3, 0.3])) == 0.5
    assert roc_auc(np.array([1.0, 1.0]), np.array([0.2, 0.9])) is None


def test_undefined_rates_are_none_not_zero() -> None:
    result = classification_metrics([0, 0, 0], [0, 0, 0])
    assert result["precision"] is None
    assert result["recall"] is None
    assert result["f1"] is None
    assert result["accuracy"] == 1.0


@pytest.mark.parametrize("seed", [3, 4])
def test_regression_metrics_equal_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(10, 3, 2_000)
    y_pred = y_true + rng.normal(0.5, 1, 2_000)
    result = regression_metrics(y_true, y_pred)
    assert abs(result["mae"] - skm.mean_absolute_error(y_true, y_pred)) <= 1e-12
    assert abs(result["rmse"] - skm.root_mean_squared_error(y_true, y_pred)) <= 1e-12
    assert abs(result["r2"] - skm.r2_score(y_true, y_pred)) <= 1e-12


def test_constant_target_r2_follows_scikit_learn() -> None:
    assert regression_metrics([2.0, 2.0], [2.0, 2.0])["r2"] == skm.r2_score([2.0, 2.0], [2.0, 2.0])
    assert regression_metrics([2.0, 2.0], [1.0, 2.0])["r2"] == skm.r2_score([2.0, 2.0], [1.0, 2.0])


@pytest.mark.parametrize(("y_true", "y_pred", "code"), [
    ([0, 1], [1], "performance_length_mismatch"),
    ([], [], "performance_empty"),
    ([0, 2], [0, 1], "performance_not_binary"),
])
def test_bad_classification_input_is_refused_with_a_code(y_true: list[int], y_pred: list[int], code: str) -> None:
    with pytest.raises(DriftInputError) as raised:
        classification_metrics(y_true, y_pred)
    assert raised.value.code == code

"""Champion and challenger on the same window: point differences equal scikit-learn's metrics'
differences, and the paired bootstrap interval matches a direct resampling loop with the same seed,
covers a real improvement and straddles zero for two equal models."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from governance.monitoring.comparison import champion_challenger
from governance.monitoring.drift import DriftInputError


def _traffic(rows: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, rows)
    champion = np.clip(truth * 0.25 + rng.random(rows) * 0.75, 0, 1).round(4)
    challenger = np.clip(truth * 0.45 + rng.random(rows) * 0.55, 0, 1).round(4)  # separates better
    return truth, champion, challenger


def test_point_differences_equal_scikit_learn_and_the_interval_is_the_paired_bootstrap():
    truth, champion, challenger = _traffic(2_000)
    result = champion_challenger(truth, {"score": champion}, {"score": challenger}, n_boot=200, seed=11)
    auc = result["metrics"]["roc_auc"]
    want = sk.roc_auc_score(truth, challenger) - sk.roc_auc_score(truth, champion)
    assert abs(auc["difference"] - want) <= 1e-12
    accuracy = result["metrics"]["accuracy"]
    assert abs(accuracy["difference"] - (sk.accuracy_score(truth, challenger >= 0.5)
                                         - sk.accuracy_score(truth, champion >= 0.5))) <= 1e-12
    # The same replicates, drawn directly: the same interval.
    rng = np.random.default_rng(11)
    draws = []
    for _ in range(200):
        rows = rng.integers(0, truth.size, truth.size)
        draws.append(sk.roc_auc_score(truth[rows], challenger[rows]) - sk.roc_auc_score(truth[rows], champion[rows]))
    assert auc["ci"] == pytest.approx([np.quantile(draws, 0.025), np.quantile(draws, 0.975)], abs=1e-12)
    assert auc["ci"][0] > 0  # a real improvement is resolved
    assert result["bootstrap"] == {"method": "paired percentile", "replicates": 200, "seed": 11, "confidence": 0.95}


def test_equal_models_straddle_zero_and_bad_input_is_refused():
    truth, champion, _ = _traffic(1_500, seed=5)
    result = champion_challenger(truth, {"score": champion}, {"score": champion.copy()}, n_boot=100)
    for name, item in result["metrics"].items():
        if item["difference"] is not None:
            assert item["difference"] == 0 and item["ci"] == [0.0, 0.0], name
    with pytest.raises(DriftInputError):
        champion_challenger(truth, {"score": champion}, {"score": champion[:10]})
    regression = champion_challenger(truth * 1.0, {"y_pred": champion}, {"y_pred": champion + 0.1}, task="regression",
                                     n_boot=50)
    assert regression["metrics"]["mae"]["difference"] == pytest.approx(
        sk.mean_absolute_error(truth, champion + 0.1) - sk.mean_absolute_error(truth, champion), abs=1e-12)

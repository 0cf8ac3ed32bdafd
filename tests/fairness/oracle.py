"""Fairlearn as the oracle: per-group metrics through MetricFrame, disparities through its functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sklearn.metrics as skm
from fairlearn import metrics as flm

TOLERANCE = 1e-9

FAIRLEARN_METRICS = {
    "count": flm.count,
    "selection_rate": flm.selection_rate,
    "tpr": flm.true_positive_rate,
    "fpr": flm.false_positive_rate,
    "fnr": flm.false_negative_rate,
    "tnr": flm.true_negative_rate,
    "precision": skm.precision_score,
    "accuracy": skm.accuracy_score,
}

# Our disparity key -> (Fairlearn function, extra keyword arguments).
FAIRLEARN_DISPARITIES = {
    "demographic_parity_difference": (flm.demographic_parity_difference, {}),
    "demographic_parity_ratio": (flm.demographic_parity_ratio, {}),
    "equalized_odds_difference": (flm.equalized_odds_difference, {"agg": "worst_case"}),
    "equalized_odds_difference_mean": (flm.equalized_odds_difference, {"agg": "mean"}),
    "equalized_odds_ratio": (flm.equalized_odds_ratio, {"agg": "worst_case"}),
    "equalized_odds_ratio_mean": (flm.equalized_odds_ratio, {"agg": "mean"}),
    "equal_opportunity_difference": (flm.equal_opportunity_difference, {}),
    "equal_opportunity_ratio": (flm.equal_opportunity_ratio, {}),
}


def _key(attributes: Mapping[str, str], columns: Sequence[str]) -> tuple[str, ...]:
    return tuple(attributes[column] for column in columns)


def _index_key(index: Any) -> tuple[str, ...]:
    values = index if isinstance(index, tuple) else (index,)
    return tuple(str(value) for value in values)


def assert_close(ours: float | None, theirs: float, what: str) -> None:
    assert ours is not None, f"{what}: ours is None, Fairlearn says {theirs}"
    assert not math.isnan(theirs), f"{what}: Fairlearn says NaN, ours {ours}"
    assert abs(ours - theirs) <= TOLERANCE, f"{what}: ours {ours!r} != Fairlearn {theirs!r}"


def assert_matches_fairlearn(
    report: Mapping[str, Any],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sensitive: pd.DataFrame,
) -> int:
    """Compare every group metric and every disparity; return how many values were compared.

    ``y_true``/``y_pred`` are 0/1 arrays; ``sensitive`` holds one column per attribute with
    no missing values (Fairlearn's groupby would drop them). The report must have been made
    with ``min_group_size=0`` so that, like Fairlearn, it compares every group.
    """
    columns = list(sensitive.columns)
    compared = 0
    feature_sets = [[column] for column in columns]
    if len(columns) > 1:
        feature_sets.append(columns)

    overall = report["overall"]
    frame_all = flm.MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=sensitive[columns[0]])
    for name, value in frame_all.overall.items():
        assert_close(overall[name], float(value), f"overall {name}")
        compared += 1

    for feature_set in feature_sets:
        features = sensitive[feature_set] if len(feature_set) > 1 else sensitive[feature_set[0]]
        frame = flm.MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=features)
        expected = {_index_key(index): row for index, row in frame.by_group.iterrows() if not pd.isna(row["count"])}
        ours = {
            _key(group["attributes"], feature_set): group
            for group in report["groups"]
            if sorted(group["attributes"]) == sorted(feature_set)
        }
        assert set(ours) == set(expected), f"groups of {feature_set}: {sorted(ours)} != {sorted(expected)}"
        for key, row in expected.items():
            for name in FAIRLEARN_METRICS:
                assert_close(ours[key][name], float(row[name]), f"{feature_set}={key} {name}")
                compared += 1

        disparity = report["disparities"]["&".join(feature_set)]
        assert disparity["attributes"] == feature_set
        for name, (function, kwargs) in FAIRLEARN_DISPARITIES.items():
            theirs = float(function(y_true, y_pred, sensitive_features=features, **kwargs))
            assert_close(disparity[name], theirs, f"{feature_set} {name}")
            compared += 1
    return compared

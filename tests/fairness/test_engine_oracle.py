"""The engine against Fairlearn's MetricFrame and disparity functions, to 1e-9."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from governance.fairness.engine import ConfusionAccumulator, compute_report, predictions_from_scores
from governance.fairness.reader import audit_file
from tests.conftest import DATA_DIR
from tests.fairness.oracle import assert_matches_fairlearn

GERMAN_CREDIT = DATA_DIR / "german-credit" / "german-credit.csv"


def _synthetic(
    seed: int, sizes: list[int], *, base_rate: float = 0.4, spread: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and predictions whose rates differ by group; group sizes exactly as given."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(groups)
    offsets = np.linspace(-spread, spread, len(sizes))
    y_true = (rng.random(groups.size) < base_rate + offsets[groups] / 2).astype(np.int64)
    flip = rng.random(groups.size) < 0.25 + 0.1 * np.abs(offsets[groups])
    y_pred = np.where(flip, 1 - y_true, y_true)
    return y_true, y_pred, groups


def _report(y_true: np.ndarray, y_pred: np.ndarray, sensitive: pd.DataFrame, chunk_rows: int | None = None) -> dict:
    accumulator = ConfusionAccumulator(list(sensitive.columns))
    step = chunk_rows or len(y_true)
    for start in range(0, len(y_true), step):
        stop = start + step
        accumulator.add(
            y_true[start:stop],
            y_pred[start:stop],
            {column: sensitive[column].to_numpy()[start:stop] for column in sensitive.columns},
            row_offset=start,
        )
    return compute_report(accumulator.counts(), min_group_size=0)


def _assert_defined_everywhere(report: dict) -> None:
    """Precondition: Fairlearn reports 0 where we report None, so the oracle data avoids it."""
    for group in report["groups"]:
        assert None not in [group[name] for name in ("tpr", "fpr", "precision")], group


@pytest.mark.parametrize(
    "sizes",
    [
        [5_000, 4_000],
        [3_000, 2_000, 1_000],
        [2_000, 1_500, 1_000, 800, 600],
        [400 + 37 * index for index in range(12)],
        [50_000, 2_000, 300, 120],  # heavily imbalanced
    ],
    ids=["2-groups", "3-groups", "5-groups", "12-groups", "imbalanced"],
)
def test_single_attribute_metrics_match_fairlearn(sizes: list[int]) -> None:
    y_true, y_pred, groups = _synthetic(len(sizes), sizes)
    sensitive = pd.DataFrame({"group": np.array([f"g{code:02d}" for code in range(len(sizes))])[groups]})
    report = _report(y_true, y_pred, sensitive, chunk_rows=1_777)
    _assert_defined_everywhere(report)

    compared = assert_matches_fairlearn(report, y_true, y_pred, sensitive)

    assert report["rows"] == sum(sizes)
    assert [group["count"] for group in report["groups"]] == sizes
    assert compared == 8 + 8 * len(sizes) + 8


def test_two_attributes_with_empty_intersections_match_fairlearn() -> None:
    y_true, y_pred, region = _synthetic(7, [4_000, 3_000, 2_000])
    rng = np.random.default_rng(8)
    band = rng.integers(0, 3, y_true.size)
    # Region 2 never meets band 0 or band 1: two empty intersections.
    band[region == 2] = 2
    sensitive = pd.DataFrame({"region": np.array(["north", "south", "west"])[region], "band": np.array(["b1", "b2", "b3"])[band]})
    report = _report(y_true, y_pred, sensitive, chunk_rows=2_500)
    _assert_defined_everywhere(report)

    assert_matches_fairlearn(report, y_true, y_pred, sensitive)

    intersections = [group["attributes"] for group in report["groups"] if len(group["attributes"]) == 2]
    assert len(intersections) == 7
    assert {"region": "west", "band": "b1"} not in intersections
    assert report["disparities"]["region&band"]["groups_compared"] == 7


def test_three_attributes_with_imbalance_match_fairlearn() -> None:
    y_true, y_pred, first = _synthetic(11, [20_000, 1_000, 400])
    rng = np.random.default_rng(12)
    sensitive = pd.DataFrame(
        {
            "a": np.array(["x", "y", "z"])[first],
            "b": rng.choice(["p", "q"], size=y_true.size, p=[0.9, 0.1]),
            "c": rng.integers(1, 4, y_true.size),
        }
    )
    report = _report(y_true, y_pred, sensitive)
    _assert_defined_everywhere(report)

    assert_matches_fairlearn(report, y_true, y_pred, sensitive)
    assert set(report["disparities"]) == {"a", "b", "c", "a&b&c"}


def _german_credit() -> pd.DataFrame:
    # Fail, don't skip: this real data set is part of the oracle.
    assert GERMAN_CREDIT.is_file(), f"missing test data {GERMAN_CREDIT}"
    frame = pd.read_csv(GERMAN_CREDIT)
    assert len(frame) == 1_000
    # A deterministic stand-in for a model: longer, larger loans score lower.
    logit = 2.2 - 0.035 * frame["duration"] - 0.00009 * frame["credit_amount"]
    frame["score"] = 1.0 / (1.0 + np.exp(-logit))
    frame["age_band"] = pd.cut(frame["age"], [0, 25, 35, 50, 200], labels=["<=25", "26-35", "36-50", "51+"]).astype(str)
    return frame


GERMAN_THRESHOLD = 0.7


def test_german_credit_matches_fairlearn() -> None:
    frame = _german_credit()
    y_true = frame["credit_good"].to_numpy()
    y_pred = predictions_from_scores(frame["score"].to_numpy(), GERMAN_THRESHOLD).astype(np.int64)
    assert 0.2 < y_pred.mean() < 0.9
    sensitive = frame[["sex", "age_band"]]
    report = _report(y_true, y_pred, sensitive)
    _assert_defined_everywhere(report)

    compared = assert_matches_fairlearn(report, y_true, y_pred, sensitive)

    assert compared == 8 + 8 * (2 + 4 + 8) + 8 * 3
    assert [group["attributes"] for group in report["groups"][:2]] == [{"sex": "female"}, {"sex": "male"}]


def test_german_credit_file_audit_in_score_mode_matches_fairlearn(tmp_path: Path) -> None:
    frame = _german_credit()
    path = tmp_path / "german-scored.csv"
    frame.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)

    report = audit_file(
        path,
        y_true="credit_good",
        score="score",
        threshold=GERMAN_THRESHOLD,
        sensitive=["sex", "age_band"],
        chunk_rows=97,
        min_group_size=0,
    )

    y_pred = (frame["score"].to_numpy() >= GERMAN_THRESHOLD).astype(np.int64)
    assert_matches_fairlearn(report, frame["credit_good"].to_numpy(), y_pred, frame[["sex", "age_band"]])
    assert report["rows"] == 1_000

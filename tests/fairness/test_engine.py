"""Edge cases of the metrics engine: undefined rates, Unknown groups, small groups, labels, bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fairlearn import metrics as flm

from governance.fairness import engine
from governance.fairness.engine import (
    ConfusionAccumulator,
    FairnessInputError,
    _nan_quantiles,
    compute_report,
    normalise_group,
    normalise_label,
    predictions_from_scores,
    rates_from_cells,
)


def _counts(y_true, y_pred, sensitive, **accumulator_kwargs):  # type: ignore[no-untyped-def]
    accumulator = ConfusionAccumulator(list(sensitive), **accumulator_kwargs)
    accumulator.add(y_true, y_pred, sensitive)
    return accumulator.counts()


def _group(report: dict, **attributes: str) -> dict:
    matches = [group for group in report["groups"] if group["attributes"] == attributes]
    assert len(matches) == 1, attributes
    return matches[0]


def _balanced_data(seed: int = 0, sizes: tuple[int, ...] = (400, 300, 200)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.array([f"g{i}" for i in range(len(sizes))]), sizes)
    y_true = rng.integers(0, 2, groups.size)
    y_pred = np.where(rng.random(groups.size) < 0.3, 1 - y_true, y_true)
    return y_true, y_pred, groups


# --- rates -----------------------------------------------------------------------------------


def test_zero_denominator_rates_are_none_not_zero() -> None:
    # Group "only_negatives" has no actual positives and no predicted positives.
    y_true = np.array([1, 0, 1, 0, 0, 0, 0])
    y_pred = np.array([1, 1, 0, 0, 0, 0, 0])
    groups = np.array(["mixed"] * 4 + ["only_negatives"] * 3)

    report = compute_report(_counts(y_true, y_pred, {"g": groups}), min_group_size=0)

    empty = _group(report, g="only_negatives")
    assert empty["tpr"] is None
    assert empty["fnr"] is None
    assert empty["precision"] is None
    assert empty["selection_rate"] == 0.0
    assert empty["fpr"] == 0.0
    assert empty["tnr"] == 1.0
    assert empty["accuracy"] == 1.0
    mixed = _group(report, g="mixed")
    assert mixed["tpr"] == 0.5 and mixed["precision"] == 0.5
    json.dumps(report, allow_nan=False)


def test_undefined_rates_are_left_out_of_disparities_and_listed() -> None:
    y_true, y_pred, groups = _balanced_data()
    y_true = y_true.copy()
    y_true[groups == "g2"] = 0  # g2: TPR undefined
    report = compute_report(_counts(y_true, y_pred, {"g": groups}), min_group_size=0)
    disparity = report["disparities"]["g"]

    assert disparity["undefined_rate_groups"]["tpr"] == [{"g": "g2"}]
    assert disparity["undefined_rate_groups"]["fpr"] == []
    kept = groups != "g2"
    expected_tpr_difference = flm.equal_opportunity_difference(y_true[kept], y_pred[kept], sensitive_features=groups[kept])
    assert disparity["equal_opportunity_difference"] == pytest.approx(expected_tpr_difference, abs=1e-12)
    # Fairlearn would count g2's TPR as 0 and so report a much larger gap.
    fairlearn_all = flm.equal_opportunity_difference(y_true, y_pred, sensitive_features=groups)
    assert fairlearn_all > disparity["equal_opportunity_difference"] + 0.3
    # Selection rates are all defined, so demographic parity still uses every group.
    assert disparity["demographic_parity_difference"] == pytest.approx(
        flm.demographic_parity_difference(y_true, y_pred, sensitive_features=groups), abs=1e-12
    )


def test_disparity_needs_two_groups_with_a_defined_rate() -> None:
    y_true = np.array([1, 0, 1, 0, 0, 0])
    y_pred = np.array([1, 0, 0, 1, 0, 1])
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    report = compute_report(_counts(y_true, y_pred, {"g": groups}), min_group_size=0)
    disparity = report["disparities"]["g"]

    assert disparity["equal_opportunity_difference"] is None  # only "a" has positives
    assert disparity["equalized_odds_difference"] is None
    assert disparity["equalized_odds_difference_mean"] is None
    assert disparity["fpr_difference"] == pytest.approx(2 / 3 - 0.0)
    assert disparity["demographic_parity_difference"] == pytest.approx(2 / 3 - 1 / 3)


def test_ratio_with_all_rates_zero_is_none() -> None:
    y_true = np.array([1, 0, 1, 0])
    y_pred = np.zeros(4, dtype=np.int64)
    report = compute_report(_counts(y_true, y_pred, {"g": np.array(["a", "a", "b", "b"])}), min_group_size=0)
    disparity = report["disparities"]["g"]

    assert disparity["demographic_parity_difference"] == 0.0
    assert disparity["demographic_parity_ratio"] is None
    assert all(row["impact_ratio_to_best"] is None for row in disparity["impact_ratios"])


def test_rates_from_cells_uses_tn_fp_fn_tp_order() -> None:
    rates = rates_from_cells(np.array([[5, 1, 2, 4]]))  # TN FP FN TP
    assert rates["tpr"][0] == pytest.approx(4 / 6)
    assert rates["fpr"][0] == pytest.approx(1 / 6)
    assert rates["precision"][0] == pytest.approx(4 / 5)
    assert rates["selection_rate"][0] == pytest.approx(5 / 12)
    assert rates["accuracy"][0] == pytest.approx(9 / 12)


# --- groups ----------------------------------------------------------------------------------


def test_missing_sensitive_values_form_one_unknown_group() -> None:
    groups = np.array(["a", None, np.nan, "", "   ", "a", "b"], dtype=object)
    y = np.array([1, 0, 1, 0, 1, 0, 1])
    report = compute_report(_counts(y, y, {"g": groups}), min_group_size=0)

    assert [g["attributes"]["g"] for g in report["groups"]] == ["a", "b", "Unknown"]
    unknown = _group(report, g="Unknown")
    assert unknown["count"] == 4
    assert unknown["flags"] == ["unknown_group"]
    assert _group(report, g="a")["flags"] == []
    assert report["disparities"]["g"]["groups_compared"] == 3


def test_unknown_from_arrow_nulls_and_numeric_nan() -> None:
    y = np.array([1, 0, 1, 0])
    report = compute_report(
        _counts(y, y, {"s": pa.array(["x", None, "x", None]), "n": np.array([1.0, np.nan, 2.0, 1.0])}),
        min_group_size=2,
    )
    assert _group(report, s="Unknown")["count"] == 2
    assert _group(report, n="Unknown")["count"] == 1
    assert _group(report, n="1")["count"] == 2  # 1.0 reads as "1"
    assert _group(report, s="Unknown", n="Unknown")["flags"] == ["small_group", "unknown_group"]


def test_small_groups_are_flagged_and_left_out_of_disparities() -> None:
    y_true, y_pred, groups = _balanced_data(sizes=(400, 300, 12))
    y_pred = np.where(groups == "g2", 1, y_pred)  # the small group is the extreme one
    counts = _counts(y_true, y_pred, {"g": groups})
    big = groups != "g2"

    report = compute_report(counts, min_group_size=30)
    disparity = report["disparities"]["g"]
    assert _group(report, g="g2")["flags"] == ["small_group"]
    assert _group(report, g="g0")["flags"] == []
    assert disparity["excluded_small_groups"] == [{"g": "g2"}]
    assert disparity["groups_compared"] == 2
    assert disparity["demographic_parity_difference"] == pytest.approx(
        flm.demographic_parity_difference(y_true[big], y_pred[big], sensitive_features=groups[big]), abs=1e-12
    )
    assert disparity["equalized_odds_difference"] == pytest.approx(
        flm.equalized_odds_difference(y_true[big], y_pred[big], sensitive_features=groups[big]), abs=1e-12
    )

    included = compute_report(counts, min_group_size=30, include_small_groups=True)["disparities"]["g"]
    assert included["excluded_small_groups"] == []
    assert included["demographic_parity_difference"] == pytest.approx(
        flm.demographic_parity_difference(y_true, y_pred, sensitive_features=groups), abs=1e-12
    )
    assert included["demographic_parity_difference"] != disparity["demographic_parity_difference"]


def test_marginal_groups_equal_counts_accumulated_for_one_attribute_alone() -> None:
    rng = np.random.default_rng(3)
    a = rng.choice(["x", "y", "z"], 5_000)
    b = rng.choice(["p", "q"], 5_000)
    y_true, y_pred = rng.integers(0, 2, 5_000), rng.integers(0, 2, 5_000)

    both = compute_report(_counts(y_true, y_pred, {"a": a, "b": b}))
    alone = compute_report(_counts(y_true, y_pred, {"a": a}))

    marginal = [g for g in both["groups"] if list(g["attributes"]) == ["a"]]
    assert marginal == alone["groups"]
    assert both["disparities"]["a"] == alone["disparities"]["a"]
    assert len(both["groups"]) == 3 + 2 + 6


def test_impact_ratios_against_best_and_largest_group() -> None:
    # Selection rates: a 0.5 (n=100), b 0.8 (n=50), c 0.2 (n=60).
    groups = np.repeat(np.array(["a", "b", "c"]), [100, 50, 60])
    y_pred = np.concatenate([np.repeat([1, 0], [50, 50]), np.repeat([1, 0], [40, 10]), np.repeat([1, 0], [12, 48])])
    y_true = np.ones_like(y_pred)
    report = compute_report(_counts(y_true, y_pred, {"g": groups}))
    disparity = report["disparities"]["g"]

    assert disparity["best_group"] == {"g": "b"}
    assert disparity["reference_group"] == {"g": "a"}
    assert disparity["reference_rule"] == "largest_group"
    by_group = {row["attributes"]["g"]: row for row in disparity["impact_ratios"]}
    assert by_group["c"]["impact_ratio_to_best"] == pytest.approx(0.25)
    assert by_group["c"]["impact_ratio_to_reference"] == pytest.approx(0.4)
    assert by_group["b"]["impact_ratio_to_reference"] == pytest.approx(1.6)
    assert disparity["demographic_parity_ratio"] == pytest.approx(0.25)


def test_chosen_reference_group_applies_per_feature_set() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.choice(["x", "y"], 2_000), rng.choice(["p", "q"], 2_000)
    y = rng.integers(0, 2, 2_000)
    report = compute_report(_counts(y, y, {"a": a, "b": b}), reference_group={"a": "y"})

    assert report["disparities"]["a"]["reference_group"] == {"a": "y"}
    assert report["disparities"]["a"]["reference_rule"] == "chosen"
    assert report["disparities"]["b"]["reference_rule"] == "largest_group"
    y_row = next(r for r in report["disparities"]["a"]["impact_ratios"] if r["attributes"] == {"a": "y"})
    assert y_row["impact_ratio_to_reference"] == 1.0

    with pytest.raises(FairnessInputError) as missing:
        compute_report(_counts(y, y, {"a": a, "b": b}), reference_group={"a": "nope"})
    assert missing.value.code == "fairness_bad_reference_group"


# --- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", "1"),
        ("1.0", "1"),
        (" 1 ", "1"),
        ("+1", "1"),
        ("01", "1"),
        ("1e0", "1"),
        (1, "1"),
        (1.0, "1"),
        (np.int8(0), "0"),
        (True, "1"),
        ("0.50", "0.5"),
        ("good", "good"),
        ("Good", "Good"),
        ("", None),
        (None, None),
        (float("nan"), None),
        ("nan", "nan"),
    ],
)
def test_label_normalisation_rule(raw: object, expected: str | None) -> None:
    assert normalise_label(raw) == expected


def test_group_normalisation_keeps_text_verbatim() -> None:
    assert normalise_group("01") == "01"
    assert normalise_group(" a ") == " a "
    assert normalise_group(3) == "3"
    assert normalise_group(3.0) == "3"
    assert normalise_group(2.5) == "2.5"
    assert normalise_group("\t") == "Unknown"


def test_numeric_text_labels_match_integer_labels() -> None:
    groups = np.array(["a", "b", "a", "b"])
    as_text = compute_report(
        _counts(np.array(["1.0", "0", "1", "0.0"], dtype=object), np.array(["1", "1", "0", "0"]), {"g": groups})
    )
    as_int = compute_report(_counts(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]), {"g": groups}))
    assert as_text["groups"] == as_int["groups"]
    assert as_text["overall"]["tpr"] == 0.5


def test_named_labels_with_pos_label() -> None:
    y_true = np.array(["good", "bad", "good", "bad"])
    y_pred = np.array(["good", "good", "bad", "bad"])
    counts = _counts(y_true, y_pred, {"g": np.array(["a"] * 4)}, pos_label="good")
    report = compute_report(counts, min_group_size=0)
    assert report["overall"]["tpr"] == 0.5
    assert report["overall"]["fpr"] == 0.5
    assert report["pos_label"] == "good"
    assert report["label_values"] == ["good", "bad"]


def test_label_outside_declared_set_names_first_bad_row_across_chunks() -> None:
    accumulator = ConfusionAccumulator(["g"], label_values=["0", "1"])
    first = np.zeros(100, dtype=np.int64)
    accumulator.add(first, first, {"g": np.array(["a"] * 100)}, row_offset=0)
    second_true = np.array([0, 1, 0, 1, 0, 0, 2, 0])
    second_pred = np.array([0, 1, 0, 1, 7, 0, 0, 0])  # row 105 in y_pred comes first
    with pytest.raises(FairnessInputError) as error:
        accumulator.add(second_true, second_pred, {"g": np.array(["a"] * 8)}, row_offset=100)
    assert error.value.code == "fairness_bad_label"
    assert error.value.extra["row"] == 105
    assert error.value.extra["column"] == "y_pred"
    # The row and column are named; the cell never is (it is personal data).
    assert "row 105" in str(error.value) and "'7'" not in str(error.value)


def test_default_label_set_is_zero_one() -> None:
    accumulator = ConfusionAccumulator(["g"])
    with pytest.raises(FairnessInputError) as error:
        accumulator.add(np.array([0, 1, -1]), np.array([0, 1, 1]), {"g": np.array(["a", "a", "a"])})
    assert error.value.code == "fairness_bad_label"
    assert error.value.extra["row"] == 3


def test_missing_label_is_a_bad_label() -> None:
    accumulator = ConfusionAccumulator(["g"])
    with pytest.raises(FairnessInputError) as error:
        accumulator.add(pa.array(["1", "0", None, ""]), pa.array(["1", "0", "1", "1"]), {"g": pa.array(["a"] * 4)})
    assert error.value.extra["row"] == 3
    assert "a missing value" in str(error.value)


def test_third_label_value_is_an_error_when_only_pos_label_is_given() -> None:
    accumulator = ConfusionAccumulator(["g"], pos_label="good")
    accumulator.add(np.array(["good", "bad"]), np.array(["bad", "good"]), {"g": np.array(["a", "a"])})
    with pytest.raises(FairnessInputError) as error:
        accumulator.add(np.array(["good", "bad", "ugly"]), np.array(["good", "good", "bad"]), {"g": np.array(["a"] * 3)})
    assert error.value.extra["row"] == 5
    assert "ugly" not in str(error.value)


def test_pos_label_is_required_for_named_label_values() -> None:
    with pytest.raises(FairnessInputError) as error:
        ConfusionAccumulator(["g"], label_values=["good", "bad"])
    assert error.value.code == "fairness_pos_label_required"
    with pytest.raises(FairnessInputError) as outside:
        ConfusionAccumulator(["g"], pos_label="fine", label_values=["good", "bad"])
    assert outside.value.code == "fairness_bad_arguments"


def test_minus_one_one_labels_are_accepted_when_declared() -> None:
    report = compute_report(
        _counts(np.array([-1, 1, 1, -1]), np.array([-1, 1, -1, 1]), {"g": np.array(["a"] * 4)}, label_values=[-1, 1]),
        min_group_size=0,
    )
    assert report["overall"]["tpr"] == 0.5


def test_boolean_arrays_are_positive_indicators() -> None:
    report = compute_report(
        _counts(np.array([True, False, True]), np.array([True, True, False]), {"g": np.array(["a"] * 3)}),
        min_group_size=0,
    )
    assert report["overall"]["tpr"] == 0.5
    assert report["overall"]["fpr"] == 1.0


def test_missing_sensitive_column_and_length_mismatch() -> None:
    accumulator = ConfusionAccumulator(["a", "b"])
    with pytest.raises(FairnessInputError) as missing:
        accumulator.add(np.array([1]), np.array([1]), {"a": np.array(["x"])})
    assert missing.value.code == "fairness_missing_column"
    assert "'b'" in str(missing.value)
    with pytest.raises(FairnessInputError) as mismatch:
        accumulator.add(np.array([1, 0]), np.array([1]), {"a": np.array(["x"]), "b": np.array(["y"])})
    assert mismatch.value.code == "fairness_length_mismatch"


def test_no_rows_is_an_empty_input_error() -> None:
    accumulator = ConfusionAccumulator(["g"])
    accumulator.add(np.array([], dtype=np.int64), np.array([], dtype=np.int64), {"g": np.array([], dtype=object)})
    with pytest.raises(FairnessInputError) as error:
        compute_report(accumulator.counts())
    assert error.value.code == "fairness_empty_input"


# --- scores ----------------------------------------------------------------------------------


def test_score_at_threshold_counts_as_positive() -> None:
    predicted = predictions_from_scores(np.array([0.2, 0.5, 0.7, 0.49999]), 0.5)
    assert predicted.tolist() == [False, True, True, False]
    from_text = predictions_from_scores(pa.array(["0.2", "0.5", "1e0"]), 0.5)
    assert from_text.tolist() == [False, True, True]


def test_missing_or_text_score_names_the_row() -> None:
    with pytest.raises(FairnessInputError) as error:
        predictions_from_scores(pa.array(["0.2", "0.9", "high"]), 0.5, row_offset=10, column="p")
    assert error.value.code == "fairness_bad_score"
    assert error.value.extra["row"] == 13
    with pytest.raises(FairnessInputError) as nan_error:
        predictions_from_scores(np.array([0.1, np.nan]), 0.5)
    assert nan_error.value.extra["row"] == 2


# --- chunking and bootstrap ------------------------------------------------------------------


def test_chunked_accumulation_equals_one_chunk() -> None:
    rng = np.random.default_rng(9)
    n = 3_001
    y_true, y_pred = rng.integers(0, 2, n), rng.integers(0, 2, n)
    a = rng.choice(np.array(["x", "y", None], dtype=object), n)
    b = rng.integers(0, 4, n)

    whole = ConfusionAccumulator(["a", "b"])
    whole.add(y_true, y_pred, {"a": a, "b": b})
    pieces = ConfusionAccumulator(["a", "b"])
    for start in range(0, n, 7):
        pieces.add(y_true[start : start + 7], y_pred[start : start + 7], {"a": a[start : start + 7], "b": b[start : start + 7]})

    assert whole.counts().groups == pieces.counts().groups
    np.testing.assert_array_equal(whole.counts().cells, pieces.counts().cells)
    assert compute_report(whole.counts(), bootstrap=200, seed=4) == compute_report(pieces.counts(), bootstrap=200, seed=4)


def test_bootstrap_is_reproducible_with_a_seed_and_varies_without() -> None:
    y_true, y_pred, groups = _balanced_data(seed=2)
    counts = _counts(y_true, y_pred, {"g": groups})

    first = compute_report(counts, bootstrap=500, seed=123)
    again = compute_report(counts, bootstrap=500, seed=123)
    other = compute_report(counts, bootstrap=500, seed=124)

    assert json.dumps(first) == json.dumps(again)
    assert first["groups"][0]["ci"] != other["groups"][0]["ci"]
    assert compute_report(counts)["groups"][0]["ci"] is None


def test_bootstrap_intervals_contain_the_point_estimate() -> None:
    y_true, y_pred, groups = _balanced_data(seed=6, sizes=(2_000, 1_000, 500))
    # Real gaps between groups: a max-min statistic is biased upward when groups are equal.
    rng = np.random.default_rng(8)
    y_pred = np.where((groups == "g2") & (rng.random(groups.size) < 0.4), 0, y_pred)
    report = compute_report(_counts(y_true, y_pred, {"g": groups}), bootstrap=2_000, seed=1)

    for entry in [report["overall"], *report["groups"]]:
        for name, interval in entry["ci"].items():
            low, high = interval
            assert low <= entry[name] <= high, (entry.get("attributes"), name, interval)
            assert high - low > 0.005
    disparity = report["disparities"]["g"]
    for name, interval in disparity["ci"].items():
        assert interval[0] <= disparity[name] <= interval[1], name


def test_bootstrap_width_matches_binomial_standard_error() -> None:
    y_true, y_pred, groups = _balanced_data(seed=6, sizes=(2_000, 1_000))
    report = compute_report(_counts(y_true, y_pred, {"g": groups}), bootstrap=4_000, seed=7)
    group = report["groups"][0]
    rate, count = group["selection_rate"], group["count"]
    expected_width = 2 * 1.959964 * np.sqrt(rate * (1 - rate) / count)
    low, high = group["ci"]["selection_rate"]
    assert high - low == pytest.approx(expected_width, rel=0.1)


def test_ci_is_none_where_the_rate_is_undefined() -> None:
    y_true = np.array([0] * 40 + [1, 0] * 20)
    y_pred = np.array([0, 1] * 40)
    groups = np.array(["neg"] * 40 + ["mix"] * 40)
    report = compute_report(_counts(y_true, y_pred, {"g": groups}), bootstrap=100, seed=0)
    assert _group(report, g="neg")["ci"]["tpr"] is None
    assert _group(report, g="neg")["ci"]["fpr"] is not None


def test_nan_quantiles_match_numpy() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((1_001, 4))
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:, 3] = np.nan
    ours = _nan_quantiles(values, [0.025, 0.5, 0.975])
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        theirs = np.nanquantile(values, [0.025, 0.5, 0.975], axis=0)
    np.testing.assert_array_equal(ours, theirs)


def test_report_is_strict_json() -> None:
    y_true, y_pred, groups = _balanced_data()
    frame = pd.DataFrame({"g": groups, "h": np.where(y_true == 1, "p", None)})
    counts = _counts(y_true, y_pred, {"g": frame["g"].to_numpy(), "h": frame["h"].to_numpy()})
    text = json.dumps(compute_report(counts, bootstrap=50, seed=1), allow_nan=False)
    assert '"Unknown"' in text


def test_long_input_goes_through_in_slices_with_row_numbers_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(10)
    y_true, y_pred = rng.integers(0, 2, 95), rng.integers(0, 2, 95)
    groups = list(rng.choice(["a", "b", "c"], 95))  # a plain list is accepted too
    whole = _counts(y_true, y_pred, {"g": groups})

    monkeypatch.setattr(engine, "_SLICE_ROWS", 10)
    sliced = _counts(y_true, y_pred, {"g": groups})
    np.testing.assert_array_equal(whole.cells, sliced.cells)

    y_true[57] = 3
    with pytest.raises(FairnessInputError) as error:
        _counts(y_true, y_pred, {"g": groups})
    assert error.value.extra["row"] == 58

"""The drift engine against scipy (KS bit for bit, Wasserstein, chi-square of homogeneity,
Jensen-Shannon, Benjamini-Hochberg), the alert rule, and the false-alarm rate under no drift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from governance.monitoring import drift
from governance.monitoring.drift import (
    DriftInputError,
    adjust_pvalues,
    build_profiles,
    chi2_homogeneity,
    drift_report,
    ks_2samp_sorted,
    profile_categorical,
    profile_from_json,
    profile_numeric,
    profile_to_json,
)

KS_CASES = [
    # (n_ref, n_cur, rounding): rounding makes ties; sizes cover equal, unequal, exact and asymptotic
    (50, 50, None), (50, 50, 1), (37, 91, None), (200, 130, 0), (3_000, 700, 2), (12_000, 4_000, None),
    (12_000, 9_000, 1), (40_000, 40_000, 3),
]


@pytest.mark.parametrize(("n_ref", "n_cur", "rounding"), KS_CASES)
@pytest.mark.parametrize("shift", [0.0, 0.15])
def test_ks_equals_scipy_statistic_bit_for_bit_and_pvalue_within_1e12(n_ref: int, n_cur: int, rounding: int | None,
                                                                     shift: float) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    reference = rng.normal(0, 1, n_ref)
    current = rng.normal(shift, 1, n_cur)
    if rounding is not None:
        reference, current = np.round(reference, rounding), np.round(current, rounding)
    want = stats.ks_2samp(reference, current)
    got = ks_2samp_sorted(np.sort(reference), np.sort(current))
    assert got.statistic == float(want.statistic)
    assert abs(got.pvalue - float(want.pvalue)) <= 1e-12
    assert got.method == ("exact" if max(n_ref, n_cur) <= 10_000 else "asymp")


@pytest.mark.parametrize("method", ["exact", "asymp"])
def test_ks_forced_method_matches_scipy(method: str) -> None:
    rng = np.random.default_rng(7)
    reference, current = np.round(rng.normal(0, 1, 300), 1), np.round(rng.normal(0.2, 1, 170), 1)
    want = stats.ks_2samp(reference, current, method=method)
    got = ks_2samp_sorted(np.sort(reference), np.sort(current), method=method)  # type: ignore[arg-type]
    assert got.statistic == float(want.statistic)
    assert abs(got.pvalue - float(want.pvalue)) <= 1e-12


@pytest.mark.parametrize("rounding", [None, 1])
def test_wasserstein_equals_scipy_and_is_normed_by_reference_std(rounding: int | None) -> None:
    rng = np.random.default_rng(11)
    reference, current = rng.normal(5, 2, 5_000), rng.normal(5.4, 2.5, 1_500)
    if rounding is not None:
        reference, current = np.round(reference, rounding), np.round(current, rounding)
    result = drift.numeric_drift(profile_numeric("x", reference), current)
    want = stats.wasserstein_distance(reference, current)
    assert abs(result["wasserstein"] - want) <= 1e-12 * max(1.0, want)
    assert abs(result["wasserstein_normed"] - want / np.std(reference)) <= 1e-12


def test_bins_are_reference_deciles_with_duplicates_merged_and_open_tails() -> None:
    reference = np.array([0.0] * 60 + list(range(1, 41)), dtype=float)  # 60 % zeros: deciles repeat 0
    profile = profile_numeric("x", reference)
    # deciles 0.1..0.5 are all 0 and merge into one edge; 0.6..0.9 interpolate
    assert profile.edges.tolist() == pytest.approx([0.0, 0.4, 10.3, 20.2, 30.1], abs=1e-12)
    assert profile.counts.tolist() == [60, 0, 10, 10, 10, 10]
    result = drift.numeric_drift(profile, np.array([-1e9, 1e9, 5.0]))
    assert sum(result["bins"]["current"]) == 3  # values far outside the reference land in the open tails
    assert result["bins"]["current"][0] == 1 and result["bins"]["current"][-1] == 1


def test_psi_and_js_use_the_frozen_bins_not_the_window() -> None:
    rng = np.random.default_rng(3)
    profile = profile_numeric("x", rng.normal(0, 1, 20_000))
    first = drift.numeric_drift(profile, rng.normal(0.5, 1, 2_000))
    second = drift.numeric_drift(profile, np.concatenate([rng.normal(0.5, 1, 2_000), rng.normal(9, 1, 10)]))
    assert first["bins"]["edges"] == second["bins"]["edges"] == profile.edges.tolist()
    ref_share = np.array(first["bins"]["reference"]) / 20_000
    cur_share = np.array(first["bins"]["current"]) / 2_000
    expected_psi = float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))
    assert abs(first["psi"] - expected_psi) <= 1e-12
    assert abs(first["js"] - jensenshannon(ref_share, cur_share, base=2)) <= 1e-12


@pytest.mark.parametrize("categories", [2, 5])
def test_chi2_is_homogeneity_like_chi2_contingency_with_correction_recorded(categories: int) -> None:
    rng = np.random.default_rng(categories)
    reference = rng.integers(5, 400, categories)
    current = rng.integers(5, 90, categories)
    want = stats.chi2_contingency(np.array([reference, current]))
    got = chi2_homogeneity(reference, current)
    assert abs(got.statistic - want.statistic) <= 1e-12 * max(1.0, want.statistic)
    assert abs(got.pvalue - want.pvalue) <= 1e-12
    assert got.dof == want.dof == categories - 1
    assert got.correction is (categories == 2)


def test_novel_categories_are_bins_of_their_own_reported_by_name() -> None:
    profile = profile_categorical("country", ["fr"] * 500 + ["de"] * 300 + ["it"] * 200)
    result = drift.categorical_drift(profile, ["fr"] * 100 + ["de"] * 60 + ["es"] * 30 + ["pt"] * 10 + [None] * 5)
    assert result["novel"] == ["es", "pt"]
    assert result["bins"]["categories"] == ["de", "fr", "it", "es", "pt"]
    assert result["bins"]["current"] == [60, 100, 0, 30, 10]
    want = stats.chi2_contingency(np.array([[300, 500, 200, 0, 0], [60, 100, 0, 30, 10]]))
    assert abs(result["chi2"]["statistic"] - want.statistic) <= 1e-9
    assert result["missing"]["current"] == 5 / 205
    assert result["missing"]["reference"] == 0.0


def test_benjamini_hochberg_and_bonferroni_adjustment() -> None:
    pvalues = [0.001, 0.04, 0.03, 0.2, 0.012, 0.9]
    assert np.allclose(adjust_pvalues(pvalues, "benjamini-hochberg"), stats.false_discovery_control(pvalues), atol=1e-15)
    assert adjust_pvalues(pvalues, "bonferroni") == [min(p * 6, 1.0) for p in pvalues]
    with pytest.raises(DriftInputError) as raised:
        adjust_pvalues(pvalues, "holm")  # type: ignore[arg-type]
    assert raised.value.code == "drift_bad_arguments"


def test_a_tiny_shift_in_a_huge_window_is_significant_but_not_drift() -> None:
    rng = np.random.default_rng(5)
    profiles = build_profiles({"x": rng.normal(0, 1, 400_000)})
    report = drift_report(profiles, {"x": rng.normal(0.03, 1, 400_000)})
    column = report["columns"][0]
    assert column["significant"] is True
    assert column["effect_size"]["value"] < 0.1
    assert column["drift"] is False
    assert report["correction"] == "benjamini-hochberg"
    shifted = drift_report(profiles, {"x": rng.normal(0.5, 1, 5_000)})
    assert shifted["columns"][0]["drift"] is True
    assert shifted["drifted"] == ["x"]


def test_each_result_carries_the_evidence_fields() -> None:
    rng = np.random.default_rng(9)
    profiles = build_profiles({"x": rng.normal(0, 1, 1_000), "c": rng.choice(["a", "b"], 1_000)}, categorical=["c"])
    report = drift_report(profiles, {"x": rng.normal(0, 1, 400), "c": rng.choice(["a", "b"], 400)}, correction="bonferroni")
    assert report["correction"] == "bonferroni"
    for column in report["columns"]:
        evidence = {"statistic", "pvalue", "pvalue_adjusted", "effect_size", "n_ref", "n_cur", "smallest_detectable_effect"}
        assert evidence <= set(column)
        assert column["n_ref"] == 1_000 and column["n_cur"] == 400
        assert 0 < column["smallest_detectable_effect"] < 1


def test_profile_round_trips_through_json() -> None:
    rng = np.random.default_rng(1)
    profiles = build_profiles({"x": rng.normal(0, 1, 500), "c": ["a", "b", None] * 10}, categorical=["c"])
    restored = [profile_from_json(profile_to_json(p)) for p in profiles]
    current = {"x": rng.normal(0.1, 1, 300), "c": ["a", "b"] * 20}
    assert drift_report(restored, current) == drift_report(profiles, current)


@pytest.mark.parametrize(("columns", "current", "code"), [
    ({"x": [1.0, 2.0]}, {}, "drift_missing_column"),
    ({"x": [1.0, "a"]}, None, "drift_not_numeric"),
    ({"x": [None, None]}, None, "drift_empty_column"),
])
def test_bad_input_is_refused_with_a_code(columns: dict[str, list[object]], current: dict[str, list[object]] | None,
                                          code: str) -> None:
    with pytest.raises(DriftInputError) as raised:
        drift_report(build_profiles(columns), current if current is not None else columns)
    assert raised.value.code == code


def test_false_alarm_rate_per_column_under_no_drift_is_at_most_6_percent() -> None:
    """Seeded simulation: 300 windows drawn from the reference distribution, 3 numeric and
    2 categorical columns each. Raw p-values reject at about alpha; alerts are rarer still."""
    rng = np.random.default_rng(20261206)
    categories = np.array(["a", "b", "c", "d"])
    shares = [0.5, 0.3, 0.15, 0.05]
    reference = {f"x{i}": rng.normal(0, 1, 20_000) for i in range(3)}
    reference |= {f"c{i}": rng.choice(categories, 20_000, p=shares) for i in range(2)}
    profiles = build_profiles(reference, categorical=["c0", "c1"])
    rejections = alerts = tests = 0
    for _ in range(300):
        window = {f"x{i}": rng.normal(0, 1, 400) for i in range(3)}
        window |= {f"c{i}": rng.choice(categories, 400, p=shares) for i in range(2)}
        report = drift_report(profiles, window)
        for column in report["columns"]:
            tests += 1
            rejections += column["pvalue"] < 0.05
            alerts += column["drift"]
    assert rejections / tests <= 0.06
    assert alerts / tests <= 0.06
    assert rejections > 0  # the tests are not dead: some windows reject by chance


@pytest.mark.parametrize("values", [
    ["b", "a", "", None, "c", float("nan"), "a"], ["x", "y", "x"], ["é", "e", "z", "Z", "a", "ä"],
    [1.0, 2.0, None, 1.0], [1, "1", 2.5], [None, None], [],
    list(np.random.default_rng(2).choice([f"k{i}" for i in range(40)], 5_000)),
])
def test_text_columns_are_counted_in_arrow_as_the_python_loop_counts_them(values, monkeypatch):
    for given in (values, np.asarray(values, dtype=object)):
        fast = drift.categorical_counts(given)
        monkeypatch.setattr(drift, "_text_counts", lambda _values: None)
        assert drift.categorical_counts(given) == fast
        monkeypatch.undo()

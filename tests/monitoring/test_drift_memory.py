"""The drift engine in bounded memory (issue 16): the merged pass over value ranges gives scipy's
numbers when the pooled values span many ranges (ties on range ends included), the caller's array
is never sorted in place, and the readers give the same columns one at a time from Parquet (batch
by batch) and from a large CSV (one pass per column) as from the whole-file path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from governance.monitoring import drift, reader
from governance.monitoring.drift import DriftInputError, ks_2samp_sorted, profile_numeric


@pytest.mark.parametrize(("n_ref", "n_cur", "rounding", "step"), [
    (5_000, 3_000, None, 97), (20_000, 20_000, 1, 64), (12_000, 700, 0, 5), (300, 9_000, 2, 1),
])
def test_merged_pass_over_many_ranges_equals_scipy(monkeypatch: Any, n_ref: int, n_cur: int, rounding: int | None,
                                                   step: int) -> None:
    monkeypatch.setattr(drift, "MERGE_STEP", step)
    rng = np.random.default_rng(n_ref * 7 + n_cur)
    reference, current = rng.normal(0, 1, n_ref), rng.normal(0.1, 1.2, n_cur)
    if rounding is not None:  # long runs of ties, many of them on a range's end
        reference, current = np.round(reference, rounding), np.round(current, rounding)
    want = stats.ks_2samp(reference, current)
    got = ks_2samp_sorted(np.sort(reference), np.sort(current))
    assert got.statistic == float(want.statistic)
    assert abs(got.pvalue - float(want.pvalue)) <= 1e-12
    result = drift.numeric_drift(profile_numeric("x", reference), current)
    assert result["ks"]["statistic"] == float(want.statistic)
    distance = stats.wasserstein_distance(reference, current)
    assert abs(result["wasserstein"] - distance) <= 1e-12 * max(1.0, distance)


def test_one_range_gives_the_same_bits_as_many(monkeypatch: Any) -> None:
    rng = np.random.default_rng(3)
    reference, current = np.sort(rng.lognormal(0, 0.6, 4_000)), np.sort(rng.lognormal(0.05, 0.6, 2_500))
    whole = drift._merged_pass(reference, current)
    monkeypatch.setattr(drift, "MERGE_STEP", 33)
    ranged = drift._merged_pass(reference, current)
    assert ranged[:2] == whole[:2]
    assert abs(ranged[2] - whole[2]) <= 1e-14 * whole[2]


def test_numeric_drift_leaves_the_callers_array_unsorted_and_counts_missing() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(0, 1, 1_000)
    current = rng.normal(0, 1, 800)
    current[::50] = np.nan
    kept = current.copy()
    result = drift.numeric_drift(profile_numeric("x", reference), current)
    np.testing.assert_array_equal(current, kept)
    assert result["n_cur"] == 784
    complete = rng.normal(0, 1, 500)
    kept = complete.copy()
    profile = profile_numeric("x", complete)
    drift.numeric_drift(profile, complete)
    np.testing.assert_array_equal(complete, kept)
    assert np.all(np.diff(profile.values) >= 0)
    assert profile.values is not complete


def _frame(rows: int) -> dict[str, Any]:
    rng = np.random.default_rng(rows)
    values = rng.normal(0, 1, rows)
    values[::17] = np.nan
    return {"a": values, "b": rng.integers(0, 9, rows), "c": rng.choice(["x", "y", "z"], rows).tolist()}


def test_parquet_numeric_column_read_batch_by_batch_equals_whole_read(monkeypatch: Any, tmp_path: Path) -> None:
    data = _frame(5_003)
    path = tmp_path / "w.parquet"
    pq.write_table(pa.table(data), path, row_group_size=1_000)
    monkeypatch.setattr(reader, "_BATCH_ROWS", 300)
    got = dict(reader.read_columns(path, ["a", "b"], ["c"]))
    np.testing.assert_array_equal(got["a"], data["a"])
    np.testing.assert_array_equal(got["b"], data["b"].astype(np.float64))
    assert got["b"].dtype == np.float64
    assert got["c"] == data["c"]
    (_, text), = list(reader.read_columns(path, [], ["c"], arrow_text=True))
    assert isinstance(text, pa.ChunkedArray | pa.Array)
    assert drift.categorical_counts(text) == drift.categorical_counts(data["c"])


def _write_csv(path: Path, data: dict[str, Any]) -> None:
    lines = ["a,b,c,t"]
    for a, b, c in zip(data["a"], data["b"], data["c"], strict=True):
        lines.append(f"{'' if np.isnan(a) else repr(float(a))},{b},{c},word")
    path.write_text("\n".join(lines) + "\n")


def test_large_csv_read_one_column_per_pass_equals_whole_read(monkeypatch: Any, tmp_path: Path) -> None:
    data = _frame(4_001)
    path = tmp_path / "w.csv"
    _write_csv(path, data)
    whole = dict(reader.read_columns(path, ["a", "b"], ["c"]))
    monkeypatch.setattr(reader, "CSV_WHOLE_MAX_BYTES", 0)
    passes = dict(reader.read_columns(path, ["a", "b"], ["c"]))
    for name in ("a", "b"):
        np.testing.assert_array_equal(passes[name], whole[name])
        assert passes[name].dtype == np.float64
    assert passes["c"] == whole["c"] == data["c"]
    np.testing.assert_array_equal(passes["a"], data["a"])


@pytest.mark.parametrize("whole_max", [64 * 1024 * 1024, 0])
def test_csv_errors_keep_their_codes_on_both_paths(monkeypatch: Any, tmp_path: Path, whole_max: int) -> None:
    monkeypatch.setattr(reader, "CSV_WHOLE_MAX_BYTES", whole_max)
    path = tmp_path / "w.csv"
    _write_csv(path, _frame(50))
    with pytest.raises(DriftInputError) as not_numeric:
        dict(reader.read_columns(path, ["t"], []))
    assert not_numeric.value.code == "drift_not_numeric"
    with pytest.raises(DriftInputError) as absent:
        dict(reader.read_columns(path, ["nope"], []))
    assert absent.value.code == "drift_missing_column"


def test_sort_in_place_sorts_the_given_array_and_gives_the_same_result() -> None:
    rng = np.random.default_rng(9)
    profile = profile_numeric("x", rng.normal(0, 1, 2_000))
    current = rng.normal(0.2, 1, 1_500)
    copied = drift.numeric_drift(profile, current.copy())
    given = current.copy()
    in_place = drift.numeric_drift(profile, given, sort_in_place=True)
    assert in_place == copied
    np.testing.assert_array_equal(given, np.sort(current))


def test_a_given_up_array_with_missing_values_is_sorted_where_it_is_with_the_same_results() -> None:
    rng = np.random.default_rng(9)
    given = rng.normal(0, 1, 5_000)
    given[::7] = np.nan
    kept = given.copy()
    profile = profile_numeric("x", given, sort_in_place=True)
    assert np.shares_memory(profile.values, given)  # no second column-sized array
    want = profile_numeric("x", kept)
    np.testing.assert_array_equal(profile.values, want.values)
    assert (profile.missing, profile.mean, profile.std) == (want.missing, want.mean, want.std) == (715, want.mean, want.std)
    np.testing.assert_array_equal(profile.edges, want.edges)
    current = rng.normal(0.1, 1, 3_000)
    current[::5] = np.nan
    same = current.copy()
    assert drift.numeric_drift(want, current, sort_in_place=True) == drift.numeric_drift(want, same)
    with pytest.raises(DriftInputError) as infinite:
        drift.numeric_drift(want, np.array([1.0, np.inf]), sort_in_place=True)
    assert infinite.value.code == "drift_not_numeric"

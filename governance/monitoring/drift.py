"""The drift engine: a frozen reference profile per column, and drift of a window against it.

Pure numpy (pyarrow counts text columns); no ORM, no settings. The contract:

- A **profile** freezes, per column, what every later window is compared with: numeric
  columns keep their sorted non-missing values (the exact summary KS and Wasserstein need),
  bin edges at the reference deciles (``bins`` quantiles, duplicate edges merged, open
  tails: bins are (-inf, e1], (e1, e2], ..., (ek, +inf)), bin counts, mean and standard
  deviation; categorical columns keep their category counts. Missing values (NaN, None,
  empty text) are counted apart and left out of the tests.
- **Numeric drift**: the two-sample KS statistic computed exactly as
  ``scipy.stats.ks_2samp`` computes it (the same floating-point operations, so equal bit for
  bit, including the exact method's rounding to a multiple of 1/lcm), its p-value by
  scipy's 'auto' choice; the Wasserstein-1 distance as ``scipy.stats.wasserstein_distance``
  and divided by the reference standard deviation; PSI and Jensen-Shannon on the frozen bins.
- **Categorical drift**: the chi-square test of homogeneity of the 2 x K table (reference,
  current) x categories, as ``scipy.stats.chi2_contingency`` (Yates' correction when it has
  one degree of freedom, recorded), never a goodness-of-fit test against reference shares;
  categories the reference never saw are bins of their own, reported by name.
- **Across columns**: p-values are adjusted by Benjamini-Hochberg (default) or Bonferroni,
  named in the result. A column drifts only when its adjusted p-value is under ``alpha``
  AND its effect size (Wasserstein/std for numeric, Cramer's V for categorical) reaches its
  threshold, so huge windows do not alert on negligible shifts. Each result carries the
  statistic, p-value, effect size, n_ref, n_cur and the smallest effect detectable at that n.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from governance.monitoring.distributions import KS_EXACT_MAX_N, chi2_sf, kolmogorov_sf, ks_2samp_exact_sf

ENGINE_VERSION = "governance-drift/1"
DEFAULT_BINS = 10
DEFAULT_ALPHA = 0.05
DEFAULT_NUMERIC_EFFECT = 0.1  # Wasserstein distance in reference standard deviations
DEFAULT_CATEGORICAL_EFFECT = 0.1  # Cramer's V
SHARE_FLOOR = 1e-4  # an empty bin's share in PSI and JS, so a bin seen on one side only stays finite
Correction = Literal["benjamini-hochberg", "bonferroni"]
CORRECTIONS: tuple[Correction, ...] = ("benjamini-hochberg", "bonferroni")
KsMethod = Literal["auto", "exact", "asymp"]


class DriftInputError(ValueError):
    """Input the engine cannot compare; ``code`` is stable for callers and exit messages."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- profiles ---------------------------------------------------------------------------

@dataclass(frozen=True)
class NumericProfile:
    column: str
    values: np.ndarray  # sorted, float64, no NaN
    missing: int
    edges: np.ndarray  # inner edges, strictly increasing
    counts: np.ndarray  # len(edges) + 1 bins
    mean: float
    std: float
    kind: str = field(default="numeric", init=False)

    @property
    def n(self) -> int:
        return int(self.values.size)


@dataclass(frozen=True)
class CategoricalProfile:
    column: str
    counts: dict[str, int]  # category -> count, categories in sorted order
    missing: int
    kind: str = field(default="categorical", init=False)

    @property
    def n(self) -> int:
        return int(sum(self.counts.values()))


ColumnProfile = NumericProfile | CategoricalProfile


def numeric_values(values: Iterable[Any] | np.ndarray) -> tuple[np.ndarray, int]:
    """The non-missing values as float64, and how many were missing (NaN/None/'')."""
    present, missing, _ = _present_values(values)
    return present, missing


def _present_values(values: Iterable[Any] | np.ndarray) -> tuple[np.ndarray, int, bool]:
    """``numeric_values`` and whether the array returned is a fresh one the caller may sort in place
    (when nothing is missing, a float64 input comes back as itself, not copied)."""
    array = np.asarray(values)
    owned = isinstance(values, list | tuple)  # anything else may share its memory with the caller's
    if array.dtype.kind in "fiub":
        floats = array.astype(np.float64, copy=False)
        owned = owned or floats is not array
    else:
        floats = np.empty(array.size, dtype=np.float64)
        owned = True
        for index, value in enumerate(array.ravel()):
            if value is None or (isinstance(value, str) and value.strip() == ""):
                floats[index] = np.nan
                continue
            try:
                floats[index] = float(value)
            except (TypeError, ValueError):
                raise DriftInputError("drift_not_numeric", f"{value!r} is not a number") from None
    if floats.ndim != 1:
        floats = floats.ravel()
    if np.isinf(floats).any():
        raise DriftInputError("drift_not_numeric", "infinite values cannot be compared")
    absent = np.isnan(floats)
    missing = int(np.count_nonzero(absent))
    if missing == 0:
        return floats, 0, owned
    return floats[~absent], missing, True


def _text_counts(values: Iterable[Any]) -> tuple[dict[str, int], int] | None:
    """The counts of a column that is all text (and missing values), in Arrow's C loops; None otherwise."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    if isinstance(values, pa.ChunkedArray | pa.Array):
        array = values
    else:
        try:
            array = pa.array(values if isinstance(values, list | np.ndarray) else list(values), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            return None
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    # One counting pass over the column; missing values (null, empty text) are taken out of the counts.
    counted = pc.value_counts(array)
    pairs = zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
    counts: dict[str, int] = {}
    missing = 0
    for name, count in pairs:
        if name is None or name == "":
            missing += int(count)
        else:
            counts[str(name)] = int(count)
    return dict(sorted(counts.items())), missing


def _sorted_present(values: Iterable[Any] | np.ndarray, *, sort_in_place: bool) -> tuple[np.ndarray, int]:
    """The non-missing values sorted, and how many were missing. A writable float64 array the caller
    gives up (``sort_in_place``) is sorted where it is, its missing values (NaN sort last) cut off as
    a view, so no second column-sized array is made; otherwise the present values are sorted in a
    fresh array (a copy only when the array is the caller's)."""
    if (sort_in_place and isinstance(values, np.ndarray) and values.dtype == np.float64 and values.ndim == 1
            and values.flags.writeable):  # a zero-copy Arrow view is read-only: copied below
        if np.isinf(values).any():
            raise DriftInputError("drift_not_numeric", "infinite values cannot be compared")
        missing = int(np.count_nonzero(np.isnan(values)))
        values.sort()
        return values[:values.size - missing], missing
    present, missing, owned = _present_values(values)
    ordered = present if owned else present.copy()
    ordered.sort()
    return ordered, missing


def categorical_counts(values: Iterable[Any]) -> tuple[dict[str, int], int]:
    """Counts per category (as text; 1 and '1' are one category) and the missing count."""
    fast = _text_counts(values)
    if fast is not None:
        return fast
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    missing = 0
    labels: list[str] = []
    for value in array.ravel():
        if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and value == ""):
            missing += 1
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        labels.append(str(value))
    if not labels:
        return {}, missing
    names, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    return {str(name): int(count) for name, count in zip(names.tolist(), counts.tolist(), strict=True)}, missing


def profile_numeric(column: str, values: Iterable[Any] | np.ndarray, *, bins: int = DEFAULT_BINS,
                    sort_in_place: bool = False) -> NumericProfile:
    """The profile of one numeric column; ``sort_in_place=True`` as in ``numeric_drift`` (the caller gives
    a fresh float64 array up, and it becomes the profile's sorted values)."""
    if bins < 2:
        raise DriftInputError("drift_bad_arguments", "bins must be at least 2")
    ordered, missing = _sorted_present(values, sort_in_place=sort_in_place)
    if ordered.size == 0:
        raise DriftInputError("drift_empty_column", f"column {column!r} has no values in the reference")
    edges = np.unique(np.quantile(ordered, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return NumericProfile(
        column=column, values=ordered, missing=missing, edges=edges, counts=_bin_counts(ordered, edges),
        mean=float(np.mean(ordered)), std=float(np.std(ordered)))


def profile_categorical(column: str, values: Iterable[Any]) -> CategoricalProfile:
    counts, missing = categorical_counts(values)
    if not counts:
        raise DriftInputError("drift_empty_column", f"column {column!r} has no values in the reference")
    return CategoricalProfile(column=column, counts=counts, missing=missing)


def _bin_counts(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e1], (e1, e2], ..., (ek, inf) of sorted values."""
    at_or_below = np.searchsorted(ordered, edges, side="right")
    return np.diff(np.concatenate(([0], at_or_below, [ordered.size]))).astype(np.int64)


# --- the statistics ---------------------------------------------------------------------

@dataclass(frozen=True)
class KsResult:
    statistic: float
    pvalue: float
    method: str


def ks_2samp_sorted(reference: np.ndarray, current: np.ndarray, *, method: KsMethod = "auto") -> KsResult:
    """scipy.stats.ks_2samp(two-sided) for two sorted float64 arrays."""
    lowest, highest, _ = _merged_pass(reference, current, wasserstein=False)
    return _ks_from_extremes(lowest, highest, reference.size, current.size, method)


MERGE_STEP = 1 << 16  # values taken from each sorted side per step: a range's arrays (~1 MB each) stay in cache


def _merged_pass(reference: np.ndarray, current: np.ndarray, *, wasserstein: bool = True
                 ) -> tuple[float, float, float]:
    """(min, max of F_ref - F_cur over the pooled values, Wasserstein-1) of two sorted arrays.

    The same numbers scipy computes on the whole pooled array (``concatenate``, ``sort``, both
    CDFs by ``searchsorted(side="right") / n``), taken over consecutive value ranges of at most
    about ``2 * MERGE_STEP`` pooled values, so no array of the pooled size is ever held. A range
    ends after every copy of its last value on both sides, so counts within a range plus the
    counts before it are the whole arrays' counts: each CDF value is bit for bit scipy's, and so
    is the KS statistic. The Wasserstein sum is scipy's when the pooled values fit one range,
    otherwise the ranges' numpy sums added exactly (``math.fsum``): equal within ~1e-15 relative.
    """
    n1, n2 = reference.size, current.size
    lowest, highest = math.inf, -math.inf
    sums: list[float] = []
    start_ref = start_cur = 0
    last_value = last_gap = None
    while start_ref < n1 or start_cur < n2:
        candidates = [side[min(start + MERGE_STEP, side.size) - 1]
                      for side, start in ((reference, start_ref), (current, start_cur)) if start < side.size]
        bound = min(candidates)
        end_ref = int(np.searchsorted(reference, bound, side="right"))
        end_cur = int(np.searchsorted(current, bound, side="right"))
        pooled, below_ref, below_cur = _merge_counts(reference[start_ref:end_ref], current[start_cur:end_cur])
        cdf_reference = (below_ref + start_ref) / n1
        cdf_current = (below_cur + start_cur) / n2
        del below_ref, below_cur
        differences = cdf_reference - cdf_current
        del cdf_reference, cdf_current
        lowest, highest = min(lowest, float(differences.min())), max(highest, float(differences.max()))
        if wasserstein:
            if last_value is not None:
                sums.append(float(last_gap * (pooled[0] - last_value)))
            sums.append(float(np.sum(np.multiply(np.abs(differences[:-1]), np.diff(pooled)))))
            last_value, last_gap = pooled[-1], np.abs(differences[-1])
        start_ref, start_cur = end_ref, end_cur
        del pooled, differences
    return lowest, highest, (sums[0] if len(sums) == 1 else math.fsum(sums))


def _merge_counts(part_ref: np.ndarray, part_cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pooled sorted values of two sorted ranges, and at each of them how many values of each range
    are at or below it: ``searchsorted(part, pooled, side="right")`` for both, the same integers, but
    from one stable merge (a two-run timsort, linear) that says which side each value came from,
    instead of a binary search per value. Within a run of ties every value gets the counts at the
    run's end, as ``side="right"`` gives."""
    joined = np.concatenate([part_ref, part_cur])
    order = np.argsort(joined, kind="stable")
    pooled = joined[order]
    del joined
    below_ref = np.cumsum(order < part_ref.size)
    del order
    last = np.empty(pooled.size, dtype=bool)  # the last value of its run of ties
    np.not_equal(pooled[1:], pooled[:-1], out=last[:-1])
    last[-1] = True
    if last.all():
        return pooled, below_ref, np.arange(1, pooled.size + 1) - below_ref
    ends = np.flatnonzero(last)
    del last
    lengths = np.diff(ends, prepend=-1)
    ref_at_end = below_ref[ends]
    return pooled, np.repeat(ref_at_end, lengths), np.repeat(ends + 1 - ref_at_end, lengths)


def _ks_from_extremes(lowest: float, highest: float, n1: int, n2: int, method: KsMethod) -> KsResult:
    below = float(np.clip(-lowest, 0, 1))
    above = highest
    statistic = below if below > above else above
    chosen = ("exact" if max(n1, n2) <= KS_EXACT_MAX_N else "asymp") if method == "auto" else method
    if chosen == "exact" and (n1 // math.gcd(n1, n2)) >= np.iinfo(np.int32).max / (n2 // math.gcd(n1, n2)):
        chosen = "asymp"
    if chosen == "exact":
        lcm = (n1 // math.gcd(n1, n2)) * n2
        h = int(np.round(statistic * lcm))
        statistic = h * 1.0 / lcm
        with np.errstate(invalid="ignore", over="ignore"):
            pvalue = ks_2samp_exact_sf(n1, n2, h)
        if 0 <= pvalue <= 1:
            return KsResult(statistic, pvalue, "exact")
        chosen = "asymp"
    larger, smaller = max(float(n1), float(n2)), min(float(n1), float(n2))
    effective_n = int(np.round(larger * smaller / (larger + smaller)))
    return KsResult(statistic, kolmogorov_sf(effective_n, statistic), "asymp")


def wasserstein_sorted(pooled: np.ndarray, cdf_reference: np.ndarray, cdf_current: np.ndarray) -> float:
    """scipy.stats.wasserstein_distance from the pooled sorted values and both CDFs on them."""
    return float(np.sum(np.multiply(np.abs(cdf_reference[:-1] - cdf_current[:-1]), np.diff(pooled))))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros(counts.size)
    return np.maximum(shares, SHARE_FLOOR)


def psi(reference_counts: Sequence[int] | np.ndarray, current_counts: Sequence[int] | np.ndarray) -> float:
    """Population stability index: sum (c - r) ln(c / r) over bins, shares floored at 1e-4."""
    ref, cur = _shares(np.asarray(reference_counts, dtype=np.float64)), _shares(np.asarray(current_counts, dtype=np.float64))
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon(reference_counts: Sequence[int] | np.ndarray, current_counts: Sequence[int] | np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of the bin shares, as scipy's jensenshannon(base=2)."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    ref, cur = ref / ref.sum(), cur / cur.sum()
    middle = (ref + cur) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(ref > 0, ref * np.log(ref / middle), 0.0)
        right = np.where(cur > 0, cur * np.log(cur / middle), 0.0)
    divergence = (float(np.sum(left)) + float(np.sum(right))) / 2.0 / math.log(2.0)
    return math.sqrt(max(divergence, 0.0))


@dataclass(frozen=True)
class Chi2Result:
    statistic: float
    pvalue: float
    dof: int
    correction: bool


def chi2_homogeneity(reference_counts: Sequence[int] | np.ndarray, current_counts: Sequence[int] | np.ndarray,
                     *, correction: bool = True) -> Chi2Result:
    """scipy.stats.chi2_contingency on the 2 x K table; categories empty on both sides are dropped."""
    table = np.array([reference_counts, current_counts], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] == 0 or (table.sum(axis=1) == 0).any():
        raise DriftInputError("drift_empty_column", "both samples need at least one value")
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    dof = table.shape[1] - 1
    if dof == 0:
        return Chi2Result(0.0, 1.0, 0, False)
    corrected = dof == 1 and correction
    if corrected:
        difference = expected - table
        table = table + np.minimum(0.5, np.abs(difference)) * np.sign(difference)
    statistic = float(((table - expected) ** 2 / expected).sum())
    return Chi2Result(statistic, chi2_sf(statistic, dof), dof, corrected)


def chi2_critical(alpha: float, dof: int) -> float:
    """The chi-square value whose upper tail is alpha (bisection on chi2_sf)."""
    low, high = 0.0, max(10.0 * dof, 50.0)
    while chi2_sf(high, dof) > alpha:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if chi2_sf(middle, dof) > alpha:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2


def adjust_pvalues(pvalues: Sequence[float], correction: Correction) -> list[float]:
    """Benjamini-Hochberg (step-up, monotone) or Bonferroni adjusted p-values, capped at 1."""
    count = len(pvalues)
    if count == 0:
        return []
    values = np.asarray(pvalues, dtype=np.float64)
    if correction == "bonferroni":
        return [float(value) for value in np.minimum(values * count, 1.0)]
    if correction != "benjamini-hochberg":
        raise DriftInputError("drift_bad_arguments", f"unknown correction {correction!r}")
    order = np.argsort(values, kind="stable")
    ranked = values[order] * count / np.arange(1, count + 1)
    monotone = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty(count)
    adjusted[order] = np.minimum(monotone, 1.0)
    return [float(value) for value in adjusted]


# --- one column, one window ------------------------------------------------------------

def _missing(reference_missing: int, reference_total: int, current_missing: int, current_total: int) -> dict[str, Any]:
    ref_share = reference_missing / reference_total if reference_total else 0.0
    cur_share = current_missing / current_total if current_total else 0.0
    return {"reference": ref_share, "current": cur_share, "difference": cur_share - ref_share}


def numeric_drift(profile: NumericProfile, values: Iterable[Any] | np.ndarray, *, alpha: float = DEFAULT_ALPHA,
                  method: KsMethod = "auto", sort_in_place: bool = False) -> dict[str, Any]:
    """Drift of one numeric column. ``sort_in_place=True`` lets the engine sort a float64 array it is
    given instead of a copy (the caller gives the column up: a reader's fresh array, one column at a time)."""
    # Sorted in place when the array is ours (a copy only when it is the caller's): with the
    # profile's sorted values, the only column-sized arrays held; the merged pass works in ranges.
    current, missing = _sorted_present(values, sort_in_place=sort_in_place)
    if current.size == 0:
        raise DriftInputError("drift_empty_column", f"column {profile.column!r} has no values in the current window")
    lowest, highest, distance = _merged_pass(profile.values, current)
    ks = _ks_from_extremes(lowest, highest, profile.n, current.size, method)
    normed = distance / profile.std if profile.std > 0 else (0.0 if distance == 0 else math.inf)
    counts = _bin_counts(current, profile.edges)
    # The KS statistic a window of this size must reach at alpha, expressed as the shift of a
    # normal location in standard deviations (D ~ delta / sqrt(2 pi) for small shifts).
    critical_d = math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((profile.n + current.size) / (profile.n * current.size))
    return {
        "column": profile.column, "kind": "numeric", "n_ref": profile.n, "n_cur": int(current.size),
        "missing": _missing(profile.missing, profile.n + profile.missing, missing, int(current.size) + missing),
        "ks": {"statistic": ks.statistic, "pvalue": ks.pvalue, "method": ks.method},
        "wasserstein": distance, "wasserstein_normed": normed,
        "psi": psi(profile.counts, counts), "js": jensen_shannon(profile.counts, counts),
        "chi2": None, "novel": [],
        "bins": {"edges": profile.edges.tolist(), "reference": profile.counts.tolist(), "current": counts.tolist()},
        "statistic": ks.statistic, "pvalue": ks.pvalue,
        "effect_size": {"name": "wasserstein_normed", "value": normed},
        "smallest_detectable_effect": critical_d * math.sqrt(2 * math.pi),
    }


def categorical_drift(profile: CategoricalProfile, values: Iterable[Any], *, alpha: float = DEFAULT_ALPHA,
                      correction: bool = True) -> dict[str, Any]:
    counts, missing = categorical_counts(values)
    if not counts:
        raise DriftInputError("drift_empty_column", f"column {profile.column!r} has no values in the current window")
    novel = sorted(set(counts) - set(profile.counts))
    categories = [*profile.counts, *novel]
    reference = np.array([profile.counts.get(name, 0) for name in categories], dtype=np.int64)
    current = np.array([counts.get(name, 0) for name in categories], dtype=np.int64)
    chi2 = chi2_homogeneity(reference, current, correction=correction)
    total = int(reference.sum() + current.sum())
    cramers_v = math.sqrt(chi2.statistic / total) if total else 0.0
    detectable = math.sqrt(chi2_critical(alpha, chi2.dof) / total) if chi2.dof else math.inf
    n_cur = int(current.sum())
    return {
        "column": profile.column, "kind": "categorical", "n_ref": profile.n, "n_cur": n_cur,
        "missing": _missing(profile.missing, profile.n + profile.missing, missing, n_cur + missing),
        "ks": None, "wasserstein": None, "wasserstein_normed": None,
        "psi": psi(reference, current), "js": jensen_shannon(reference, current),
        "chi2": {"statistic": chi2.statistic, "pvalue": chi2.pvalue, "dof": chi2.dof, "correction": chi2.correction},
        "novel": novel,
        "bins": {"categories": categories, "reference": reference.tolist(), "current": current.tolist()},
        "statistic": chi2.statistic, "pvalue": chi2.pvalue,
        "effect_size": {"name": "cramers_v", "value": cramers_v},
        "smallest_detectable_effect": detectable,
    }


def drift_report(profiles: Sequence[ColumnProfile], current: Mapping[str, Iterable[Any] | np.ndarray], *,
                 correction: Correction = "benjamini-hochberg", alpha: float = DEFAULT_ALPHA,
                 numeric_effect: float = DEFAULT_NUMERIC_EFFECT, categorical_effect: float = DEFAULT_CATEGORICAL_EFFECT,
                 ks_method: KsMethod = "auto") -> dict[str, Any]:
    """Drift of every profiled column in ``current``, adjusted across columns."""
    def pairs() -> Iterator[tuple[ColumnProfile, Any]]:
        for profile in profiles:
            if profile.column not in current:
                raise DriftInputError("drift_missing_column", f"column {profile.column!r} is not in the current window")
            yield profile, current[profile.column]

    return drift_report_columns(pairs(), correction=correction, alpha=alpha, numeric_effect=numeric_effect,
                                categorical_effect=categorical_effect, ks_method=ks_method)


def drift_report_columns(pairs: Iterable[tuple[ColumnProfile, Any]], *, correction: Correction = "benjamini-hochberg",
                         alpha: float = DEFAULT_ALPHA, numeric_effect: float = DEFAULT_NUMERIC_EFFECT,
                         categorical_effect: float = DEFAULT_CATEGORICAL_EFFECT, ks_method: KsMethod = "auto",
                         given_up: bool = False) -> dict[str, Any]:
    """``drift_report`` over (profile, current values) pairs taken one at a time: each column is
    compared and dropped before the next pair is asked for, so a caller that reads the pairs from
    disk as they are asked for holds one column at a time. ``given_up=True``: each numeric array is
    the caller's no longer (fresh from a reader) and is sorted in place instead of copied."""
    if not 0 < alpha < 1:
        raise DriftInputError("drift_bad_arguments", "alpha must be between 0 and 1")
    if correction not in CORRECTIONS:
        raise DriftInputError("drift_bad_arguments", f"correction must be one of {', '.join(CORRECTIONS)}")
    results: list[dict[str, Any]] = []
    for profile, values in pairs:
        if isinstance(profile, NumericProfile):
            results.append(numeric_drift(profile, values, alpha=alpha, method=ks_method, sort_in_place=given_up))
        else:
            results.append(categorical_drift(profile, values, alpha=alpha))
        del profile, values  # not held while the next pair is read
    adjusted = adjust_pvalues([result["pvalue"] for result in results], correction)
    for result, pvalue in zip(results, adjusted, strict=True):
        threshold = numeric_effect if result["kind"] == "numeric" else categorical_effect
        result["pvalue_adjusted"] = pvalue
        result["effect_size"]["threshold"] = threshold
        result["significant"] = pvalue <= alpha
        result["drift"] = bool(result["significant"] and result["effect_size"]["value"] >= threshold)
    return {"engine": ENGINE_VERSION, "correction": correction, "alpha": alpha, "columns": results,
            "drifted": [result["column"] for result in results if result["drift"]]}


def build_profiles(columns: Mapping[str, Iterable[Any] | np.ndarray], *, categorical: Iterable[str] = (),
                   bins: int = DEFAULT_BINS) -> list[ColumnProfile]:
    """A profile for every column; those named in ``categorical`` are categorical."""
    categorical_names = set(categorical)
    unknown = categorical_names - set(columns)
    if unknown:
        raise DriftInputError("drift_missing_column", f"categorical column(s) not in the reference: {', '.join(sorted(unknown))}")
    return [profile_categorical(name, values) if name in categorical_names else profile_numeric(name, values, bins=bins)
            for name, values in columns.items()]


# --- the stored form --------------------------------------------------------------------

def profile_to_json(profile: ColumnProfile, *, sample: bool = True) -> dict[str, Any]:
    """The profile as JSON (values as float64 hex-exact repr through float())."""
    if isinstance(profile, NumericProfile):
        body: dict[str, Any] = {"column": profile.column, "kind": "numeric", "n": profile.n, "missing": profile.missing,
                                "edges": profile.edges.tolist(), "counts": profile.counts.tolist(),
                                "mean": profile.mean, "std": profile.std}
        if sample:
            body["values"] = profile.values.tolist()
        return body
    return {"column": profile.column, "kind": "categorical", "n": profile.n, "missing": profile.missing,
            "counts": dict(profile.counts)}


def profile_from_json(body: Mapping[str, Any]) -> ColumnProfile:
    if body["kind"] == "numeric":
        return NumericProfile(column=body["column"], values=np.asarray(body["values"], dtype=np.float64),
                              missing=int(body["missing"]), edges=np.asarray(body["edges"], dtype=np.float64),
                              counts=np.asarray(body["counts"], dtype=np.int64), mean=float(body["mean"]), std=float(body["std"]))
    return CategoricalProfile(column=body["column"], counts={str(k): int(v) for k, v in body["counts"].items()},
                              missing=int(body["missing"]))

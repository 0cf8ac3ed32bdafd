"""Fairness metrics from per-group confusion counts: pure numpy, no Django, no ORM.

Rows are reduced chunk by chunk to one 4-cell confusion count (TN, FP, FN, TP) per
intersection of the sensitive attributes; every metric, disparity and bootstrap interval
is then computed from those counts alone, so the cost of a report does not depend on the
number of rows.

Why one module of this size: it is the pure numeric core (counts, metrics, disparities, bootstrap),
type-checked strictly as a unit and tested against Fairlearn as a unit; splitting it would spread
one contract (the value rules below) over several files.

Value rules (the contract that ``reader.audit_file`` and the tests rely on):

* Labels (``y_true``, ``y_pred``, ``pos_label``, ``label_values``) are compared as text
  after :func:`normalise_label`: surrounding whitespace is stripped, and a value that is a
  number (``1``, ``"1"``, ``"1.0"``, ``"+1"``, ``1.0``) becomes its shortest decimal text
  (``"1"``; ``"0.5"`` for one half). Other text is kept as written, case-sensitive.
  A boolean *array* is an indicator of the positive class and skips label handling.
* Without ``pos_label`` the positive label is ``"1"`` and the label set defaults to
  ``{"0", "1"}`` (Fairlearn's rule for binary data without a ``pos_label``).
  With ``pos_label`` but no ``label_values``, the set is ``pos_label`` plus the first other
  value seen: binary data, as Fairlearn requires. A missing label, or one outside the set,
  raises :class:`FairnessInputError` naming the first bad 1-based data row.
* Sensitive values are text (:func:`normalise_group`). ``None``, NaN and empty or
  whitespace-only text form the explicit ``"Unknown"`` group.

Deviations from Fairlearn, all deliberate and tested:

* A rate with a zero denominator is ``None``; Fairlearn (through scikit-learn) reports 0
  for TPR/FPR/FNR/TNR/precision, or NaN for a ratio of rates.
* Disparities ignore groups whose rate is undefined and list them under
  ``undefined_rate_groups``; a disparity needs at least two groups with a defined rate,
  otherwise it is ``None`` (Fairlearn returns 0 difference and ratio 1 for a single group).
* An equalized-odds aggregate is ``None`` when either its TPR or FPR part is ``None``.
* Empty intersections are not reported (Fairlearn lists them with NaN everywhere).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

UNKNOWN_GROUP: Final = "Unknown"

# Column order of the confusion cells: index = 2 * is_true_positive_class + is_predicted_positive.
TN, FP, FN, TP = 0, 1, 2, 3

RATE_NAMES: Final = (
    "selection_rate",
    "tpr",
    "fpr",
    "fnr",
    "tnr",
    "precision",
    "accuracy",
)

# Above this many possible group combinations in one chunk, combined codes are compacted
# with np.unique instead of sizing np.bincount by the full product of cardinalities.
_MAX_DENSE_COMBINATIONS: Final = 1 << 22
_SLICE_ROWS: Final = 1 << 20

_INTEGER_TEXT = re.compile(r"[+-]?\d+", re.ASCII)
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class FairnessInputError(ValueError):
    """Input that cannot be audited; ``code`` is stable, ``message`` names the problem."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def _format_number(number: float) -> str:
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


def normalise_label(value: object) -> str | None:
    """Canonical text of a label, or None when it is missing (None, NaN, empty text)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        return _format_number(number) if math.isfinite(number) else repr(number)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    if not text:
        return None
    if _INTEGER_TEXT.fullmatch(text):
        return str(int(text))
    if _DECIMAL_TEXT.fullmatch(text):
        return _format_number(float(text))
    return text


def normalise_group(value: object) -> str:
    """Canonical text of a sensitive value; missing values become ``"Unknown"``."""
    if value is None:
        return UNKNOWN_GROUP
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return UNKNOWN_GROUP
        return _format_number(number) if math.isfinite(number) else repr(number)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value)
    return text if text.strip() else UNKNOWN_GROUP


def _factorize(values: object) -> tuple[npt.NDArray[np.intp], list[object]]:
    """Integer codes per row plus the distinct raw values, without a Python loop over rows."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        encoded = values if isinstance(values, pa.DictionaryArray) else None
        if encoded is None:
            encoded = pc.dictionary_encode(values, null_encoding="encode")
        uniques: list[object] = encoded.dictionary.to_pylist()
        indices = encoded.indices
        if indices.null_count:
            indices = indices.fill_null(len(uniques))
            uniques.append(None)
        codes = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.intp)
        return codes, uniques
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1)
    if array.dtype.kind == "b":
        return array.astype(np.intp), [False, True]
    if array.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        if high - low < 1 << 20:
            # Small-range integers (0/1 labels, coded groups) are their own codes.
            shifted = array.astype(np.intp, copy=False) if low == 0 else (array - low).astype(np.intp)
            present = np.flatnonzero(np.bincount(shifted))
            if present.size == high - low + 1:
                return shifted, list(range(low, high + 1))
            lookup = np.zeros(high - low + 1, dtype=np.intp)
            lookup[present] = np.arange(present.size, dtype=np.intp)
            return lookup[shifted], [int(v) + low for v in present]
    if array.dtype.kind in "iufUS" or array.dtype.kind == "O":
        try:
            return _factorize(pa.array(array, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pass
    # Mixed Python objects (e.g. str and int in one column): slow, but only for odd input.
    index: dict[object, int] = {}
    codes_list = [index.setdefault(_hashable(item), len(index)) for item in array.tolist()]
    return np.asarray(codes_list, dtype=np.intp), list(index)


def _hashable(item: object) -> object:
    try:
        hash(item)
    except TypeError:
        return str(item)
    return item


def _length(values: object) -> int:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return len(values)
    return int(np.asarray(values).reshape(-1).shape[0])


def _as_array(values: object) -> object:
    """Arrow arrays as they are, anything else (lists, pandas Series) as a flat numpy array."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    return np.asarray(values).reshape(-1)


def _slice(values: object, start: int, stop: int) -> object:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.slice(start, stop - start)
    assert isinstance(values, np.ndarray)
    return values[start:stop]


def _first_true(mask: BoolArray) -> int | None:
    if not mask.any():
        return None
    return int(np.argmax(mask))


@dataclass(frozen=True)
class ConfusionCounts:
    """Confusion cells (TN, FP, FN, TP) per non-empty intersection of the sensitive columns."""

    sensitive_columns: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    cells: IntArray  # shape (len(groups), 4), columns TN, FP, FN, TP
    pos_label: str | None = None
    label_values: tuple[str, ...] | None = None

    @property
    def rows(self) -> int:
        return int(self.cells.sum())


class ConfusionAccumulator:
    """Accumulates per-intersection confusion counts over chunks of rows."""

    def __init__(
        self,
        sensitive_columns: Sequence[str],
        pos_label: object = None,
        label_values: Iterable[object] | None = None,
    ) -> None:
        if isinstance(sensitive_columns, str) or not sensitive_columns:
            raise FairnessInputError("fairness_bad_arguments", "at least one sensitive column is required")
        if len(set(sensitive_columns)) != len(sensitive_columns):
            raise FairnessInputError(
                "fairness_bad_arguments",
                f"sensitive columns are repeated: {list(sensitive_columns)}",
            )
        self.sensitive_columns: tuple[str, ...] = tuple(sensitive_columns)
        declared: set[str] | None = None
        if label_values is not None:
            declared = set()
            for raw in label_values:
                label = normalise_label(raw)
                if label is None:
                    raise FairnessInputError(
                        "fairness_bad_arguments",
                        f"label_values contains a missing value {raw!r}",
                    )
                declared.add(label)
            if len(declared) < 2:
                raise FairnessInputError(
                    "fairness_bad_arguments",
                    "label_values must name at least two labels",
                )
        if pos_label is None:
            positive = "1"
            if declared is None:
                declared = {"0", "1"}
            elif not (declared <= {"0", "1"} or declared <= {"-1", "1"}):
                raise FairnessInputError(
                    "fairness_pos_label_required",
                    f"pos_label is required when the labels are {sorted(declared)}",
                )
        else:
            normalised = normalise_label(pos_label)
            if normalised is None:
                raise FairnessInputError(
                    "fairness_bad_arguments",
                    f"pos_label {pos_label!r} is a missing value",
                )
            positive = normalised
            if declared is not None and positive not in declared:
                raise FairnessInputError(
                    "fairness_bad_arguments",
                    f"pos_label {positive!r} is not among label_values {sorted(declared)}",
                )
        self.pos_label: str = positive
        self._declared: frozenset[str] | None = frozenset(declared) if declared else None
        # Without a declared set the labels are learned: the positive label and one other.
        self._learned: list[str] = [positive]
        self._cells: dict[tuple[str, ...], IntArray] = {}
        self.rows_seen = 0
        self._used_label_values = False

    # -- labels -------------------------------------------------------------------------

    def _allowed(self) -> frozenset[str] | list[str]:
        return self._declared if self._declared is not None else self._learned

    def _encode_labels(self, arrays: Mapping[str, object], row_offset: int) -> dict[str, npt.NDArray[np.int8]]:
        """Return 0/1 per row for each label column, or raise naming the first bad row."""
        factorized: dict[str, tuple[npt.NDArray[np.intp], list[str | None]]] = {}
        indicators: dict[str, npt.NDArray[np.int8]] = {}
        first_bad: tuple[int, str, object] | None = None
        for name, values in arrays.items():
            indicator = _as_indicator(values)
            if indicator is not None:
                is_missing, is_positive = indicator
                bad_row = _first_true(is_missing)
                if bad_row is not None and (first_bad is None or bad_row < first_bad[0]):
                    first_bad = (bad_row, name, None)
                indicators[name] = is_positive.astype(np.int8)
                continue
            codes, uniques = _factorize(values)
            factorized[name] = (codes, [normalise_label(value) for value in uniques])
        if factorized:
            self._used_label_values = True
        if self._declared is None:
            first_bad = _earliest(first_bad, self._learn_labels(factorized))
        allowed = self._allowed()
        for name, (codes, labels) in factorized.items():
            bad_codes = [code for code, label in enumerate(labels) if label not in allowed]
            if bad_codes:
                bad_row = _first_true(np.isin(codes, bad_codes))
                if bad_row is not None:
                    raw = labels[int(codes[bad_row])]
                    first_bad = _earliest(first_bad, (bad_row, name, raw))
            positive = np.asarray([label == self.pos_label for label in labels], dtype=np.int8)
            indicators[name] = positive[codes]
        if first_bad is not None:
            bad_row, name, label = first_bad
            row_number = row_offset + bad_row + 1
            shown = "a missing value" if label is None else "a value"  # never the cell: it is personal data
            # The declared set comes from the spec; a learned one from the data, so it is not shown.
            expected = (f"the label set {sorted(allowed)}" if self._declared is not None
                        else f"the {len(allowed)} labels seen first (declare label_values to name them)")
            raise FairnessInputError(
                "fairness_bad_label",
                f"row {row_number}: column {name!r} has {shown}, outside {expected}",
                row=row_number,
                column=name,
            )
        return indicators

    def _learn_labels(
        self, factorized: Mapping[str, tuple[npt.NDArray[np.intp], list[str | None]]]
    ) -> tuple[int, str, object] | None:
        """Grow the learned label set in order of first appearance; report the first overflow."""
        first_seen: dict[str, tuple[int, str]] = {}
        for name, (codes, labels) in factorized.items():
            new_codes = [code for code, label in enumerate(labels) if label is not None and label not in self._learned]
            for code, row in _first_rows(codes, new_codes).items():
                label = labels[code]
                assert label is not None
                if label not in first_seen or row < first_seen[label][0]:
                    first_seen[label] = (row, name)
        overflow: tuple[int, str, object] | None = None
        for label, (row, name) in sorted(first_seen.items(), key=lambda item: item[1][0]):
            if len(self._learned) < 2:
                self._learned.append(label)
            elif overflow is None:
                overflow = (row, name, label)
        return overflow

    # -- groups -------------------------------------------------------------------------

    def add(
        self,
        y_true: object,
        y_pred: object,
        sensitive: Mapping[str, object],
        row_offset: int | None = None,
    ) -> None:
        """Add one chunk; ``row_offset`` is the number of data rows before it (for errors)."""
        offset = self.rows_seen if row_offset is None else row_offset
        missing = [column for column in self.sensitive_columns if column not in sensitive]
        if missing:
            raise FairnessInputError("fairness_missing_column", f"sensitive column(s) missing: {missing}")
        y_true, y_pred = _as_array(y_true), _as_array(y_pred)
        sensitive = {column: _as_array(sensitive[column]) for column in self.sensitive_columns}
        length = _length(y_true)
        lengths = {"y_true": length, "y_pred": _length(y_pred)}
        lengths.update({column: _length(sensitive[column]) for column in self.sensitive_columns})
        if len(set(lengths.values())) != 1:
            raise FairnessInputError("fairness_length_mismatch", f"columns have different lengths: {lengths}")
        if length == 0:
            return
        # Long inputs go through in slices: the temporaries stay cache-sized and memory flat.
        for start in range(0, length, _SLICE_ROWS):
            stop = min(start + _SLICE_ROWS, length)
            self._add_slice(
                _slice(y_true, start, stop),
                _slice(y_pred, start, stop),
                {column: _slice(sensitive[column], start, stop) for column in self.sensitive_columns},
                offset + start,
            )
        self.rows_seen = max(self.rows_seen, offset + length)

    def _add_slice(self, y_true: object, y_pred: object, sensitive: Mapping[str, object], offset: int) -> None:
        length = _length(y_true)
        labels = self._encode_labels({"y_true": y_true, "y_pred": y_pred}, offset)

        combined = np.zeros(length, dtype=np.int64)
        local_names: list[list[str]] = []
        for column in self.sensitive_columns:
            codes, uniques = _factorize(sensitive[column])
            names: list[str] = []
            position: dict[str, int] = {}
            lookup = np.empty(len(uniques), dtype=np.int64)
            for code, value in enumerate(uniques):
                name = normalise_group(value)
                if name not in position:
                    position[name] = len(names)
                    names.append(name)
                lookup[code] = position[name]
            combined *= len(names)
            combined += lookup[codes]
            local_names.append(names)

        combinations = math.prod(len(names) for names in local_names)
        if combinations > _MAX_DENSE_COMBINATIONS:
            present, combined = np.unique(combined, return_inverse=True)
            combinations = present.size
        else:
            present = np.arange(combinations, dtype=np.int64)
        combined *= 4
        combined += labels["y_true"].astype(np.int64) * 2
        combined += labels["y_pred"]
        cells = np.bincount(combined, minlength=combinations * 4).reshape(combinations, 4)
        del combined

        for index in np.flatnonzero(cells.sum(axis=1)):
            remainder = int(present[index])
            key: list[str] = []
            for names in reversed(local_names):
                remainder, digit = divmod(remainder, len(names))
                key.append(names[digit])
            group = tuple(reversed(key))
            if group in self._cells:
                self._cells[group] += cells[index]
            else:
                self._cells[group] = cells[index].astype(np.int64)

    def counts(self) -> ConfusionCounts:
        """The accumulated counts, groups in a stable order (``Unknown`` last per attribute)."""
        groups = sorted(self._cells, key=_group_sort_key)
        cells = np.stack([self._cells[group] for group in groups]) if groups else np.zeros((0, 4), dtype=np.int64)
        label_values: tuple[str, ...] | None
        if self._declared is not None:
            label_values = tuple(sorted(self._declared))
        else:
            label_values = tuple(self._learned)
        return ConfusionCounts(
            sensitive_columns=self.sensitive_columns,
            groups=tuple(groups),
            cells=cells,
            pos_label=self.pos_label if self._used_label_values else None,
            label_values=label_values if self._used_label_values else None,
        )


def _as_indicator(values: object) -> tuple[BoolArray, BoolArray] | None:
    """(is_missing, is_positive) for boolean input, else None."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if not pa.types.is_boolean(values.type):
            return None
        is_missing = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
        filled = values.fill_null(False) if values.null_count else values
        return is_missing, np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.bool_)
    if isinstance(values, np.ndarray) and values.dtype.kind == "b":
        flat = values.reshape(-1)
        return np.zeros(flat.shape[0], dtype=np.bool_), flat
    return None


def _earliest(
    current: tuple[int, str, object] | None, candidate: tuple[int, str, object] | None
) -> tuple[int, str, object] | None:
    if candidate is None:
        return current
    if current is None or candidate[0] < current[0]:
        return candidate
    return current


def _first_rows(codes: npt.NDArray[np.intp], wanted: Sequence[int]) -> dict[int, int]:
    """Row of the first occurrence of each wanted code that occurs at all."""
    if not wanted:
        return {}
    rows: dict[int, int] = {}
    if len(wanted) <= 8:
        for code in wanted:
            row = _first_true(codes == code)
            if row is not None:
                rows[code] = row
        return rows
    present, first_index = np.unique(codes, return_index=True)
    wanted_set = set(wanted)
    return {int(code): int(row) for code, row in zip(present, first_index, strict=True) if int(code) in wanted_set}


def _group_sort_key(group: tuple[str, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value == UNKNOWN_GROUP, value) for value in group)


def predictions_from_scores(score: object, threshold: float, *, row_offset: int = 0, column: str = "score") -> BoolArray:
    """Positive prediction where ``score >= threshold``; a missing or NaN score is an error."""
    if isinstance(score, pa.ChunkedArray):
        score = score.combine_chunks()
    if isinstance(score, pa.Array):
        try:
            as_float = score.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            as_float = None
        if as_float is None:
            values = score.to_pylist()
            scores = np.asarray([_score_or_nan(value) for value in values], dtype=np.float64)
        else:
            scores = np.asarray(
                as_float.fill_null(math.nan).to_numpy(zero_copy_only=False),
                dtype=np.float64,
            )
    else:
        try:
            scores = np.asarray(score, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raw = np.asarray(score, dtype=object).reshape(-1)
            scores = np.asarray([_score_or_nan(value) for value in raw], dtype=np.float64)
    bad_row = _first_true(np.isnan(scores))
    if bad_row is not None:
        row_number = row_offset + bad_row + 1
        raise FairnessInputError(
            "fairness_bad_score",
            f"row {row_number}: column {column!r} has a missing or non-numeric score",
            row=row_number,
            column=column,
        )
    result: BoolArray = scores >= float(threshold)
    return result


def _score_or_nan(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


# -- report ---------------------------------------------------------------------------------


def _divide(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    result = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result


def rates_from_cells(cells: npt.ArrayLike) -> dict[str, FloatArray]:
    """Every rate for cells shaped (..., 4); NaN marks a zero denominator."""
    cells_f = np.asarray(cells, dtype=np.float64)
    tn, fp, fn, tp = (cells_f[..., i] for i in (TN, FP, FN, TP))
    total = tn + fp + fn + tp
    actual_positive = tp + fn
    actual_negative = fp + tn
    return {
        "selection_rate": _divide(tp + fp, total),
        "tpr": _divide(tp, actual_positive),
        "fpr": _divide(fp, actual_negative),
        "fnr": _divide(fn, actual_positive),
        "tnr": _divide(tn, actual_negative),
        "precision": _divide(tp, tp + fp),
        "accuracy": _divide(tp + tn, total),
    }


def _nan_quantiles(replicates: FloatArray, quantiles: Sequence[float]) -> FloatArray:
    """np.quantile (linear) along axis 0, ignoring NaN, vectorized over columns.

    Returns shape (len(quantiles), columns); a column with no finite value gives NaN.
    """
    ordered = np.sort(replicates, axis=0)  # NaN sorts last
    valid = np.sum(~np.isnan(replicates), axis=0)
    out = np.full((len(quantiles), replicates.shape[1]), np.nan)
    has_values = valid > 0
    last = np.maximum(valid - 1, 0).astype(np.float64)
    columns = np.arange(replicates.shape[1])
    for row, quantile in enumerate(quantiles):
        position = quantile * last
        below = np.floor(position).astype(np.intp)
        above = np.minimum(below + 1, np.maximum(valid - 1, 0))
        fraction = position - below
        low_value = ordered[below, columns]
        high_value = ordered[above, columns]
        # numpy's own lerp for the linear method, so results match np.quantile exactly.
        step = high_value - low_value
        value = np.where(
            fraction >= 0.5,
            high_value - step * (1.0 - fraction),
            low_value + step * fraction,
        )
        value = np.where(high_value == low_value, low_value, value)
        out[row] = np.where(has_values, value, np.nan)
    return out


def _to_json_float(value: float | np.floating[Any]) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


@dataclass
class _Group:
    feature_set: tuple[int, ...]
    attributes: dict[str, str]
    cells: IntArray
    count: int
    small: bool


def _feature_sets(columns: int) -> list[tuple[int, ...]]:
    sets: list[tuple[int, ...]] = [(index,) for index in range(columns)]
    if columns > 1:
        sets.append(tuple(range(columns)))
    return sets


def _project(counts: ConfusionCounts, feature_set: tuple[int, ...]) -> list[tuple[tuple[str, ...], IntArray]]:
    """Sum intersection cells over the columns outside ``feature_set``."""
    sums: dict[tuple[str, ...], IntArray] = {}
    for group, cells in zip(counts.groups, counts.cells, strict=True):
        key = tuple(group[index] for index in feature_set)
        if key in sums:
            sums[key] = sums[key] + cells
        else:
            sums[key] = cells.astype(np.int64)
    return [(key, sums[key]) for key in sorted(sums, key=_group_sort_key)]


def _group_label(group: _Group) -> dict[str, str]:
    return dict(group.attributes)


def compute_report(
    counts: ConfusionCounts,
    *,
    min_group_size: int = 30,
    include_small_groups: bool = False,
    reference_group: Mapping[str, object] | None = None,
    bootstrap: int = 0,
    seed: int | None = None,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """JSON-ready report: overall and per-group rates, bootstrap CIs, disparities.

    Groups are every value of each sensitive column and, with more than one column, every
    non-empty intersection. Groups smaller than ``min_group_size`` are flagged
    ``small_group`` and left out of the disparities unless ``include_small_groups``.
    ``reference_group`` maps column -> value; for each feature set the reference is the
    group matching it on that set's columns, else the largest included group.
    Bootstrap CIs draw ``bootstrap`` multinomial replicates of each group's four cells
    (groups in report order from one ``np.random.default_rng(seed)``) and take percentile
    intervals over the replicates in which the rate is defined.
    """
    if counts.rows == 0:
        raise FairnessInputError("fairness_empty_input", "no data rows to audit")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise FairnessInputError("fairness_bad_arguments", "bootstrap must be an integer >= 0")
    if not 0.0 < ci_level < 1.0:
        raise FairnessInputError("fairness_bad_arguments", "ci_level must be between 0 and 1")
    if min_group_size < 0:
        raise FairnessInputError("fairness_bad_arguments", "min_group_size must be >= 0")
    columns = counts.sensitive_columns
    reference = _normalise_reference(reference_group, columns)

    groups: list[_Group] = []
    for feature_set in _feature_sets(len(columns)):
        for key, cells in _project(counts, feature_set):
            count = int(cells.sum())
            groups.append(
                _Group(
                    feature_set=feature_set,
                    attributes={columns[i]: value for i, value in zip(feature_set, key, strict=True)},
                    cells=cells,
                    count=count,
                    small=count < min_group_size,
                )
            )

    overall_cells = counts.cells.sum(axis=0)
    all_cells = np.stack([overall_cells] + [group.cells for group in groups])
    point = rates_from_cells(all_cells)

    replicate_rates: dict[str, FloatArray] | None = None
    intervals: dict[str, FloatArray] | None = None
    quantiles = ((1.0 - ci_level) / 2.0, 1.0 - (1.0 - ci_level) / 2.0)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        totals = all_cells.sum(axis=1)
        draws = np.empty((bootstrap, all_cells.shape[0], 4), dtype=np.int64)
        for index in range(all_cells.shape[0]):
            draws[:, index, :] = rng.multinomial(int(totals[index]), all_cells[index] / totals[index], size=bootstrap)
        replicate_rates = rates_from_cells(draws)
        intervals = {name: _nan_quantiles(values, quantiles) for name, values in replicate_rates.items()}

    def rate_block(index: int) -> dict[str, Any]:
        block: dict[str, Any] = {name: _to_json_float(point[name][index]) for name in RATE_NAMES}
        if intervals is None:
            block["ci"] = None
        else:
            block["ci"] = {
                name: (
                    None
                    if block[name] is None or np.isnan(intervals[name][0, index])
                    else [
                        float(intervals[name][0, index]),
                        float(intervals[name][1, index]),
                    ]
                )
                for name in RATE_NAMES
            }
        return block

    overall = {"count": int(overall_cells.sum()), **rate_block(0)}
    group_entries: list[dict[str, Any]] = []
    for offset, group in enumerate(groups, start=1):
        flags = []
        if group.small:
            flags.append("small_group")
        if UNKNOWN_GROUP in group.attributes.values():
            flags.append("unknown_group")
        group_entries.append(
            {
                "attributes": _group_label(group),
                "count": group.count,
                **rate_block(offset),
                "flags": flags,
            }
        )

    disparities: dict[str, Any] = {}
    for feature_set in _feature_sets(len(columns)):
        members = [offset for offset, group in enumerate(groups, start=1) if group.feature_set == feature_set]
        disparities["&".join(columns[i] for i in feature_set)] = _disparity_entry(
            feature_set=feature_set,
            columns=columns,
            groups=groups,
            members=members,
            point=point,
            replicate_rates=replicate_rates,
            quantiles=quantiles,
            include_small_groups=include_small_groups,
            reference=reference,
        )

    return {
        "rows": counts.rows,
        "sensitive_columns": list(columns),
        "pos_label": counts.pos_label,
        "label_values": None if counts.label_values is None else list(counts.label_values),
        "parameters": {
            "min_group_size": min_group_size,
            "include_small_groups": include_small_groups,
            "reference_group": reference or None,
            "bootstrap": int(bootstrap),
            "seed": seed,
            "ci_level": ci_level,
        },
        "overall": overall,
        "groups": group_entries,
        "disparities": disparities,
    }


def _normalise_reference(reference_group: Mapping[str, object] | None, columns: Sequence[str]) -> dict[str, str]:
    if not reference_group:
        return {}
    unknown = [column for column in reference_group if column not in columns]
    if unknown:
        raise FairnessInputError(
            "fairness_bad_reference_group",
            f"reference_group names column(s) that are not sensitive columns: {unknown}",
        )
    return {column: normalise_group(value) for column, value in reference_group.items()}


def _spread(values: FloatArray) -> tuple[float | None, float | None]:
    """(max - min, min / max) over defined values; None with fewer than two values."""
    defined = values[~np.isnan(values)]
    if defined.size < 2:
        return None, None
    high, low = float(defined.max()), float(defined.min())
    return high - low, (low / high if high > 0 else None)


def _replicate_spread(values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per replicate (rows) max-min and min/max over groups (columns), NaN-aware."""
    defined = ~np.isnan(values)
    enough = defined.sum(axis=1) >= 2
    high = np.where(defined, values, -np.inf).max(axis=1, initial=-np.inf)
    low = np.where(defined, values, np.inf).min(axis=1, initial=np.inf)
    difference = np.where(enough, high - low, np.nan)
    ratio = np.full(values.shape[0], np.nan)
    np.divide(low, high, out=ratio, where=enough & (high > 0))
    return difference, ratio


def _disparity_entry(
    *,
    feature_set: tuple[int, ...],
    columns: Sequence[str],
    groups: Sequence[_Group],
    members: Sequence[int],
    point: Mapping[str, FloatArray],
    replicate_rates: Mapping[str, FloatArray] | None,
    quantiles: Sequence[float],
    include_small_groups: bool,
    reference: Mapping[str, str],
) -> dict[str, Any]:
    """Fairlearn's between-groups disparities for one feature set, from group rates."""
    set_columns = [columns[i] for i in feature_set]
    included = [m for m in members if include_small_groups or not groups[m - 1].small]
    excluded_small = [_group_label(groups[m - 1]) for m in members if m not in included]

    spreads: dict[str, tuple[float | None, float | None]] = {}
    undefined: dict[str, list[dict[str, str]]] = {}
    for rate in ("selection_rate", "tpr", "fpr"):
        values = point[rate][included]
        spreads[rate] = _spread(values)
        undefined[rate] = [_group_label(groups[m - 1]) for m, value in zip(included, values, strict=True) if np.isnan(value)]
    dp_difference, dp_ratio = spreads["selection_rate"]
    tpr_difference, tpr_ratio = spreads["tpr"]
    fpr_difference, fpr_ratio = spreads["fpr"]

    def both(first: float | None, second: float | None, how: str) -> float | None:
        if first is None or second is None:
            return None
        if how == "max":
            return max(first, second)
        if how == "min":
            return min(first, second)
        return (first + second) / 2.0

    entry: dict[str, Any] = {
        "attributes": set_columns,
        "groups_compared": len(included),
        "excluded_small_groups": excluded_small,
        "undefined_rate_groups": undefined,
        "demographic_parity_difference": dp_difference,
        "demographic_parity_ratio": dp_ratio,
        "tpr_difference": tpr_difference,
        "tpr_ratio": tpr_ratio,
        "fpr_difference": fpr_difference,
        "fpr_ratio": fpr_ratio,
        "equalized_odds_difference": both(tpr_difference, fpr_difference, "max"),
        "equalized_odds_difference_mean": both(tpr_difference, fpr_difference, "mean"),
        "equalized_odds_ratio": both(tpr_ratio, fpr_ratio, "min"),
        "equalized_odds_ratio_mean": both(tpr_ratio, fpr_ratio, "mean"),
        "equal_opportunity_difference": tpr_difference,
        "equal_opportunity_ratio": tpr_ratio,
    }

    # Impact ratios: every group's selection rate against the best and the reference group.
    selection = point["selection_rate"]
    best: int | None = None
    for m in included:
        if not np.isnan(selection[m]) and (best is None or selection[m] > selection[best]):
            best = m
    reference_member = _reference_member(groups, members, included, set_columns, reference)
    best_rate = None if best is None else float(selection[best])
    reference_rate = None if reference_member is None else _to_json_float(selection[reference_member])
    impact = []
    for m in members:
        group_rate = _to_json_float(selection[m])
        impact.append(
            {
                "attributes": _group_label(groups[m - 1]),
                "selection_rate": group_rate,
                "impact_ratio_to_best": _ratio(group_rate, best_rate),
                "impact_ratio_to_reference": _ratio(group_rate, reference_rate),
                "small_group": groups[m - 1].small,
            }
        )
    entry["best_group"] = None if best is None else _group_label(groups[best - 1])
    entry["reference_group"] = None if reference_member is None else _group_label(groups[reference_member - 1])
    entry["reference_rule"] = "chosen" if all(column in reference for column in set_columns) else "largest_group"
    entry["impact_ratios"] = impact

    if replicate_rates is None:
        entry["ci"] = None
    else:
        defined_in = {rate: [m for m in included if not np.isnan(point[rate][m])] for rate in ("selection_rate", "tpr", "fpr")}
        sr_diff, sr_ratio = _replicate_spread(replicate_rates["selection_rate"][:, defined_in["selection_rate"]])
        tpr_diff, _ = _replicate_spread(replicate_rates["tpr"][:, defined_in["tpr"]])
        fpr_diff, _ = _replicate_spread(replicate_rates["fpr"][:, defined_in["fpr"]])
        eo_diff = np.fmax(tpr_diff, fpr_diff)
        eo_diff[np.isnan(tpr_diff) | np.isnan(fpr_diff)] = np.nan
        series = {
            "demographic_parity_difference": sr_diff,
            "demographic_parity_ratio": sr_ratio,
            "equalized_odds_difference": eo_diff,
            "equal_opportunity_difference": tpr_diff,
        }
        stacked = np.stack(list(series.values()), axis=1)
        bounds = _nan_quantiles(stacked, quantiles)
        entry["ci"] = {
            name: (None if entry[name] is None or np.isnan(bounds[0, i]) else [float(bounds[0, i]), float(bounds[1, i])])
            for i, name in enumerate(series)
        }
    return entry


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _reference_member(
    groups: Sequence[_Group],
    members: Sequence[int],
    included: Sequence[int],
    set_columns: Sequence[str],
    reference: Mapping[str, str],
) -> int | None:
    if all(column in reference for column in set_columns):
        wanted = {column: reference[column] for column in set_columns}
        for m in members:
            if groups[m - 1].attributes == wanted:
                return m
        raise FairnessInputError(
            "fairness_bad_reference_group",
            f"reference group {wanted} does not occur in the data",
        )
    largest: int | None = None
    for m in included:
        if largest is None or groups[m - 1].count > groups[largest - 1].count:
            largest = m
    return largest

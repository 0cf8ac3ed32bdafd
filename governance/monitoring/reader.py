"""Columns of a CSV or Parquet file for the drift engine, one column at a time.

Parquet columns are read one by one, a numeric one batch by batch straight into one float64
array, so a wide or long file never sits in memory whole. A CSV file up to ``CSV_WHOLE_MAX_BYTES``
is parsed once for the named columns only; a larger one is parsed again for each column, in
streamed blocks, so only one column is held at a time (and no plaintext copy of a sealed file is
written anywhere). Numeric columns come as float64, categorical ones as text (a list, or with
``arrow_text`` the Arrow array the drift engine counts without Python objects). Problems raise
``DriftInputError`` with a stable code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.parquet as pa_parquet  # type: ignore[import-untyped]

from core.sealed import SealedPath, SealError, arrow_source, open_plain
from governance.monitoring.drift import DriftInputError

_PARQUET_MAGIC = b"PAR1"


def file_columns(path: str | os.PathLike[str] | SealedPath) -> tuple[str, list[str], set[str]]:
    """(format, column names, names whose type is text or boolean) of a CSV or Parquet file."""
    file_path = _existing(path)
    if _is_parquet(file_path):
        schema = _parquet(file_path).schema_arrow
        return "parquet", list(schema.names), {f.name for f in schema if _is_text(f.type)}
    try:
        reader = pa_csv.open_csv(arrow_source(file_path))
    except (pa.ArrowInvalid, UnicodeDecodeError, SealError) as error:
        raise DriftInputError("drift_malformed_file", f"{file_path.name} is not a readable CSV file: {error}") from error
    schema = reader.schema
    return "csv", list(schema.names), {f.name for f in schema if _is_text(f.type)}


def choose_columns(names: Sequence[str], text_columns: set[str], columns: Sequence[str],
                   categorical: Sequence[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) names to compare: the named ones, or every column of the file when no
    numeric column is named (text and boolean columns then count as categorical)."""
    chosen = list(dict.fromkeys([*columns, *categorical])) if columns else list(dict.fromkeys([*names, *categorical]))
    categorical_names = [name for name in chosen if name in categorical or (not columns and name in text_columns)]
    return [name for name in chosen if name not in categorical_names], categorical_names


CSV_WHOLE_MAX_BYTES = 64 * 1024 * 1024  # larger CSV files are read one column per pass
_BATCH_ROWS = 1 << 16


def read_columns(path: str | os.PathLike[str] | SealedPath, numeric: Sequence[str], categorical: Sequence[str],
                 *, arrow_text: bool = False, order: Sequence[str] | None = None,
                 whole_max_bytes: int | None = None) -> Iterator[tuple[str, Any]]:
    """(name, values) for each named column: float64 arrays for numeric, lists of text for categorical
    (pyarrow arrays with ``arrow_text``), numeric ones first unless ``order`` names them all in another
    order. Each column is read when the caller asks for it; drop one before taking the next to hold
    only one at a time. A paused reader holds no open file and, for a CSV file larger than
    ``whole_max_bytes`` (default ``CSV_WHOLE_MAX_BYTES``), no data: a caller that reads many files side
    by side gives each a share of that budget."""
    file_path = _existing(path)
    wanted = [*numeric, *categorical]
    if order is not None:
        if sorted(order) != sorted(wanted):
            raise ValueError("order must name the numeric and categorical columns, each once")
        wanted = list(order)
    if _is_parquet(file_path):
        _check_present(file_path, _parquet(file_path).schema_arrow.names, wanted)
        for name in wanted:  # the column is handed over, not kept here while the caller works on it
            yield name, _parquet_column(file_path, _parquet(file_path), name, name in categorical, arrow_text)
        return
    size = file_path.size() if isinstance(file_path, SealedPath) else file_path.stat().st_size
    if size > (CSV_WHOLE_MAX_BYTES if whole_max_bytes is None else whole_max_bytes):
        rows: list[int] = []  # known after the first numeric column: later ones fill one array
        for name in wanted:
            box = [_csv_column(file_path, name, name in categorical, arrow_text, rows[0] if rows else None)]
            if name not in categorical and not rows:
                rows.append(box[0].size)
            yield name, box.pop()  # handed over, not kept here while the caller works on it
        return
    table = _read_csv(file_path, numeric, categorical)
    for name in wanted:
        yield name, _convert(file_path, name, table.column(name), name in categorical, arrow_text)


def _csv_options(numeric: Sequence[str], categorical: Sequence[str]) -> Any:
    return pa_csv.ConvertOptions(
        include_columns=[*numeric, *categorical], strings_can_be_null=True,
        column_types={**{name: pa.float64() for name in numeric}, **{name: pa.string() for name in categorical}})


def _csv_error(file_path: Any, error: Exception) -> DriftInputError:
    text = str(error)
    if "No non-null" in text or "not found" in text.lower() or isinstance(error, KeyError):
        return DriftInputError("drift_missing_column", f"{file_path.name}: {text}")
    code = "drift_not_numeric" if "conversion" in text.lower() or "float" in text.lower() else "drift_malformed_file"
    return DriftInputError(code, f"{file_path.name}: {text}")


def _read_csv(file_path: Any, numeric: Sequence[str], categorical: Sequence[str]) -> Any:
    try:
        return pa_csv.read_csv(arrow_source(file_path), convert_options=_csv_options(numeric, categorical))
    except (pa.ArrowInvalid, UnicodeDecodeError, KeyError) as error:
        raise _csv_error(file_path, error) from error


def _csv_column(file_path: Any, name: str, categorical: bool, arrow_text: bool, rows: int | None = None) -> Any:
    """One column of a large CSV file, parsed in streamed blocks (only this column converted); a
    numeric one straight into one array when the row count is known."""
    options = _csv_options([], [name]) if categorical else _csv_options([name], [])
    chunks: list[Any] = []
    values = np.empty(rows, dtype=np.float64) if rows is not None and not categorical else None
    position = 0
    try:
        for batch in pa_csv.open_csv(arrow_source(file_path), convert_options=options):
            column = batch.column(0)
            if categorical:
                chunks.append(column)
                continue
            chunk = column.to_numpy(zero_copy_only=False)
            if values is not None and position + chunk.size <= values.size:
                values[position:position + chunk.size] = chunk
            else:
                if values is not None:  # more rows than the first column had: collect instead
                    chunks.append(values[:position].copy())
                    values = None
                chunks.append(np.array(chunk, dtype=np.float64))  # a copy, so Arrow's block is freed now
            position += chunk.size
            del batch, column, chunk
    except (pa.ArrowInvalid, UnicodeDecodeError, KeyError) as error:
        raise _csv_error(file_path, error) from error
    if categorical:
        return _convert(file_path, name, pa.chunked_array(chunks, type=pa.string()), True, arrow_text)
    if values is not None:
        return values[:position]
    joined = np.concatenate(chunks) if chunks else np.empty(0)
    del chunks
    return joined


def _parquet_column(file_path: Any, table_file: Any, name: str, categorical: bool, arrow_text: bool) -> Any:
    """One column of a Parquet file; a numeric one batch by batch into a single float64 array."""
    if categorical:
        return _convert(file_path, name, table_file.read(columns=[name]).column(0), True, arrow_text)
    _check_numeric(file_path, name, table_file.schema_arrow.field(name).type)
    values = np.empty(table_file.metadata.num_rows, dtype=np.float64)
    position = 0
    for batch in table_file.iter_batches(batch_size=_BATCH_ROWS, columns=[name]):
        chunk = batch.column(0).cast(pa.float64()).to_numpy(zero_copy_only=False)
        values[position:position + chunk.size] = chunk
        position += chunk.size
    return values[:position]


def _check_numeric(path: Any, name: str, arrow_type: Any) -> None:
    if not (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_null(arrow_type)):
        raise DriftInputError("drift_not_numeric", f"{path.name}: column {name!r} is {arrow_type}, not numeric "
                              "(name it with --categorical)")


def _convert(path: Any, name: str, column: Any, categorical: bool, arrow_text: bool = False) -> Any:
    if categorical:
        text = column.cast(pa.string())
        return text if arrow_text else text.to_pylist()
    _check_numeric(path, name, column.type)
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _existing(path: str | os.PathLike[str] | SealedPath) -> Any:
    file_path = path if isinstance(path, SealedPath) else Path(path)
    if not file_path.is_file():
        raise DriftInputError("drift_file_not_found", f"{file_path.name} does not exist or is not a file")
    if (file_path.size() if isinstance(file_path, SealedPath) else file_path.stat().st_size) == 0:
        raise DriftInputError("drift_empty_input", f"{file_path.name} is empty")
    return file_path


def _is_parquet(path: Any) -> bool:
    with open_plain(path) as handle:
        return handle.read(len(_PARQUET_MAGIC)) == _PARQUET_MAGIC


def _parquet(path: Any) -> Any:
    try:
        return pa_parquet.ParquetFile(arrow_source(path))
    except (pa.ArrowInvalid, OSError) as error:
        raise DriftInputError("drift_malformed_file", f"{path.name} is not a readable Parquet file: {error}") from error


def _is_text(arrow_type: Any) -> bool:
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_boolean(arrow_type)
                or pa.types.is_dictionary(arrow_type))


def _check_present(path: Any, names: Sequence[str], wanted: Sequence[str]) -> None:
    absent = [name for name in wanted if name not in names]
    if absent:
        raise DriftInputError("drift_missing_column", f"{path.name} has no column {', '.join(map(repr, absent))}")

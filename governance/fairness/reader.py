"""Audit a CSV or Parquet file in chunks, so memory stays flat however long the file is.

Only the named columns are read. CSV columns are read as text and interpreted by the
engine's rules (``engine.normalise_label``/``normalise_group``: ``"1.0"`` and ``1`` are the
label ``"1"``; an empty sensitive value is ``"Unknown"``); Parquet columns keep their
types and go through the same rules, so a CSV and a Parquet file holding the same data
give the same report. Any problem with the file raises ``FairnessInputError`` before a
result exists, so a caller never sees a partial report.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.parquet as pa_parquet  # type: ignore[import-untyped]

from core.sealed import arrow_source, open_plain
from governance.fairness.engine import (
    ConfusionAccumulator,
    FairnessInputError,
    compute_report,
    predictions_from_scores,
)

FileFormat = Literal["csv", "parquet"]

# CSV is parsed in blocks of this many bytes. The streaming reader holds a queue of
# blocks, so peak memory grows with it: 16 MiB blocks cost ~350 MB for a 10M-row file,
# 2 MiB ~80 MB, with no loss of speed.
CSV_BLOCK_BYTES = 2 << 20
_SNIFF_BYTES = 64 << 10
_HASH_BLOCK_BYTES = 1 << 20
_CSV_TEXT = pa.dictionary(pa.int32(), pa.string())
_PARQUET_MAGIC = b"PAR1"


def audit_file(
    path: str | os.PathLike[str],
    *,
    y_true: str,
    y_pred: str | None = None,
    score: str | None = None,
    threshold: float | None = None,
    sensitive: Sequence[str],
    pos_label: object = None,
    label_values: Iterable[object] | None = None,
    chunk_rows: int = 1_000_000,
    file_format: FileFormat | None = None,
    **report_kwargs: Any,
) -> dict[str, Any]:
    """Fairness report for a CSV or Parquet file, plus ``input_sha256`` of its bytes.

    Give either ``y_pred`` (a label column) or ``score`` and ``threshold`` (positive where
    ``score >= threshold``). ``chunk_rows`` caps the rows handled at once. The format is
    ``file_format`` if given, else Parquet for a file starting with ``PAR1``, else CSV.
    ``report_kwargs`` go to ``engine.compute_report``.
    """
    if (y_pred is None) == (score is None):
        raise FairnessInputError("fairness_bad_arguments", "give exactly one of y_pred or score")
    if score is not None and threshold is None:
        raise FairnessInputError("fairness_bad_arguments", "a score column needs a threshold")
    if isinstance(sensitive, str) or not sensitive:
        raise FairnessInputError("fairness_bad_arguments", "give at least one sensitive column as a list")
    if chunk_rows < 1:
        raise FairnessInputError("fairness_bad_arguments", "chunk_rows must be >= 1")
    file_path = Path(path)
    if not file_path.is_file():
        raise FairnessInputError("fairness_file_not_found", f"{file_path} does not exist or is not a file")

    prediction_column = y_pred if y_pred is not None else score
    assert prediction_column is not None
    needed = list(dict.fromkeys([y_true, prediction_column, *sensitive]))
    detected = file_format or _detect_format(file_path)
    if detected == "parquet":
        batches = _parquet_batches(file_path, needed, chunk_rows)
    elif detected == "csv":
        batches = _csv_batches(file_path, needed, chunk_rows, score)
    else:
        raise FairnessInputError("fairness_bad_arguments", f"unknown file format {detected!r}")

    accumulator = ConfusionAccumulator(list(sensitive), pos_label=pos_label, label_values=label_values)
    # The digest must describe the bytes that were audited: note the file's identity, hash
    # it, and refuse the result if it changed meanwhile. Hashing releases the GIL, so a
    # second thread overlaps it with parsing.
    before = _fingerprint(file_path)
    stop_hashing = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fairness-sha256") as hashing:
        digest = hashing.submit(file_sha256, file_path, stop=stop_hashing)
        try:
            rows = _accumulate(batches, accumulator, y_true=y_true, y_pred=y_pred, score=score, threshold=threshold)
        except BaseException:
            stop_hashing.set()
            raise
        input_sha256 = digest.result()
    if rows == 0:
        raise FairnessInputError("fairness_empty_input", f"{file_path.name} has a header but no data rows")
    if _fingerprint(file_path) != before:
        raise FairnessInputError("fairness_input_changed", f"{file_path.name} changed while it was being audited")

    report = compute_report(accumulator.counts(), **report_kwargs)
    report["input_sha256"] = input_sha256
    report["input_format"] = detected
    report["input_columns"] = {
        "y_true": y_true,
        "y_pred": y_pred,
        "score": score,
        "threshold": threshold,
        "sensitive": list(sensitive),
    }
    return report


def _accumulate(
    batches: Iterable[Any],
    accumulator: ConfusionAccumulator,
    *,
    y_true: str,
    y_pred: str | None,
    score: str | None,
    threshold: float | None,
) -> int:
    """Feed every batch to the accumulator; return the number of data rows."""
    row_offset = 0
    for batch in batches:
        if score is not None:
            assert threshold is not None
            predictions: object = predictions_from_scores(batch.column(score), threshold, row_offset=row_offset, column=score)
        else:
            predictions = batch.column(y_pred)
        sensitive = {name: batch.column(name) for name in accumulator.sensitive_columns}
        accumulator.add(batch.column(y_true), predictions, sensitive, row_offset=row_offset)
        row_offset += batch.num_rows
    return row_offset


def file_sha256(path: str | os.PathLike[str], *, stop: threading.Event | None = None) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB blocks; gives up early once ``stop`` is set."""
    digest = hashlib.sha256()
    with open_plain(path) as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            if stop is not None and stop.is_set():
                return ""
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns, status.st_ino


def _detect_format(path: Any) -> FileFormat:
    with open_plain(path) as handle:
        magic = handle.read(len(_PARQUET_MAGIC))
    return "parquet" if magic == _PARQUET_MAGIC else "csv"


def _slices(batch: Any, chunk_rows: int) -> Iterator[Any]:
    for start in range(0, batch.num_rows, chunk_rows):
        yield batch.slice(start, chunk_rows)


def _check_csv_header(path: Any) -> None:
    """Refuse binary data before pyarrow reads it as a header of odd column names."""
    with open_plain(path) as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head:
        raise FairnessInputError("fairness_empty_input", f"{path.name} is empty")
    if b"\x00" in head:
        raise FairnessInputError(
            "fairness_malformed_file",
            f"{path.name} is not a CSV file: it contains binary data (NUL bytes)",
        )
    header, newline, _ = head.partition(b"\n")
    if newline or len(head) < _SNIFF_BYTES:
        try:
            header.decode("utf-8")
        except UnicodeDecodeError as error:
            raise FairnessInputError(
                "fairness_malformed_file",
                f"{path.name}: the CSV header is not UTF-8 text ({error.reason} at byte {error.start})",
            ) from error


def _csv_batches(path: Any, needed: list[str], chunk_rows: int, score_column: str | None) -> Iterator[Any]:
    _check_csv_header(path)
    bad_rows: list[Any] = []

    def record_bad_row(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    # Parse errors name the row and the column counts, never a cell: the rows hold personal data
    # (and pyarrow's own messages quote them), and these messages reach responses, runs and the ledger.
    def malformed(error: Exception) -> FairnessInputError:
        if bad_rows:
            row = bad_rows[0]
            where = "a row" if row.number is None else f"data row {row.number - 1}"
            return FairnessInputError(
                "fairness_malformed_file",
                f"{path.name}: {where} has {row.actual_columns} fields, expected {row.expected_columns}",
                row=None if row.number is None else row.number - 1,
            )
        return FairnessInputError("fairness_malformed_file",
                                  f"{path.name} is not a readable CSV file ({_error_kind(error)})")

    try:
        reader = pa_csv.open_csv(
            arrow_source(path),
            # Single-threaded parsing keeps row numbers in parse errors and memory low.
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=record_bad_row),
            convert_options=pa_csv.ConvertOptions(
                include_columns=needed,
                # Dictionary-encoded while parsing: the engine uses the codes directly.
                column_types={name: (pa.string() if name == score_column else _CSV_TEXT) for name in needed},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowKeyError as error:
        raise FairnessInputError(
            "fairness_missing_column",
            f"{path.name} lacks column(s) {_missing_csv_columns(path, needed)}",
            missing=_missing_csv_columns(path, needed),
        ) from error
    except pa.ArrowInvalid as error:
        if "Empty CSV file" in str(error):
            raise FairnessInputError("fairness_empty_input", f"{path.name} is empty") from error
        raise malformed(error) from None

    def generate() -> Iterator[Any]:
        with reader:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, UnicodeDecodeError) as error:
                    raise malformed(error) from None
                yield from _slices(batch, chunk_rows)

    return generate()


def _error_kind(error: Exception) -> str:
    """What went wrong, without the library's message (which may quote the data)."""
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 at byte {error.start}"
    if "UTF8" in str(error) or "UTF-8" in str(error):
        return "text that is not UTF-8"
    return type(error).__name__


def _missing_csv_columns(path: Any, needed: Sequence[str]) -> list[str]:
    try:
        reader = pa_csv.open_csv(arrow_source(path), read_options=pa_csv.ReadOptions(block_size=_SNIFF_BYTES << 4))
        names = set(reader.schema.names)
        reader.close()
    except pa.ArrowException:
        return list(needed)
    return [name for name in needed if name not in names]


def _parquet_batches(path: Any, needed: list[str], chunk_rows: int) -> Iterator[Any]:
    try:
        parquet_file = pa_parquet.ParquetFile(arrow_source(path))
    except (pa.ArrowException, OSError) as error:
        raise FairnessInputError(
            "fairness_malformed_file",
            f"{path.name} is not a readable Parquet file ({_error_kind(error)})",
        ) from None
    names = set(parquet_file.schema_arrow.names)
    missing = [name for name in needed if name not in names]
    if missing:
        raise FairnessInputError(
            "fairness_missing_column",
            f"{path.name} lacks column(s) {missing}",
            missing=missing,
        )
    if parquet_file.metadata.num_rows == 0:
        raise FairnessInputError("fairness_empty_input", f"{path.name} has no data rows")

    def generate() -> Iterator[Any]:
        try:
            for batch in parquet_file.iter_batches(batch_size=chunk_rows, columns=needed):
                yield from _slices(batch, chunk_rows)
        except (pa.ArrowException, OSError) as error:
            raise FairnessInputError(
                "fairness_malformed_file",
                f"{path.name} is not a readable Parquet file ({_error_kind(error)})",
            ) from None
        finally:
            parquet_file.close()

    return generate()

"""Uploaded evaluation data and prediction files: size limit, hashing, column checks, storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]

from core.errors import InvalidInput, ServiceError
from core.sealed import SealedPath, SealError, arrow_source
from governance.fairness import reader
from governance.fairness.engine import FairnessInputError
from governance.fairness.services.vault import seal_upload_target, sealed_writer


class UploadTooLarge(ServiceError):
    code = "fairness_upload_too_large"
    status_code = 413


def file_columns(path: Path | SealedPath) -> list[str]:
    """Column names of a CSV or Parquet file (header / schema only)."""
    import pyarrow.parquet as pa_parquet  # type: ignore[import-untyped]

    try:
        if reader._detect_format(path) == "parquet":
            return list(pa_parquet.ParquetFile(arrow_source(path)).schema_arrow.names)
        reader._check_csv_header(path)
        with pa_csv.open_csv(arrow_source(path), read_options=pa_csv.ReadOptions(block_size=1 << 20, use_threads=False)) as csv:
            return list(csv.schema.names)
    except FairnessInputError:
        raise
    except (pa.ArrowException, OSError, SealError) as error:
        # The library's message may quote the data; the type says enough.
        raise FairnessInputError("fairness_malformed_file",
                                 f"{path.name} is not a readable CSV or Parquet file ({type(error).__name__})",
                                 ) from None


def require_columns(path: Path | SealedPath, needed: list[str]) -> None:
    present = set(file_columns(path))
    missing = [name for name in needed if name not in present]
    if missing:
        raise FairnessInputError("fairness_missing_column", f"{path.name} lacks column(s) {missing}", missing=missing)


def input_error(error: FairnessInputError, *, temp: Path | SealedPath | None = None, shown: str = "") -> InvalidInput:
    """The engine's error as a 400; a temporary file's name in the message becomes the uploaded name."""
    message = str(error)
    if temp is not None:
        message = message.replace(temp.name, shown or "the file")
    return InvalidInput(message, code=error.code, extra=dict(getattr(error, "extra", {}) or {}))


def store_upload(uploaded: Any, *, folder: str, max_bytes: int) -> tuple[SealedPath, str, int]:
    """Seal an upload into a private temporary file under MEDIA_ROOT, hashing its plaintext; refuse oversize.

    The file on disk is ciphertext from its first byte, under a fresh data key that, if the upload
    is kept, becomes the stored file's key (``vault.sealed_file_prepare``).
    """
    size = getattr(uploaded, "size", None)
    if size is not None and size > max_bytes:
        raise UploadTooLarge(f"The file is {size} bytes; the limit is {max_bytes}.",
                             extra={"size_bytes": size, "max_bytes": max_bytes})
    target = seal_upload_target(folder)
    writer = sealed_writer(target)  # hashes the plaintext as it seals it
    written = 0
    try:
        for chunk in uploaded.chunks() if hasattr(uploaded, "chunks") else iter(lambda: uploaded.read(1 << 20), b""):
            written += len(chunk)
            if written > max_bytes:
                raise UploadTooLarge(f"The file is larger than the limit of {max_bytes} bytes.",
                                     extra={"max_bytes": max_bytes})
            writer.write(chunk)
        writer.close()
    except BaseException:
        writer.abort()
        target.unlink(missing_ok=True)
        raise
    return target, writer.plaintext_sha256, written

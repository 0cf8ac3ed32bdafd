"""Writes of production prediction batches, which the monitoring audits read."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from audit.ledger import actor_label, ledger_append
from core.errors import InvalidInput
from governance.fairness import reader
from governance.fairness.engine import FairnessInputError
from governance.fairness.models import AuditSpec, PredictionBatch
from governance.fairness.services import vault
from governance.fairness.services.access import require_allowed, require_visible
from governance.fairness.services.runs import production_version
from governance.fairness.services.uploads import file_columns, input_error, store_upload
from governance.models import ModelVersion, RegisteredModel
from governance.permissions import can_write_model


def _validate_batch(path: Any) -> tuple[str, int, list[str]]:
    """Read the whole file (chunked) so a malformed row is refused now, not at audit time."""
    fmt = reader._detect_format(path)
    columns = file_columns(path)
    if not columns:
        raise FairnessInputError("fairness_empty_input", f"{path.name} has no columns")
    batches = (reader._parquet_batches(path, columns, 1_000_000) if fmt == "parquet"
               else reader._csv_batches(path, columns, 1_000_000, None))
    rows = sum(batch.num_rows for batch in batches)
    if rows == 0:
        raise FairnessInputError("fairness_empty_input", f"{path.name} has a header but no data rows")
    return fmt, rows, columns


def _sensitive_columns(model: RegisteredModel) -> list[str]:
    names: list[str] = []
    for spec in AuditSpec.objects.filter(model=model, target=AuditSpec.Target.PRODUCTION):
        names += list(spec.sensitive)
    return list(dict.fromkeys(names))


def _monitoring_columns(model: RegisteredModel) -> list[str]:
    needed: list[str] = []
    for spec in AuditSpec.objects.filter(model=model, target=AuditSpec.Target.PRODUCTION):
        needed += [spec.y_true, spec.y_pred or spec.score, *spec.sensitive]
    return list(dict.fromkeys(needed))


def prediction_batch_upload(*, by: Any, model: RegisteredModel, uploaded: Any,
                            served_version: ModelVersion | None = None,
                            identifier_columns: list[str] | None = None) -> tuple[PredictionBatch, bool]:
    """Store a batch of production predictions; (batch, created). The same bytes again return the first batch.

    Oversized: 413 `fairness_upload_too_large`; unreadable, empty, or lacking a column a monitoring
    spec needs: 400 with the engine's code. Nothing is stored for a refused upload. The file is
    stored sealed, its `identifier_columns` replaced by the team's keyed hashes.
    """
    identifiers = list(dict.fromkeys(identifier_columns or []))
    if not all(isinstance(name, str) and name for name in identifiers):
        raise InvalidInput("'identifier_columns' must be a list of column names.", code="fairness_bad_arguments")
    require_visible(by, model)
    require_allowed(can_write_model(by, model, "governance.add_modelversion"),
                    f"You may not upload predictions of '{model.name}'.")
    if served_version is not None and served_version.model_id != model.pk:
        raise InvalidInput("'version' is not a version of this model.", code="fairness_bad_arguments")
    temp, digest, size = store_upload(uploaded, folder="batch-", max_bytes=settings.FAIRNESS_MAX_UPLOAD_BYTES)
    stored_name = ""
    try:
        existing = PredictionBatch.objects.filter(model=model, sha256=digest).first()
        if existing is not None:
            return existing, False
        try:
            fmt, rows, columns = _validate_batch(temp)
            monitored = _monitoring_columns(model)
            clash = [name for name in identifiers if name in monitored]
            if clash:
                raise InvalidInput(f"Column(s) {clash} are read by monitoring, so they cannot be direct identifiers.",
                                   code="fairness_bad_arguments", extra={"columns": clash})
            missing = [name for name in [*monitored, *identifiers] if name not in columns]
            if missing:
                raise FairnessInputError("fairness_missing_column",
                                         f"the batch lacks column(s) {missing} that this model's monitoring audits read",
                                         missing=missing)
        except FairnessInputError as error:
            raise input_error(error, temp=temp, shown=getattr(uploaded, "name", "")) from error
        version = served_version or production_version(model)
        batch = PredictionBatch(model=model, served_version=version, file_format=fmt, sha256=digest,
                                size_bytes=size, rows=rows, columns=columns, uploaded_by_label=actor_label(by))
        sealed_record = vault.sealed_file_prepare(
            temp=temp, name=f"fairness/predictions/{model.name}/{digest}.{fmt}", kind="batch", fmt=fmt,
            source_sha256=digest, model=model, identifier_columns=identifiers, sensitive_columns=_sensitive_columns(model),
            purpose=f"production monitoring of '{model.name}' (fairness and drift)")
        stored_name = sealed_record.name
        batch.file.name = stored_name
        try:
            with transaction.atomic():
                batch.save()
                sealed_record.save()
                ledger_append(actor=by, action="prediction_batch.uploaded", subject=batch, payload={
                    "model": model.name, "sha256": digest, "size_bytes": size, "rows": rows, "format": fmt,
                    "served_version": version.label if version else None,
                    "file": vault.sealed_file_summary(sealed_record)})
        except IntegrityError:
            vault.sealed_file_discard(stored_name)
            stored_name = ""
            existing = PredictionBatch.objects.filter(model=model, sha256=digest).first()
            if existing is None:
                raise
            return existing, False
        stored_name = ""  # committed: keep it
        return batch, True
    finally:
        temp.unlink(missing_ok=True)
        vault.sealed_file_discard(stored_name)

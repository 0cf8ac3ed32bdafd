"""Sensitive data files at rest: sealed (core.sealed) under a per-file key wrapped by the KEK,
pseudonymised at upload, read only for a recorded purpose, and erased by destroying their keys.

* Keys: the key-encryption keys come from DATA_KEK or the keyring file DATA_KEK_FILE (created 0600
  on first use), never from the database; rows hold only wrapped data keys and the KEK's id.
* Reads: `sealed_file_open` checks the purpose and that the file still exists; the caller records
  the read with `sealed_file_reads_record` inside the transaction of the run or download that
  caused it (the ledger entry names who, why and the digest, never content).
* Erasure: `sealed_file_erase` empties the wrapped key and removes the file; the row stays as the
  record of the erasure, and the ledger entry names the digests that are gone.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from audit.ledger import ledger_append, lock_for_update
from audit.refusals import refusal_recorded
from core import sealed
from core.errors import Conflict, Forbidden, InvalidInput, ServiceError
from governance.fairness.models import SealedFile, TeamPseudonymKey

# Why a sealed file may be read: each read names one of these and what caused it.
PURPOSES = frozenset({"fairness_audit", "monitoring_run", "download", "row_erasure", "personal_data_scan"})
ERASURE_REASONS = frozenset({"retention", "erasure_request", "row_erasure"})
ERASED_NOTE = "input erased under retention policy"


class DataErased(ServiceError):
    code = "data_erased"
    status_code = 410


class SealedFileCorrupt(ServiceError):
    code = "sealed_file_corrupt"
    status_code = 409


# --- key-encryption keys ----------------------------------------------------------------------

def _decode_kek(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != sealed.KEY_BYTES:
        raise ImproperlyConfiguredKek(f"{where} is not the base64 of 32 bytes")
    return key


class ImproperlyConfiguredKek(RuntimeError):
    """The KEK setting or keyring file is unreadable (a deployment error, never shown to callers)."""


def _keyring_file() -> Path:
    return Path(settings.DATA_KEK_FILE)


def _ensure_keyring_file() -> None:
    path = _keyring_file()
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    key = sealed.new_data_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{sealed.kek_id_of(key)} {base64.b64encode(key).decode()}\n")


def keyring() -> tuple[str, dict[str, bytes]]:
    """(active KEK id, every KEK by id). DATA_KEK, if set, is the active one; the file's keys still unwrap."""
    keys: dict[str, bytes] = {}
    active = ""
    if not settings.DATA_KEK:
        _ensure_keyring_file()
    path = _keyring_file()
    if path.exists():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            kek_id, _, text = line.strip().partition(" ")
            key = _decode_kek(text, f"line {number} of the data keyring")
            if sealed.kek_id_of(key) != kek_id:
                raise ImproperlyConfiguredKek(f"line {number} of the data keyring names the wrong key id")
            keys[kek_id] = key
            active = kek_id
    if settings.DATA_KEK:
        key = _decode_kek(settings.DATA_KEK, "DATA_KEK")
        active = sealed.kek_id_of(key)
        keys[active] = key
    return active, keys


def keyring_summary() -> str:
    """The active KEK's public id, for reports (never the key)."""
    try:
        active, keys = keyring()
    except (ImproperlyConfiguredKek, OSError):
        return ""
    return f" (active key id {active}; {len(keys)} key(s) in the keyring)"


def keyring_add() -> str:
    """Append a fresh KEK to the keyring file; it becomes the active one. Returns its id."""
    if settings.DATA_KEK:
        raise InvalidInput("DATA_KEK is set: rotate by setting a new DATA_KEK and keeping the old one in the keyring "
                           "file.", code="data_kek_from_environment")
    _ensure_keyring_file()
    key = sealed.new_data_key()
    kek_id = sealed.kek_id_of(key)
    with _keyring_file().open("a") as handle:
        handle.write(f"{kek_id} {base64.b64encode(key).decode()}\n")
    return kek_id


def _wrap(file_id: bytes, data_key: bytes) -> tuple[str, bytes]:
    kek_id, keys = keyring()
    return kek_id, sealed.wrap_key(kek=keys[kek_id], kek_id=kek_id, file_id=file_id, data_key=data_key)


def _unwrap(*, kek_id: str, file_id: bytes, wrapped: bytes) -> bytes:
    _, keys = keyring()
    if kek_id not in keys:
        raise SealedFileCorrupt("The key-encryption key of this file is not in the keyring.", extra={"kek_id": kek_id})
    try:
        return sealed.unwrap_key(kek=keys[kek_id], kek_id=kek_id, file_id=file_id, wrapped=wrapped)
    except sealed.SealError as error:
        raise SealedFileCorrupt(f"The data key does not unwrap: {error}.") from None


# --- pseudonyms ---------------------------------------------------------------------------------

def team_pseudonym_key(team: Any) -> bytes:
    """The team's HMAC key, created (wrapped by the KEK) the first time the team stores data."""
    record = TeamPseudonymKey.objects.filter(team=team).first()
    if record is None:
        key = sealed.new_data_key()
        key_id = sealed.new_file_id()
        kek_id, wrapped = _wrap(key_id, key)
        with transaction.atomic():
            record, created = TeamPseudonymKey.objects.get_or_create(
                team=team, defaults={"key_id": key_id.hex(), "kek_id": kek_id, "wrapped_key": wrapped})
        if created:
            return key
    return _unwrap(kek_id=record.kek_id, file_id=bytes.fromhex(record.key_id), wrapped=bytes(record.wrapped_key))


def _pseudonymise_column(column: Any, key: bytes) -> Any:
    """Each distinct value is hashed once; empty and missing values stay as they are."""
    encoded = pc.dictionary_encode(pc.cast(column, pa.string()))
    dictionary = encoded.dictionary.to_pylist()
    hashed = pa.array([sealed.pseudonym(value, key=key) if value else value for value in dictionary], pa.string())
    return pc.take(hashed, encoded.indices)


# --- writes ---------------------------------------------------------------------------------

def seal_upload_target(folder: str) -> sealed.SealedPath:
    """A new sealed temporary file under MEDIA_ROOT (for `store_upload`), with a fresh data key."""
    tmp_dir = Path(settings.MEDIA_ROOT) / "fairness" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    file_id = sealed.new_file_id()
    path = tmp_dir / f"{folder}{file_id.hex()}.sealed"
    return sealed.SealedPath(path, data_key=sealed.new_data_key(), file_id=file_id)


def sealed_writer(target: sealed.SealedPath) -> sealed.SealedWriter:
    assert target.file_id is not None
    return sealed.SealedWriter(open(target.path, "xb"), data_key=target._data_key, file_id=target.file_id)


def _pseudonymised_copy(source: sealed.SealedPath, *, fmt: str, identifiers: list[str], key: bytes,
                        folder: str) -> tuple[sealed.SealedPath, str, int]:
    """A new sealed file: ``source`` with each identifier column replaced by keyed hashes."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pa_parquet

    target = seal_upload_target(folder)
    writer = sealed_writer(target)
    try:
        with source.open() as handle:
            if fmt == "parquet":
                parquet = pa_parquet.ParquetFile(handle)
                schema = parquet.schema_arrow
                out_schema = pa.schema([pa.field(f.name, pa.string()) if f.name in identifiers else f for f in schema])
                with pa_parquet.ParquetWriter(writer, out_schema) as parquet_writer:
                    for batch in parquet.iter_batches(batch_size=500_000):
                        columns = [_pseudonymise_column(batch.column(i), key) if name in identifiers
                                   else batch.column(i) for i, name in enumerate(batch.schema.names)]
                        parquet_writer.write_batch(pa.record_batch(columns, schema=out_schema))
            else:
                names = pa_csv.open_csv(source.open()).schema.names
                # Every column as text, so the values that are not identifiers are stored exactly as given.
                stream = pa_csv.open_csv(handle, convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in names}, strings_can_be_null=False))
                with pa_csv.CSVWriter(writer, stream.schema) as csv_writer:
                    for batch in stream:
                        columns = [_pseudonymise_column(batch.column(i), key) if name in identifiers
                                   else batch.column(i) for i, name in enumerate(batch.schema.names)]
                        csv_writer.write_batch(pa.record_batch(columns, schema=stream.schema))
        writer.close()
    except BaseException:
        writer.abort()
        target.unlink(missing_ok=True)
        raise
    return target, writer.plaintext_sha256, writer.plaintext_bytes


def sealed_file_prepare(*, temp: sealed.SealedPath, name: str, kind: str, fmt: str, source_sha256: str,
                        model: Any, identifier_columns: Iterable[str] = (), sensitive_columns: Iterable[str] = (),
                        purpose: str = "") -> SealedFile:
    """Move a sealed upload into storage (pseudonymised first if it declares identifier columns) and
    return its unsaved record; the caller saves it in the transaction that records the upload.

    The file is in storage when this returns: the caller deletes it (``sealed_file_discard``) if its
    transaction fails.
    """
    identifiers = list(dict.fromkeys(identifier_columns))
    content_sha256, size = source_sha256, 0
    source = temp
    if identifiers:
        source, content_sha256, size = _pseudonymised_copy(temp, fmt=fmt, identifiers=identifiers,
                                                           key=team_pseudonym_key(model.team), folder="pseudo-")
    else:
        size = temp.size()
    stored = default_storage.get_available_name(name)
    destination = Path(default_storage.path(stored))
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source.path, destination)
    finally:
        if source is not temp:
            source.unlink(missing_ok=True)
    assert source.file_id is not None
    kek_id, wrapped = _wrap(source.file_id, source._data_key)
    tier = getattr(model, "risk_tier", "") or "high"
    days = settings.DATA_RETENTION_DAYS.get(tier, max(settings.DATA_RETENTION_DAYS.values(), default=730))
    return SealedFile(file_id=source.file_id.hex(), name=stored, kind=kind, model=model, team=model.team,
                      file_format=fmt, kek_id=kek_id, wrapped_key=wrapped, source_sha256=source_sha256,
                      content_sha256=content_sha256, size_bytes=size, identifier_columns=identifiers,
                      sensitive_columns=list(dict.fromkeys(sensitive_columns)), purpose=purpose[:500],
                      retention_until=timezone.now() + timedelta(days=days), retention_set_by="policy")


def sealed_bytes_prepare(*, data: bytes, name: str, kind: str, model: Any, sensitive_columns: Iterable[str] = (),
                         purpose: str = "") -> SealedFile:
    """Seal a small generated file that holds rows (a reference profile's values) into storage under
    ``name``; the live record of that name if there is one (content-addressed names), else an unsaved one
    for the caller's transaction."""
    existing = SealedFile.objects.filter(name=name, erased_at__isnull=True).first()
    if existing is not None:
        return existing
    target = seal_upload_target("generated-")
    writer = sealed_writer(target)
    try:
        writer.write(data)
        writer.close()
    except BaseException:
        writer.abort()
        target.unlink(missing_ok=True)
        raise
    stored = default_storage.get_available_name(name)
    destination = Path(default_storage.path(stored))
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(target.path, destination)
    assert target.file_id is not None
    kek_id, wrapped = _wrap(target.file_id, target._data_key)
    tier = getattr(model, "risk_tier", "") or "high"
    days = settings.DATA_RETENTION_DAYS.get(tier, max(settings.DATA_RETENTION_DAYS.values(), default=730))
    return SealedFile(file_id=target.file_id.hex(), name=stored, kind=kind, model=model, team=model.team,
                      file_format="json", kek_id=kek_id, wrapped_key=wrapped, source_sha256=writer.plaintext_sha256,
                      content_sha256=writer.plaintext_sha256, size_bytes=writer.plaintext_bytes,
                      sensitive_columns=list(dict.fromkeys(sensitive_columns)), purpose=purpose[:500],
                      retention_until=timezone.now() + timedelta(days=days), retention_set_by="policy")


def sealed_file_discard(name: str) -> None:
    """Remove a stored file whose record was never committed."""
    if name:
        default_storage.delete(name)


def sealed_file_summary(record: SealedFile) -> dict[str, Any]:
    """What a ledger entry may say about a sealed file: ids, digests, column names, dates; no content."""
    return {"file_id": record.file_id, "kind": record.kind, "content_sha256": record.content_sha256,
            "source_sha256": record.source_sha256, "kek_id": record.kek_id,
            "identifier_columns": list(record.identifier_columns), "sensitive_columns": list(record.sensitive_columns),
            "retention_until": record.retention_until.isoformat() if record.retention_until else None}


# --- reads ------------------------------------------------------------------------------------


def lineage_dataset_local_path(dataset_version: Any) -> Path | None:
    """The lineage dataset version's own file (outside our storage), which a spec or profile copies in
    sealed: only when its location is a local path under FAIRNESS_LOCAL_DATASET_ROOT.

    Only under that folder (empty: never), so that a dataset version cannot make the server read
    an arbitrary local file.
    """
    root = settings.FAIRNESS_LOCAL_DATASET_ROOT
    uri = str(dataset_version.location_uri or "")
    if not root or not uri.startswith(("file:///", "/")):
        return None
    path = Path(uri.removeprefix("file://")).resolve()
    if not path.is_relative_to(Path(root).resolve()) or not path.is_file():
        return None
    return path


def sealed_file_open(*, record: SealedFile, purpose: str) -> sealed.SealedPath:
    """A readable view of a sealed file, for one of the known purposes; 410 once it is erased."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")  # a programming error, not a request error
    if record.erased_at is not None or not record.wrapped_key:
        when = f" on {record.erased_at:%Y-%m-%d} ({record.erasure_reason})" if record.erased_at else ""
        raise DataErased(f"The data was erased{when}; its digests remain.", extra={
            "file_id": record.file_id, "erased_at": record.erased_at.isoformat() if record.erased_at else None,
            "reason": record.erasure_reason})
    file_id = bytes.fromhex(record.file_id)
    data_key = _unwrap(kek_id=record.kek_id, file_id=file_id, wrapped=bytes(record.wrapped_key))
    return sealed.SealedPath(default_storage.path(record.name), data_key=data_key, file_id=file_id)


def sealed_file_reads_record(*, by: Any, records: Iterable[SealedFile], purpose: str, cause: Any,
                             cause_label: str) -> None:
    """One `sealed_file.read` entry per file: who, why (purpose and the run or request), which digest.

    Must run inside the transaction of the run or download that caused the read, so the two
    commit together.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("sealed_file_reads_record must run inside the caller's transaction")
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    for record in records:
        ledger_append(actor=by, action="sealed_file.read", subject=record, payload={
            "file_id": record.file_id, "content_sha256": record.content_sha256, "purpose": purpose,
            "cause": cause_label, "cause_id": getattr(cause, "pk", None)})


def can_download(by: Any, record: SealedFile) -> bool:
    """A download needs a purpose: an auditor or a risk officer who can see the model, or the owner
    of a spec that stored this file. Deny by default (admins, superusers, service accounts, the
    model's other data scientists)."""
    from governance.fairness.models import AuditSpec
    from governance.permissions import can_view_model, is_active_user, is_service_account
    from governance.roles import AUDITOR, RISK_OFFICER

    if not is_active_user(by) or is_service_account(by) or record.model is None or not can_view_model(by, record.model):
        return False
    if by.groups.filter(name__in=[AUDITOR, RISK_OFFICER]).exists():
        return True
    return AuditSpec.objects.filter(dataset_file=record.name, created_by=by).exists()


def sealed_file_download(*, by: Any, record: SealedFile) -> sealed.SealedPath:
    """Open a sealed file for a download: checks the purpose and writes the `sealed_file.read` entry
    (purpose "download") in one transaction; the caller streams the returned path decrypted in chunks.

    The header and the key are checked before anything is recorded, so a file whose key does not
    unwrap or whose header is damaged is a 409 with nothing written.
    """
    with _refusals(by, "sealed_file.download", record):
        if not can_download(by, record):
            raise Forbidden("Downloading this data file needs a purpose: an auditor or risk officer of the model, "
                            "or the spec's owner.", code="data_download_not_allowed", extra={"file_id": record.file_id})
    with transaction.atomic():
        record = SealedFile.objects.get(pk=record.pk)
        try:
            path = sealed_file_open(record=record, purpose="download")
            with path.open() as handle:
                handle.read(1)
        except sealed.SealError as error:
            raise SealedFileCorrupt(f"The stored file fails authentication: {error}.") from None
        sealed_file_reads_record(by=by, records=[record], purpose="download", cause=record, cause_label="download")
    return path


def erasure_note(names: Iterable[str]) -> dict[str, Any] | None:
    """For a result computed from these stored files: when, why and which input digests were erased
    since (the result and its digests stay); None while every input still exists."""
    names = [name for name in names if name]
    if not names:
        return None
    erased = list(SealedFile.objects.filter(name__in=names, erased_at__isnull=False).order_by("erased_at", "pk"))
    if not erased:
        return None
    return {"note": ERASED_NOTE, "erased_at": erased[-1].erased_at.isoformat() if erased[-1].erased_at else None,
            "reasons": sorted({record.erasure_reason for record in erased}),
            "input_sha256": sorted({record.source_sha256 for record in erased}),
            "files_erased": len(erased), "files_total": len(set(names))}


def sealed_file_name_at(name: str, moment: Any) -> str:
    """The stored file a reader of ``name`` read at ``moment``: a row-level erasure repoints batches
    and specs to the rewrite, so a run older than the rewrite read its predecessor (erased since)."""
    record = SealedFile.objects.filter(name=name).first()
    while record is not None and record.created_at > moment:
        previous = SealedFile.objects.filter(replaced_by=record).first()
        if previous is None:
            break
        record = previous
    return record.name if record is not None else name


def sealed_file_for(name: str) -> SealedFile | None:
    return SealedFile.objects.filter(name=name).first()


def read_or_corrupt(path: sealed.SealedPath) -> bytes:
    """The whole plaintext (small files only); a tampered file is a 409 with a clear code."""
    try:
        with path.open() as handle:
            return handle.read()
    except sealed.SealError as error:
        raise SealedFileCorrupt(f"The stored file fails authentication: {error}.") from None


# --- retention and erasure -------------------------------------------------------------------

def _shred(record: SealedFile, *, reason: str, now: Any) -> None:
    record.wrapped_key = b""
    record.erased_at = now
    record.erasure_reason = reason
    record.save(update_fields=["wrapped_key", "erased_at", "erasure_reason"])


def require_data_officer(by: Any, record: SealedFile, what: str) -> None:
    """Retention and erasure decisions: a risk officer (a person, not a service account) who can see
    the file's model, or a system job (`system:<task>`: the beat job, the operator's management
    command). Deny by default: admins, superusers, auditors, approvers and data scientists are refused."""
    from governance.permissions import can_view_model, is_risk_officer

    if isinstance(by, str) and by.startswith("system:"):
        return
    allowed = is_risk_officer(by) and record.model is not None and can_view_model(by, record.model)
    if not allowed:
        raise Forbidden(f"Only a risk officer of the model {what}.", code="data_officer_required",
                        extra={"file_id": record.file_id})


def _refusals(by: Any, action: str, record: SealedFile) -> Any:
    """Record `<action>.refused` when a rule refuses a person (system jobs are not refused)."""
    if isinstance(by, str):
        from contextlib import nullcontext
        return nullcontext()
    return refusal_recorded(actor=by, action=action, subject=record, attempt={"file_id": record.file_id})


def sealed_file_erase(*, by: Any, record: SealedFile, reason: str, request_ref: str = "") -> SealedFile:
    """Crypto-shred one file: its wrapped key is destroyed and the file removed; records `sealed_file.erased`."""
    with _refusals(by, "sealed_file.erase", record):
        require_data_officer(by, record, "erases its data")
    if reason not in ERASURE_REASONS:
        raise InvalidInput(f"'reason' must be one of {sorted(ERASURE_REASONS)}.", code="data_bad_erasure")
    with transaction.atomic():
        record = lock_for_update(SealedFile.objects).get(pk=record.pk)
        if record.erased_at is not None:
            return record
        _shred(record, reason=reason, now=timezone.now())
        ledger_append(actor=by, action="sealed_file.erased", subject=record, payload={
            "file_id": record.file_id, "reason": reason, "request": request_ref[:200],
            "digests_erased": [record.content_sha256, record.source_sha256]})
        transaction.on_commit(lambda name=record.name: default_storage.delete(name))
    return record


def sealed_files_expire(*, by: str = "system:sealed_files_expire_task", now: Any = None) -> list[str]:
    """Beat job: erase every file whose retention has ended; the ids erased."""
    moment = now or timezone.now()
    erased = []
    for record in SealedFile.objects.filter(erased_at__isnull=True, retention_until__lte=moment):
        sealed_file_erase(by=by, record=record, reason="retention")
        erased.append(record.file_id)
    return erased


def sealed_file_retention_set(*, by: Any, record: SealedFile, retention_until: Any, reason: str) -> SealedFile:
    """A risk officer overrides one file's retention date; records `sealed_file.retention_set`."""
    if isinstance(by, str):
        raise Forbidden("A retention override is a person's decision.", code="data_officer_required")
    with _refusals(by, "sealed_file.retention_set", record):
        require_data_officer(by, record, "sets a data set's retention")
    if not reason.strip():
        raise InvalidInput("Say why the retention changes.", code="data_bad_retention")
    with _refusals(by, "sealed_file.retention_set", record), transaction.atomic():
        record = lock_for_update(SealedFile.objects).get(pk=record.pk)
        if record.erased_at is not None:
            raise Conflict("The data is erased already.", code="data_erased_already")
        before = record.retention_until
        record.retention_until = retention_until
        record.retention_set_by = f"user:{by.get_username()}"
        record.save(update_fields=["retention_until", "retention_set_by"])
        ledger_append(actor=by, action="sealed_file.retention_set", subject=record, payload={
            "file_id": record.file_id, "before": before.isoformat() if before else None,
            "after": retention_until.isoformat(), "reason": reason[:1000]})
    return record


def sealed_file_erase_rows(*, by: Any, record: SealedFile, column: str, value: str, request_ref: str = "") -> SealedFile:
    """A person's erasure request: rewrite the file without the rows whose ``column`` holds ``value``
    (compared after pseudonymisation when it is an identifier column), under a new key and a new
    digest; the old file is shredded. Records `sealed_file.rows_erased` naming both digests."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pa_parquet

    with _refusals(by, "sealed_file.rows_erase", record):
        require_data_officer(by, record, "erases a person's rows")
    if record.erased_at is not None:
        raise DataErased("The data was erased already.", extra={"file_id": record.file_id})
    match = sealed.pseudonym(value, key=team_pseudonym_key(record.team)) if column in record.identifier_columns else value
    source = sealed_file_open(record=record, purpose="row_erasure")
    target = seal_upload_target("erase-")
    writer = sealed_writer(target)
    removed = 0
    try:
        with source.open() as handle:
            if record.file_format == "parquet":
                parquet = pa_parquet.ParquetFile(handle)
                if column not in parquet.schema_arrow.names:
                    raise InvalidInput(f"The file has no column {column!r}.", code="data_bad_erasure")
                with pa_parquet.ParquetWriter(writer, parquet.schema_arrow) as out:
                    for batch in parquet.iter_batches(batch_size=500_000):
                        keep = pc.invert(pc.fill_null(pc.equal(pc.cast(batch.column(column), pa.string()), match), False))
                        removed += batch.num_rows - pc.sum(keep.cast(pa.int64())).as_py()
                        out.write_batch(batch.filter(keep))
            else:
                names = pa_csv.open_csv(source.open()).schema.names
                if column not in names:
                    raise InvalidInput(f"The file has no column {column!r}.", code="data_bad_erasure")
                stream = pa_csv.open_csv(handle, convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in names}, strings_can_be_null=False))
                with pa_csv.CSVWriter(writer, stream.schema) as out:
                    for batch in stream:
                        keep = pc.invert(pc.equal(batch.column(column), match))
                        removed += batch.num_rows - pc.sum(keep.cast(pa.int64())).as_py()
                        out.write_batch(batch.filter(keep))
        writer.close()
    except BaseException:
        writer.abort()
        target.unlink(missing_ok=True)
        raise
    if removed == 0:
        target.unlink(missing_ok=True)
        raise InvalidInput("No row of the file holds that value.", code="data_erasure_no_rows")
    stem = record.name.rsplit(".", 1)
    stored = default_storage.get_available_name(f"{stem[0]}-r.{stem[1] if len(stem) > 1 else record.file_format}")
    destination = Path(default_storage.path(stored))
    os.replace(target.path, destination)
    assert target.file_id is not None
    kek_id, wrapped = _wrap(target.file_id, target._data_key)
    try:
        with transaction.atomic():
            locked = lock_for_update(SealedFile.objects).get(pk=record.pk)
            if locked.erased_at is not None:
                raise DataErased("The data was erased meanwhile.", extra={"file_id": record.file_id})
            replacement = SealedFile.objects.create(
                file_id=target.file_id.hex(), name=stored, kind=locked.kind, team=locked.team, model=locked.model,
                file_format=locked.file_format, kek_id=kek_id, wrapped_key=wrapped, source_sha256=locked.source_sha256,
                content_sha256=writer.plaintext_sha256, size_bytes=writer.plaintext_bytes,
                identifier_columns=locked.identifier_columns, sensitive_columns=locked.sensitive_columns,
                purpose=locked.purpose, retention_until=locked.retention_until, retention_set_by=locked.retention_set_by)
            _shred(locked, reason="row_erasure", now=timezone.now())
            locked.replaced_by = replacement
            locked.save(update_fields=["replaced_by"])
            _repoint(locked, replacement)
            ledger_append(actor=by, action="sealed_file.rows_erased", subject=locked, payload={
                "file_id": locked.file_id, "replacement_file_id": replacement.file_id, "rows_removed": removed,
                "request": request_ref[:200], "digests_erased": [locked.content_sha256, locked.source_sha256],
                "replacement_content_sha256": replacement.content_sha256})
            transaction.on_commit(lambda name=locked.name: default_storage.delete(name))
    except BaseException:
        default_storage.delete(stored)
        raise
    return replacement


def _repoint(old: SealedFile, new: SealedFile) -> None:
    """Batches and specs that stored the old file now name its rewrite (their source digest is unchanged)."""
    from governance.fairness.models import AuditSpec, PredictionBatch

    PredictionBatch.objects.filter(file=old.name).update(file=new.name)
    AuditSpec.objects.filter(dataset_file=old.name).update(dataset_file=new.name)


def sealed_files_rewrap(*, by: Any) -> int:
    """Re-wrap every live data key and team key under the active KEK (the files are not touched);
    records `data_keys.rewrapped` with the count and the KEK ids, never a key."""
    active, keys = keyring()
    count = 0
    with transaction.atomic():
        before: set[str] = set()
        for record in lock_for_update(SealedFile.objects.filter(erased_at__isnull=True).exclude(kek_id=active)):
            file_id = bytes.fromhex(record.file_id)
            data_key = _unwrap(kek_id=record.kek_id, file_id=file_id, wrapped=bytes(record.wrapped_key))
            before.add(record.kek_id)
            record.wrapped_key = sealed.wrap_key(kek=keys[active], kek_id=active, file_id=file_id, data_key=data_key)
            record.kek_id = active
            record.save(update_fields=["wrapped_key", "kek_id"])
            count += 1
        for team_key in lock_for_update(TeamPseudonymKey.objects.exclude(kek_id=active)):
            key_id = bytes.fromhex(team_key.key_id)
            data_key = _unwrap(kek_id=team_key.kek_id, file_id=key_id, wrapped=bytes(team_key.wrapped_key))
            before.add(team_key.kek_id)
            team_key.wrapped_key = sealed.wrap_key(kek=keys[active], kek_id=active, file_id=key_id, data_key=data_key)
            team_key.kek_id = active
            team_key.save(update_fields=["wrapped_key", "kek_id"])
            count += 1
        ledger_append(actor=by, action="data_keys.rewrapped", subject=("data_keyring", active), payload={
            "kek_id": active, "previous_kek_ids": sorted(before), "keys_rewrapped": count})
    return count



def sealed_files_encrypt_existing(*, by: Any) -> list[str]:
    """Seal, in place, every data set and batch stored in clear before encryption at rest; one
    `sealed_file.encrypted_existing` entry per file, in the transaction that creates its record.

    A file whose bytes no longer match the digest it was recorded with is left alone and named in
    the error, so nothing unverified is vouched for. Returns the storage names sealed.
    """
    from governance.fairness.models import AuditSpec, PredictionBatch

    stored: list[tuple[str, str, str, Any, list[str], str]] = []
    for batch in PredictionBatch.objects.select_related("model__team"):
        stored.append((batch.file.name, batch.sha256, batch.file_format, batch.model, [], "batch"))
    for spec in AuditSpec.objects.exclude(dataset_file="").select_related("model__team"):
        fmt = "parquet" if spec.dataset_file.name.endswith(".parquet") else "csv"
        stored.append((spec.dataset_file.name, spec.dataset_sha256, fmt, spec.model, list(spec.sensitive), "dataset"))
    sealed_names = set(SealedFile.objects.values_list("name", flat=True))
    done: list[str] = []
    for name, digest, fmt, model, sensitive, kind in stored:
        if name in sealed_names or name in done:
            continue
        path = Path(default_storage.path(name))
        with path.open("rb") as handle:
            if sealed.is_sealed(handle):
                continue
        target = seal_upload_target("existing-")
        with path.open("rb") as source, open(target.path, "xb") as sink:
            assert target.file_id is not None
            actual, size = sealed.seal_stream(source, sink, data_key=target._data_key, file_id=target.file_id)
        if actual != digest:
            target.unlink()
            raise SealedFileCorrupt(f"{name} does not have the digest it was recorded with; it is left in clear.",
                                    extra={"name": name, "expected": digest, "actual": actual})
        assert target.file_id is not None
        kek_id, wrapped = _wrap(target.file_id, target._data_key)
        tier = getattr(model, "risk_tier", "") or "high"
        days = settings.DATA_RETENTION_DAYS.get(tier, max(settings.DATA_RETENTION_DAYS.values(), default=730))
        with transaction.atomic():
            record = SealedFile.objects.create(
                file_id=target.file_id.hex(), name=name, kind=kind, model=model, team=model.team, file_format=fmt,
                kek_id=kek_id, wrapped_key=wrapped, source_sha256=digest, content_sha256=digest, size_bytes=size,
                sensitive_columns=sensitive, purpose=f"stored before encryption at rest ({kind} of '{model.name}')",
                retention_until=timezone.now() + timedelta(days=days), retention_set_by="policy")
            ledger_append(actor=by, action="sealed_file.encrypted_existing", subject=record,
                          payload=sealed_file_summary(record))
            # The sealed copy replaces the clear file under the same name when the record commits.
            transaction.on_commit(lambda source=target.path, destination=path: os.replace(source, destination))
        done.append(name)
    return done


# --- no personal data in the ledger -------------------------------------------------------------

def _declared_values(record: SealedFile) -> dict[str, str]:
    """Values of a live file that would identify a person: every value of an identifier column (as
    stored, i.e. its pseudonym) and every sensitive value that only one row holds (a category many
    rows share is a group label, as audit results name groups)."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pa_parquet

    identifiers, sensitive = list(record.identifier_columns), list(record.sensitive_columns)
    wanted = list(dict.fromkeys([*identifiers, *sensitive]))
    if not wanted:
        return {}
    path = sealed_file_open(record=record, purpose="personal_data_scan")
    with path.open() as handle:
        if record.file_format == "parquet":
            table = pa_parquet.ParquetFile(handle).read(columns=wanted)
        else:
            table = pa_csv.read_csv(handle, convert_options=pa_csv.ConvertOptions(
                include_columns=wanted, column_types={name: pa.string() for name in wanted}, strings_can_be_null=True))
    found: dict[str, str] = {}
    for name in wanted:
        counts = pc.value_counts(pc.cast(table.column(name), pa.string())).to_pylist()
        for item in counts:
            value = item["values"]
            if value and (name in identifiers or item["counts"] == 1):
                found[value] = f"{record.file_id}:{name}"
    return found


def ledger_personal_data_findings(*, extra_values: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Ledger entries whose canonical bytes hold, as a JSON string, a value of a declared identifier or
    sensitive column of a live file (or one of ``extra_values``); empty when the ledger is clean."""
    import json

    from audit.models import LedgerEntry

    values: dict[str, str] = {value: "given" for value in extra_values if value}
    for record in SealedFile.objects.filter(erased_at__isnull=True):
        try:
            values.update(_declared_values(record))
        except (sealed.SealError, SealedFileCorrupt, OSError, pa.ArrowException):
            continue  # a damaged or missing file holds nothing to look for (its own checks report it)
    if not values:
        return []
    needles = {json.dumps(value)[1:-1]: where for value, where in values.items()}
    findings = []
    for seq, action, canonical in LedgerEntry.objects.order_by("seq").values_list("seq", "action", "canonical"):
        text = bytes(canonical).decode()
        for needle, where in needles.items():
            if f'"{needle}"' in text:
                findings.append({"seq": seq, "action": action, "column": where})
    return findings

"""Reference profiles: built from a registered lineage dataset version or an uploaded file,
stored by digest, recorded in the ledger, frozen once their model version is approved."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from audit.ledger import lock_for_update
from core.errors import Conflict, InvalidInput, NotFound
from governance.fairness.services import vault
from governance.fairness.services.access import can_manage_specs, require_allowed, require_visible
from governance.fairness.services.uploads import store_upload
from governance.fairness.services.vault import lineage_dataset_local_path
from governance.models import ModelVersion, VersionStatus
from governance.monitoring.drift import (
    DEFAULT_BINS,
    ENGINE_VERSION,
    ColumnProfile,
    DriftInputError,
    build_profiles,
    profile_from_json,
    profile_to_json,
)
from governance.monitoring.models import ReferenceProfile
from governance.monitoring.reader import choose_columns, file_columns, read_columns

# A version in any of these states has been approved: its profile no longer changes.
APPROVED_STATES = frozenset({VersionStatus.APPROVED, VersionStatus.DEPLOYED, VersionStatus.DEPRECATED, VersionStatus.RETIRED})


def drift_input_error(error: DriftInputError, *, temp: Path | None = None, shown: str = "") -> InvalidInput:
    message = str(error)
    if temp is not None:
        message = message.replace(temp.name, shown or "the file").replace(str(temp), shown or "the file")
    return InvalidInput(message, code=error.code)


def profile_body_bytes(profiles: list[ColumnProfile], *, source_sha256: str, bins: int) -> bytes:
    """The stored body: canonical JSON (sorted keys, no spaces); floats keep their exact repr."""
    body = {"engine": ENGINE_VERSION, "source_sha256": source_sha256, "bins": bins,
            "columns": [profile_to_json(profile) for profile in profiles]}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def reference_profile_create(*, by: Any, version: ModelVersion, columns: list[str] | None = None,
                             categorical: list[str] | None = None, dataset_version: Any = None, file: Any = None,
                             path: str | os.PathLike[str] | None = None, bins: int = DEFAULT_BINS) -> ReferenceProfile:
    """Profile the reference data of ``version``; records `reference_profile.created`.

    The data is an uploaded ``file``, a local ``path``, or the file of ``dataset_version``
    (a lineage dataset version under FAIRNESS_LOCAL_DATASET_ROOT; its content digest must match).
    A version that has been approved keeps its profile: a new one is refused (409).
    """
    model = version.model
    require_visible(by, model)
    require_allowed(can_manage_specs(by, model), f"You may not define the monitoring of '{model.name}'.")
    if not 2 <= bins <= 100:
        raise InvalidInput("'bins' must be between 2 and 100.", code="monitoring_bad_arguments")
    frozen = version.status in APPROVED_STATES
    if frozen and ReferenceProfile.objects.filter(version=version).exists():
        raise Conflict(f"Version {version.label} is approved: its reference profile is frozen.",
                       code="monitoring_profile_frozen", extra={"version": version.pk})
    if file is None and path is None and dataset_version is not None:
        path = lineage_dataset_local_path(dataset_version)
    if file is None and path is None:
        raise InvalidInput("Give the reference data: a file, or a lineage dataset version whose file this server can read.",
                           code="monitoring_no_data")
    shown = getattr(file, "name", "") or (Path(str(path)).name if path is not None else "")
    temp: Path | None = None
    try:
        if path is not None:
            with open(path, "rb") as source:
                temp, source_sha256, _ = store_upload(File(source), folder="profile-",
                                                      max_bytes=settings.FAIRNESS_MAX_DATASET_BYTES)
        else:
            temp, source_sha256, _ = store_upload(file, folder="profile-", max_bytes=settings.FAIRNESS_MAX_DATASET_BYTES)
        if dataset_version is not None and dataset_version.digest_kind == "content" and dataset_version.digest != source_sha256:
            raise InvalidInput("The reference data is not the lineage dataset version it names: the SHA-256 of its bytes "
                               "differs.", code="monitoring_bad_arguments",
                               extra={"expected": dataset_version.digest, "actual": source_sha256})
        try:
            _, names, text_columns = file_columns(temp)
            numeric_names, categorical_names = choose_columns(names, text_columns, columns or [], categorical or [])
            data = dict(read_columns(temp, numeric_names, categorical_names))
            row_count = len(next(iter(data.values()))) if data else 0
            if row_count == 0:
                raise DriftInputError("drift_empty_input", f"{temp.name} has no data rows")
            profiles = build_profiles(data, categorical=categorical_names, bins=bins)
        except DriftInputError as error:
            raise drift_input_error(error, temp=temp, shown=shown) from error
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)
    body = profile_body_bytes(profiles, source_sha256=source_sha256, bins=bins)
    profile_sha256 = hashlib.sha256(body).hexdigest()
    # The body holds every reference value of the numeric columns: it is stored sealed, like the data.
    sealed_body = vault.sealed_bytes_prepare(
        data=body, name=f"monitoring/profiles/{profile_sha256}.json", kind="profile", model=model,
        sensitive_columns=[p.column for p in profiles],
        purpose=f"drift monitoring of '{model.name}' {version.label}: reference profile")
    stored = sealed_body.name
    summary = [profile_to_json(profile, sample=False) for profile in profiles]
    with transaction.atomic():
        if sealed_body.pk is None:
            sealed_body.save()
        profile = ReferenceProfile(
            version=version, dataset_version=dataset_version, source_sha256=source_sha256, profile_file=stored,
            profile_sha256=profile_sha256, columns=[{"name": p.column, "kind": p.kind} for p in profiles], summary=summary,
            bins=bins, row_count=row_count, engine_version=ENGINE_VERSION, frozen_at=timezone.now() if frozen else None,
            created_by=by if getattr(by, "is_authenticated", False) else None)
        profile.save_recorded(action="reference_profile.created", by=by, extra={
            "model": model.name, "version": version.label, "profile_sha256": profile_sha256,
            "source_sha256": source_sha256, "dataset_version": getattr(dataset_version, "pk", None),
            "frozen": frozen})
    return profile


def reference_profile_freeze(*, version: ModelVersion, by: Any) -> ReferenceProfile | None:
    """Freeze the latest profile of an approved version; records `reference_profile.frozen`.

    The approval service calls this when a version is approved. Idempotent.
    """
    with transaction.atomic():
        profile = lock_for_update(ReferenceProfile.objects).filter(version=version).first()
        if profile is None or profile.frozen_at is not None:
            return profile
        if version.status not in APPROVED_STATES:
            raise Conflict("Only an approved version's profile is frozen.", code="monitoring_version_not_approved")
        profile.frozen_at = timezone.now()
        profile.save_recorded(action="reference_profile.frozen", by=by, update_fields=["frozen_at"],
                              extra={"version": version.label, "profile_sha256": profile.profile_sha256})
    return profile


def reference_profile_latest(version: ModelVersion) -> ReferenceProfile:
    profile = ReferenceProfile.objects.filter(version=version).first()
    if profile is None:
        raise NotFound(f"Version {version.label} has no reference profile.", code="monitoring_profile_not_found")
    return profile


def reference_profile_sealed(profile: ReferenceProfile) -> Any:
    """The sealed record of the profile's body (its reads are recorded with the run that loads it)."""
    record = vault.sealed_file_for(profile.profile_file)
    if record is None:
        raise Conflict("The stored profile body is not sealed (run manage.py data_files encrypt-existing).",
                       code="monitoring_profile_corrupt", extra={"profile": profile.pk})
    return record


def reference_profile_load(profile: ReferenceProfile) -> list[ColumnProfile]:
    """The profile body from storage, checked against its recorded digest."""
    body = vault.read_or_corrupt(vault.sealed_file_open(record=reference_profile_sealed(profile),
                                                        purpose="monitoring_run"))
    if hashlib.sha256(body).hexdigest() != profile.profile_sha256:
        raise Conflict("The stored profile body does not match its recorded digest.", code="monitoring_profile_corrupt",
                       extra={"profile": profile.pk})
    return [profile_from_json(column) for column in json.loads(body)["columns"]]

"""Datasets and their versions: registration (by content, digest or folder manifest) and derivation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from audit.ledger import actor_label, ledger_append
from core.errors import InvalidInput, NotFound
from lineage import manifests, visibility
from lineage.models import DATASET_VERSION_REF, Attestation, Dataset, DatasetVersion, LineageNode
from lineage.services.attestations import attestation_ref, server_attest
from lineage.services.graph import (
    Kind,
    acting_owner,
    edge_add,
    iso_time,
    require_owner_write,
    require_sha256,
    sha256_hex,
)


def dataset_create(*, namespace: str, name: str, description: str = "", actor: Any,
                   owner_team: str | None = None) -> tuple[Dataset, bool]:
    """Create the dataset `namespace/name` of the actor's team, or return the team's existing one (idempotent).

    Each team names datasets in its own space, so another team's dataset of the same name is neither
    returned nor revealed.
    """
    namespace, name = namespace.strip(), name.strip()
    if not name:
        raise InvalidInput("A dataset needs a name.", code="invalid_input", extra={"field": "name"})
    owner = acting_owner(actor, owner_team)
    with transaction.atomic():
        existing = Dataset.objects.filter(owner_team=owner, namespace=namespace, name=name).first()
        if existing is not None:
            return existing, False
        dataset = Dataset.objects.create(namespace=namespace, name=name, description=description, owner_team=owner,
                                         created_by=actor_label(actor))
        ledger_append(actor=actor, action="lineage.dataset.created", subject=dataset,
                      payload={"namespace": namespace, "name": name, "description": description,
                               "owner_team": owner})
    return dataset, True


def _require_readable(actor: Any, parents: Sequence[DatasetVersion]) -> None:
    """Derivation parents are dependencies: anything the actor may read (others are not found)."""
    for parent in parents:
        if not visibility.may_read_owner(actor, parent.dataset.owner_team):
            raise NotFound(f"No dataset version {parent.pk}.", code="dataset_version_not_found",
                           extra={"dataset_version": parent.pk})


def manifest_digest(manifest: Mapping[str, str]) -> str:
    """Digest of a folder: SHA-256 of the RFC 8785 bytes of {relative path: sha256 hex} (`lineage.manifests`)."""
    try:
        return manifests.manifest_digest(manifest)
    except manifests.ManifestError as exc:
        if exc.digest_invalid:
            field = f"manifest[{exc.path!r}]"
            raise InvalidInput(f"{field} must be a lowercase hex SHA-256 (64 characters).", code="invalid_digest",
                               extra={"field": field})
        extra: dict[str, Any] = {"field": "manifest"}
        if exc.path is not None:
            extra["path"] = exc.path
        raise InvalidInput(str(exc), code="invalid_manifest", extra=extra)


@dataclass(frozen=True)
class VersionSpec:
    """What a caller knows about a dataset version; exactly one of digest/content/manifest decides the digest."""

    location_uri: str
    digest: str | None = None
    content: bytes | None = None
    manifest: Mapping[str, str] | None = None
    version: str = ""
    schema: Sequence[Mapping[str, str]] = ()
    row_count: int | None = None
    time_range_start: datetime | None = None
    time_range_end: datetime | None = None
    sensitive_data_notes: str = ""
    digest_kind: str | None = None


def _resolve_digest(spec: VersionSpec) -> tuple[str, str]:
    if spec.content is not None:
        digest, kind = sha256_hex(spec.content), DatasetVersion.DigestKind.CONTENT
    elif spec.manifest is not None:
        digest, kind = manifest_digest(spec.manifest), DatasetVersion.DigestKind.MANIFEST
    elif spec.digest:
        digest, kind = require_sha256(spec.digest, "digest"), DatasetVersion.DigestKind.CONTENT
    else:
        raise InvalidInput("Give the content digest, the bytes or a folder manifest.", code="digest_missing",
                           extra={"field": "digest"})
    if spec.digest and spec.digest != digest:
        raise InvalidInput("digest does not match the content or manifest given.", code="digest_mismatch",
                           extra={"field": "digest", "computed": digest})
    return digest, spec.digest_kind or kind


def _check_schema(schema: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    cleaned: list[dict[str, str]] = []
    for index, column in enumerate(schema):
        if not isinstance(column, Mapping) or not isinstance(column.get("name"), str) or not column["name"]:
            raise InvalidInput("Each schema column needs a name.", code="invalid_schema",
                               extra={"field": f"schema[{index}].name"})
        cleaned.append({"name": column["name"], "type": str(column.get("type") or "")})
    return cleaned


def version_register(*, dataset: Dataset, spec: VersionSpec, derived_from: Sequence[DatasetVersion],
                      actor: Any) -> tuple[DatasetVersion, bool]:
    """The body of `dataset_version_register`, for callers that already hold a transaction.

    Only the dataset's team adds versions to it; its parents may be anything the actor may read.
    """
    require_owner_write(actor, dataset.owner_team, "dataset")
    _require_readable(actor, derived_from)
    digest, digest_kind = _resolve_digest(spec)
    existing = DatasetVersion.objects.filter(dataset=dataset, digest=digest).select_related("node").first()
    if existing is not None:
        return existing, False
    if not spec.location_uri:
        raise InvalidInput("location_uri is required.", code="invalid_input", extra={"field": "location_uri"})
    if spec.row_count is not None and spec.row_count < 0:
        raise InvalidInput("row_count must not be negative.", code="invalid_input", extra={"field": "row_count"})
    if spec.time_range_start and spec.time_range_end and spec.time_range_end < spec.time_range_start:
        raise InvalidInput("time_range_end is before time_range_start.", code="invalid_time_range",
                           extra={"field": "time_range_end"})
    schema = _check_schema(spec.schema)
    label = f"{dataset.namespace}/{dataset.name}@{spec.version or digest[:12]}"
    version = DatasetVersion(
        dataset=dataset, version=spec.version[:200], location_uri=spec.location_uri, digest=digest,
        digest_kind=digest_kind, manifest=dict(spec.manifest) if spec.manifest is not None else None, schema=schema,
        row_count=spec.row_count, time_range_start=spec.time_range_start, time_range_end=spec.time_range_end,
        sensitive_data_notes=spec.sensitive_data_notes, created_by=actor_label(actor),
    )
    # The node's ref id is the version's pk, so the row is created first with a placeholder node.
    node = LineageNode.objects.create(kind=Kind.DATASET_VERSION, ref_type=DATASET_VERSION_REF,
                                      ref_id=f"pending:{digest}:{dataset.pk}", digest=digest, label=label[:300],
                                      owner_team=dataset.owner_team)
    version.node = node
    version.save()
    LineageNode.objects.filter(pk=node.pk).update(ref_id=str(version.pk))
    node.ref_id = str(version.pk)
    edges = [edge_add(parent.node, node)[0] for parent in derived_from]
    attestation = server_attest(
        subjects=[node], dependencies=[parent.node for parent in derived_from], actor=actor,
        external_parameters={"dataset": {"namespace": dataset.namespace, "name": dataset.name},
                             "version": version.version, "location_uri": version.location_uri,
                             "digest_kind": digest_kind, "schema": schema, "row_count": version.row_count},
        invocation_id=f"dataset_version:{version.pk}", edges=edges, owner_team=dataset.owner_team,
    )
    ledger_append(actor=actor, action="lineage.dataset_version.registered", subject=version, payload={
        "dataset": dataset.pk, "digest": digest, "digest_kind": digest_kind, "location_uri": version.location_uri,
        "version": version.version, "schema": schema, "row_count": version.row_count,
        "time_range": [iso_time(version.time_range_start), iso_time(version.time_range_end)],
        "sensitive_data_notes": version.sensitive_data_notes, "node": node.pk,
        "derived_from": [parent.pk for parent in derived_from], "attestation": attestation_ref(attestation),
    })
    return version, True


def dataset_version_register(*, dataset: Dataset, spec: VersionSpec, derived_from: Sequence[DatasetVersion] = (),
                             actor: Any) -> tuple[DatasetVersion, bool]:
    """Register a version; the same digest twice returns the existing version and writes nothing."""
    with transaction.atomic():
        return version_register(dataset=dataset, spec=spec, derived_from=derived_from, actor=actor)



def dataset_version_derive(*, parent: DatasetVersion, child: DatasetVersion, actor: Any) -> Attestation | None:
    """Record that `child` was derived from `parent` (both already registered): a write to `child`'s team."""
    require_owner_write(actor, child.dataset.owner_team, "dataset")
    _require_readable(actor, [parent])
    with transaction.atomic():
        edge, created = edge_add(parent.node, child.node)
        if not created:
            return edge.attestation
        attestation = server_attest(
            subjects=[child.node], dependencies=[parent.node], actor=actor,
            external_parameters={"derivation": {"parent": parent.pk, "child": child.pk}},
            invocation_id=f"derivation:{parent.pk}:{child.pk}", edges=[edge], owner_team=child.dataset.owner_team)
        ledger_append(actor=actor, action="lineage.dataset_version.derived", subject=child,
                      payload={"parent": [parent.pk, parent.digest], "child": [child.pk, child.digest],
                               "attestation": attestation_ref(attestation)})
    return attestation

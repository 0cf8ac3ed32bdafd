"""Every write of lineage: one transaction each, with its ledger entry and its attestation.

Every link added to the graph is covered by an attestation: an in-toto Statement v1 with an
SLSA-provenance-v1-shaped predicate, signed by the server's attestation key into a DSSE
envelope (or, for envelopes a pipeline submits, signed by the pipeline's own key). The
envelope bytes are stored exactly as produced or received.

Governance calls `lineage_record_model_version` and `lineage_record_deployment`; it never
touches these models directly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import dsse, jcs
from audit.keys import active_key
from audit.ledger import actor_label, format_time, ledger_append
from audit.models import SigningKey
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from lineage import attestations as statements
from lineage import graph
from lineage.models import (
    Attestation,
    AttestationSubject,
    Dataset,
    DatasetVersion,
    LineageEdge,
    LineageNode,
    PipelineKey,
    TrainingRun,
)
from lineage.selectors import attestations_for_subject, attestations_upstream, lineage_graph  # noqa: F401 (re-export)

Kind = LineageNode.Kind

# The links the graph may hold (source kind, target kind).
ALLOWED_LINKS: frozenset[tuple[str, str]] = frozenset({
    (Kind.DATASET_VERSION, Kind.DATASET_VERSION),
    (Kind.DATASET_VERSION, Kind.RUN),
    (Kind.RUN, Kind.MODEL_VERSION),
    (Kind.RUN, Kind.ARTIFACT),
    (Kind.RUN, Kind.DATASET_VERSION),
    (Kind.ARTIFACT, Kind.MODEL_VERSION),
    (Kind.MODEL_VERSION, Kind.DEPLOYMENT),
})

DATASET_VERSION_REF = "lineage.datasetversion"
RUN_REF = "lineage.trainingrun"
ARTIFACT_REF = "lineage.artifact"
MAX_MANIFEST_FILES = 100_000


def builder_id() -> str:
    """SLSA `runDetails.builder.id` for statements the server makes."""
    return f"https://{settings.LEDGER_ORIGIN}/lineage"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _require_sha256(value: str, field: str) -> str:
    if not statements.is_sha256_hex(value):
        raise InvalidInput(f"{field} must be a lowercase hex SHA-256 (64 characters).", code="invalid_digest",
                           extra={"field": field})
    return value


def _iso(moment: datetime | None) -> str | None:
    return format_time(moment) if moment else None


def node_name(node: LineageNode) -> str:
    """The subject / dependency name used in statements: `<kind>:<ref_type>:<ref_id>`."""
    return f"{node.kind}:{node.ref_type}:{node.ref_id}"


def _descriptor(node: LineageNode) -> dict[str, Any]:
    uri = None
    if node.kind == Kind.DATASET_VERSION:
        uri = DatasetVersion.objects.filter(node=node).values_list("location_uri", flat=True).first()
    return statements.resource(node_name(node), node.digest, uri)


# --- Nodes, edges, server attestations -------------------------------------------------------

def _node_get_or_create(*, kind: str, ref_type: str, ref_id: str, digest: str,
                        label: str) -> tuple[LineageNode, bool]:
    node = LineageNode.objects.filter(kind=kind, ref_type=ref_type, ref_id=ref_id).first()
    if node is not None:
        if node.digest != digest:
            raise Conflict(f"{kind} {ref_type}:{ref_id} is already registered with another digest.",
                           code="lineage_node_digest_conflict",
                           extra={"kind": kind, "ref": [ref_type, ref_id], "registered_digest": node.digest})
        return node, False
    return LineageNode.objects.create(kind=kind, ref_type=ref_type, ref_id=ref_id, digest=digest,
                                      label=label[:300]), True


def _edge_add(source: LineageNode, target: LineageNode) -> tuple[LineageEdge, bool]:
    """Add `source -> target` unless present; refuse links of the wrong kinds and cycles."""
    if (source.kind, target.kind) not in ALLOWED_LINKS:
        raise InvalidInput(f"A {source.kind} cannot link to a {target.kind}.", code="lineage_link_not_allowed",
                           extra={"source": source.kind, "target": target.kind})
    graph.lock_edges()
    existing = LineageEdge.objects.filter(source=source, target=target).first()
    if existing is not None:
        return existing, False
    if graph.reaches(from_id=target.pk, to_id=source.pk):
        raise Conflict("This link would make the lineage graph cyclic.", code="lineage_cycle",
                       extra={"source": source.pk, "target": target.pk})
    return LineageEdge.objects.create(source=source, target=target), True


def _server_attest(*, subjects: Sequence[LineageNode], dependencies: Sequence[LineageNode], actor: Any,
                   external_parameters: Mapping[str, Any], internal_parameters: Mapping[str, Any] | None = None,
                   invocation_id: str, started_on: datetime | None = None, finished_on: datetime | None = None,
                   edges: Iterable[LineageEdge] = ()) -> Attestation:
    """Sign a Statement about `subjects` made from `dependencies`, store it and link it to `edges`."""
    key = active_key(SigningKey.Purpose.ATTESTATION)
    label = actor_label(actor)
    statement = statements.build_statement(
        subjects=[(node_name(node), node.digest) for node in subjects],
        build_type=statements.BUILD_TYPE_LINEAGE,
        external_parameters=external_parameters,
        internal_parameters=internal_parameters or {},
        resolved_dependencies=[_descriptor(node) for node in dependencies],
        builder_id=builder_id(), invocation_id=invocation_id,
        started_on=_iso(started_on), finished_on=_iso(finished_on),
        byproducts=[{"name": "recorded_by", "content": base64.b64encode(label.encode()).decode("ascii"),
                     "mediaType": "text/plain", "annotations": {"actor": label}}],
    )
    payload = statements.statement_bytes(statement)
    envelope = dsse.sign_envelope(payload, payload_type=dsse.PAYLOAD_TYPE_IN_TOTO, private_key=key.private_key,
                                  keyid=key.record.dsse_keyid)
    envelope_bytes = json.dumps(envelope, separators=(",", ":")).encode("ascii")
    attestation = Attestation.objects.create(
        envelope=envelope_bytes, envelope_sha256=sha256_hex(envelope_bytes), payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
        predicate_type=statements.PREDICATE_TYPE_SLSA_PROVENANCE, statement=statement, keyid=key.record.dsse_keyid,
        origin=Attestation.Origin.SERVER, server_key=key.record, submitted_by=label,
    )
    AttestationSubject.objects.bulk_create([
        AttestationSubject(attestation=attestation, node=node, name=node_name(node), sha256=node.digest)
        for node in {node.pk: node for node in subjects}.values()
    ])
    edge_ids = [edge.pk for edge in edges]
    if edge_ids:
        LineageEdge.objects.filter(pk__in=edge_ids).update(attestation=attestation)
    return attestation


def _attestation_ref(attestation: Attestation | None) -> dict[str, Any] | None:
    if attestation is None:
        return None
    return {"id": attestation.pk, "envelope_sha256": attestation.envelope_sha256, "keyid": attestation.keyid}


# --- Datasets ---------------------------------------------------------------------------------

def dataset_create(*, namespace: str, name: str, description: str = "", actor: Any) -> tuple[Dataset, bool]:
    """Create the dataset `namespace/name`, or return the existing one (idempotent)."""
    namespace, name = namespace.strip(), name.strip()
    if not name:
        raise InvalidInput("A dataset needs a name.", code="invalid_input", extra={"field": "name"})
    with transaction.atomic():
        existing = Dataset.objects.filter(namespace=namespace, name=name).first()
        if existing is not None:
            return existing, False
        dataset = Dataset.objects.create(namespace=namespace, name=name, description=description,
                                         created_by=actor_label(actor))
        ledger_append(actor=actor, action="lineage.dataset.created", subject=dataset,
                      payload={"namespace": namespace, "name": name, "description": description})
    return dataset, True


def manifest_digest(manifest: Mapping[str, str]) -> str:
    """Digest of a folder: SHA-256 of the RFC 8785 bytes of {relative path: sha256 hex}."""
    if not isinstance(manifest, Mapping) or not manifest:
        raise InvalidInput("manifest must be a non-empty object of path -> sha256.", code="invalid_manifest",
                           extra={"field": "manifest"})
    if len(manifest) > MAX_MANIFEST_FILES:
        raise InvalidInput(f"A manifest may list at most {MAX_MANIFEST_FILES} files.", code="invalid_manifest",
                           extra={"field": "manifest"})
    for path, digest in manifest.items():
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            raise InvalidInput("Manifest paths must be relative, without '..'.", code="invalid_manifest",
                               extra={"field": "manifest", "path": str(path)[:200]})
        _require_sha256(digest, f"manifest[{path!r}]")
    return sha256_hex(jcs.canonicalize(dict(manifest)))


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
        digest, kind = _require_sha256(spec.digest, "digest"), DatasetVersion.DigestKind.CONTENT
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


def _version_register(*, dataset: Dataset, spec: VersionSpec, derived_from: Sequence[DatasetVersion],
                      actor: Any) -> tuple[DatasetVersion, bool]:
    """The body of `dataset_version_register`, for callers that already hold a transaction."""
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
                                      ref_id=f"pending:{digest}:{dataset.pk}", digest=digest, label=label[:300])
    version.node = node
    version.save()
    LineageNode.objects.filter(pk=node.pk).update(ref_id=str(version.pk))
    node.ref_id = str(version.pk)
    edges = [_edge_add(parent.node, node)[0] for parent in derived_from]
    attestation = _server_attest(
        subjects=[node], dependencies=[parent.node for parent in derived_from], actor=actor,
        external_parameters={"dataset": {"namespace": dataset.namespace, "name": dataset.name},
                             "version": version.version, "location_uri": version.location_uri,
                             "digest_kind": digest_kind, "schema": schema, "row_count": version.row_count},
        invocation_id=f"dataset_version:{version.pk}", edges=edges,
    )
    ledger_append(actor=actor, action="lineage.dataset_version.registered", subject=version, payload={
        "dataset": dataset.pk, "digest": digest, "digest_kind": digest_kind, "location_uri": version.location_uri,
        "version": version.version, "schema": schema, "row_count": version.row_count,
        "time_range": [_iso(version.time_range_start), _iso(version.time_range_end)],
        "sensitive_data_notes": version.sensitive_data_notes, "node": node.pk,
        "derived_from": [parent.pk for parent in derived_from], "attestation": _attestation_ref(attestation),
    })
    return version, True


def dataset_version_register(*, dataset: Dataset, spec: VersionSpec, derived_from: Sequence[DatasetVersion] = (),
                             actor: Any) -> tuple[DatasetVersion, bool]:
    """Register a version; the same digest twice returns the existing version and writes nothing."""
    with transaction.atomic():
        return _version_register(dataset=dataset, spec=spec, derived_from=derived_from, actor=actor)


# --- Training runs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ArtifactSpec:
    """An output file of a run that is not (yet) a registered model version."""

    uri: str
    digest: str
    label: str = ""


def _artifact_node(spec: ArtifactSpec) -> LineageNode:
    digest = _require_sha256(spec.digest, "outputs.artifacts.digest")
    node, _ = _node_get_or_create(kind=Kind.ARTIFACT, ref_type=ARTIFACT_REF, ref_id=digest, digest=digest,
                                  label=spec.label or spec.uri)
    return node


def run_identity_digest(*, job_namespace: str, job_name: str, external_run_id: str | None, code_repository: str,
                        code_commit: str, parameters: Mapping[str, Any], environment: Mapping[str, Any],
                        started_at: datetime | None, created_at: datetime) -> str:
    """A run has no content; its node digest is SHA-256 of the JCS of what identified it when recorded."""
    return sha256_hex(jcs.canonicalize({
        "job": {"namespace": job_namespace, "name": job_name}, "external_run_id": external_run_id,
        "code": {"repository": code_repository, "commit": code_commit}, "parameters": dict(parameters),
        "environment": dict(environment), "started_at": _iso(started_at), "recorded_at": _iso(created_at),
    }))


def _check_json_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{field} must be a JSON object.", code="invalid_input", extra={"field": field})
    try:
        jcs.canonicalize(dict(value))
    except (jcs.CanonicalizationError, TypeError, ValueError):
        raise InvalidInput(f"{field} must hold plain JSON values.", code="invalid_input", extra={"field": field})
    return dict(value)


def _run_create(*, job_name: str, job_namespace: str, external_run_id: str | None, code_repository: str,
                code_commit: str, parameters: Mapping[str, Any], environment: Mapping[str, Any],
                started_at: datetime | None, ended_at: datetime | None, status: str, actor: Any) -> TrainingRun:
    if not job_name:
        raise InvalidInput("A run needs a job name.", code="invalid_input", extra={"field": "job_name"})
    if status not in TrainingRun.Status.values:
        raise InvalidInput(f"status must be one of {', '.join(TrainingRun.Status.values)}.", code="invalid_input",
                           extra={"field": "status"})
    if started_at and ended_at and ended_at < started_at:
        raise InvalidInput("ended_at is before started_at.", code="invalid_time_range", extra={"field": "ended_at"})
    parameters = _check_json_object(parameters, "parameters")
    environment = _check_json_object(environment, "environment")
    now = timezone.now()
    digest = run_identity_digest(job_namespace=job_namespace, job_name=job_name, external_run_id=external_run_id,
                                 code_repository=code_repository, code_commit=code_commit, parameters=parameters,
                                 environment=environment, started_at=started_at, created_at=now)
    node = LineageNode.objects.create(kind=Kind.RUN, ref_type=RUN_REF, ref_id=f"pending:{digest}", digest=digest,
                                      label=f"{job_namespace}/{job_name}"[:300] if job_namespace else job_name[:300])
    run = TrainingRun.objects.create(
        job_namespace=job_namespace, job_name=job_name, external_run_id=external_run_id,
        code_repository=code_repository, code_commit=code_commit, parameters=parameters, environment=environment,
        started_at=started_at, ended_at=ended_at, status=status, actor=actor_label(actor), node=node)
    LineageNode.objects.filter(pk=node.pk).update(ref_id=str(run.pk))
    node.ref_id = str(run.pk)
    return run


def _run_build(run: TrainingRun) -> tuple[dict[str, Any], dict[str, Any]]:
    """(externalParameters, internalParameters) describing how a run was made."""
    external = {"job": {"namespace": run.job_namespace, "name": run.job_name},
                "source": {"repository": run.code_repository, "commit": run.code_commit},
                "parameters": run.parameters}
    if run.external_run_id:
        external["openlineage_run_id"] = run.external_run_id
    return external, {"environment": run.environment}


def _run_link(*, run: TrainingRun, inputs: Sequence[LineageNode], outputs: Sequence[LineageNode], actor: Any,
              action: str, extra_payload: Mapping[str, Any] | None = None) -> Attestation | None:
    """Add input -> run -> output edges, attest the new ones, and write the ledger entry."""
    new_edges: list[LineageEdge] = []
    for node in inputs:
        edge, created = _edge_add(node, run.node)
        if created:
            new_edges.append(edge)
    for node in outputs:
        edge, created = _edge_add(run.node, node)
        if created:
            new_edges.append(edge)
    if not new_edges and action != "lineage.run.recorded":
        return None  # nothing new: no attestation, no ledger entry
    attestation = None
    if new_edges or action == "lineage.run.recorded":
        external, internal = _run_build(run)
        all_inputs = list(LineageNode.objects.filter(out_edges__target=run.node).order_by("pk"))
        attestation = _server_attest(
            subjects=[run.node, *outputs], dependencies=all_inputs, actor=actor,
            external_parameters=external, internal_parameters=internal, invocation_id=f"run:{run.pk}",
            started_on=run.started_at, finished_on=run.ended_at, edges=new_edges)
    ledger_append(actor=actor, action=action, subject=run, payload={
        "job": {"namespace": run.job_namespace, "name": run.job_name}, "external_run_id": run.external_run_id,
        "code": {"repository": run.code_repository, "commit": run.code_commit}, "parameters": run.parameters,
        "environment": run.environment, "started_at": _iso(run.started_at), "ended_at": _iso(run.ended_at),
        "status": run.status, "node": run.node_id,
        "inputs": [[node.pk, node.digest] for node in inputs], "outputs": [[node.pk, node.digest] for node in outputs],
        "new_edges": [[edge.source_id, edge.target_id] for edge in new_edges],
        "attestation": _attestation_ref(attestation), **(extra_payload or {}),
    })
    return attestation


def training_run_record(*, job_name: str, job_namespace: str = "", code_repository: str = "", code_commit: str = "",
                        parameters: Mapping[str, Any] | None = None, environment: Mapping[str, Any] | None = None,
                        started_at: datetime | None = None, ended_at: datetime | None = None,
                        status: str = TrainingRun.Status.COMPLETED, inputs: Sequence[DatasetVersion] = (),
                        output_versions: Sequence[DatasetVersion] = (), artifacts: Sequence[ArtifactSpec] = (),
                        actor: Any) -> TrainingRun:
    """Record a run with its inputs and outputs, attested and in the ledger, in one transaction."""
    with transaction.atomic():
        run = _run_create(job_name=job_name, job_namespace=job_namespace, external_run_id=None,
                          code_repository=code_repository, code_commit=code_commit, parameters=parameters or {},
                          environment=environment or {}, started_at=started_at, ended_at=ended_at, status=status,
                          actor=actor)
        outputs = [version.node for version in output_versions] + [_artifact_node(spec) for spec in artifacts]
        _run_link(run=run, inputs=[version.node for version in inputs], outputs=outputs, actor=actor,
                  action="lineage.run.recorded")
    return run


def training_run_add_outputs(*, run: TrainingRun, output_versions: Sequence[DatasetVersion] = (),
                             artifacts: Sequence[ArtifactSpec] = (), actor: Any) -> Attestation | None:
    """Link more outputs to a run (attested, in the ledger); refuses links that would close a cycle."""
    with transaction.atomic():
        outputs = [version.node for version in output_versions] + [_artifact_node(spec) for spec in artifacts]
        return _run_link(run=run, inputs=[], outputs=outputs, actor=actor, action="lineage.run.outputs_added")


def dataset_version_derive(*, parent: DatasetVersion, child: DatasetVersion, actor: Any) -> Attestation | None:
    """Record that `child` was derived from `parent` (both already registered)."""
    with transaction.atomic():
        edge, created = _edge_add(parent.node, child.node)
        if not created:
            return edge.attestation
        attestation = _server_attest(
            subjects=[child.node], dependencies=[parent.node], actor=actor,
            external_parameters={"derivation": {"parent": parent.pk, "child": child.pk}},
            invocation_id=f"derivation:{parent.pk}:{child.pk}", edges=[edge])
        ledger_append(actor=actor, action="lineage.dataset_version.derived", subject=child,
                      payload={"parent": [parent.pk, parent.digest], "child": [child.pk, child.digest],
                               "attestation": _attestation_ref(attestation)})
    return attestation


# --- Model versions and deployments (called by governance) ------------------------------------

def _subject_pair(subject: tuple[str, str], field: str) -> tuple[str, str]:
    try:
        ref_type, ref_id = subject
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a (type, id) pair.", code="invalid_input", extra={"field": field})
    ref_type, ref_id = str(ref_type), str(ref_id)
    if not ref_type or not ref_id:
        raise InvalidInput(f"{field} must name a type and an id.", code="invalid_input", extra={"field": field})
    return ref_type, ref_id


def lineage_record_model_version(*, run_id: int | None, subject: tuple[str, str], digest: str, label: str,
                                 actor: Any) -> LineageNode:
    """Node for a model version (+ edge run -> version), attested with SLSA provenance of the run.

    Idempotent: recording the same version (and run link) again returns the node and writes nothing.
    """
    ref_type, ref_id = _subject_pair(subject, "subject")
    digest = _require_sha256(digest, "digest")
    with transaction.atomic():
        run = None
        if run_id is not None:
            run = TrainingRun.objects.select_related("node").filter(pk=run_id).first()
            if run is None:
                raise NotFound(f"No training run {run_id}.", code="training_run_not_found", extra={"run_id": run_id})
        node, created = _node_get_or_create(kind=Kind.MODEL_VERSION, ref_type=ref_type, ref_id=ref_id,
                                            digest=digest, label=label)
        new_edges: list[LineageEdge] = []
        if run is not None:
            edge, edge_created = _edge_add(run.node, node)
            if edge_created:
                new_edges.append(edge)
        if not created and not new_edges:
            return node
        if run is not None:
            external, internal = _run_build(run)
            dependencies = list(LineageNode.objects.filter(out_edges__target=run.node).order_by("pk"))
            started_on, finished_on = run.started_at, run.ended_at
        else:
            external, internal, dependencies, started_on, finished_on = {}, {}, [], None, None
        external = {**external, "model_version": {"type": ref_type, "id": ref_id, "label": label}}
        attestation = _server_attest(
            subjects=[node], dependencies=dependencies, actor=actor, external_parameters=external,
            internal_parameters=internal,
            invocation_id=f"run:{run.pk}" if run else f"model_version:{ref_type}:{ref_id}",
            started_on=started_on, finished_on=finished_on, edges=new_edges)
        ledger_append(actor=actor, action="lineage.model_version.recorded", subject=node, payload={
            "model_version": {"type": ref_type, "id": ref_id}, "digest": digest, "label": label,
            "run": run.pk if run else None, "inputs": [[dep.pk, dep.digest] for dep in dependencies],
            "attestation": _attestation_ref(attestation),
        })
    return node


def deployment_digest(*, deployment: tuple[str, str], model_version: LineageNode) -> str:
    """A deployment has no bytes of its own: SHA-256 of the JCS of its ref and the deployed version's digest."""
    return sha256_hex(jcs.canonicalize({
        "deployment": {"type": deployment[0], "id": deployment[1]},
        "model_version": {"type": model_version.ref_type, "id": model_version.ref_id, "sha256": model_version.digest},
    }))


def lineage_record_deployment(*, model_version_subject: tuple[str, str], deployment_subject: tuple[str, str],
                              label: str, actor: Any) -> LineageNode:
    """Node for a deployment + edge version -> deployment, attested; idempotent per deployment."""
    version_ref = _subject_pair(model_version_subject, "model_version_subject")
    deployment_ref = _subject_pair(deployment_subject, "deployment_subject")
    with transaction.atomic():
        version = LineageNode.objects.filter(kind=Kind.MODEL_VERSION, ref_type=version_ref[0],
                                             ref_id=version_ref[1]).first()
        if version is None:
            raise NotFound("The model version has no lineage node; record it first.", code="lineage_node_not_found",
                           extra={"model_version": list(version_ref)})
        digest = deployment_digest(deployment=deployment_ref, model_version=version)
        node, created = _node_get_or_create(kind=Kind.DEPLOYMENT, ref_type=deployment_ref[0],
                                            ref_id=deployment_ref[1], digest=digest, label=label)
        edge, edge_created = _edge_add(version, node)
        if not created and not edge_created:
            return node
        attestation = _server_attest(
            subjects=[node], dependencies=[version], actor=actor,
            external_parameters={"deployment": {"type": deployment_ref[0], "id": deployment_ref[1], "label": label},
                                 "model_version": {"type": version.ref_type, "id": version.ref_id}},
            invocation_id=f"deployment:{deployment_ref[0]}:{deployment_ref[1]}", edges=[edge])
        ledger_append(actor=actor, action="lineage.deployment.recorded", subject=node, payload={
            "deployment": list(deployment_ref), "model_version": list(version_ref), "digest": digest,
            "label": label, "attestation": _attestation_ref(attestation),
        })
    return node


# --- Pipeline keys ----------------------------------------------------------------------------

def parse_public_key(text: str) -> bytes:
    """Raw 32-byte Ed25519 public key from a PEM (SubjectPublicKeyInfo) or base64 of the raw bytes."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("public_key is required.", code="pipeline_key_invalid", extra={"field": "public_key"})
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError, TypeError):
            raise InvalidInput("public_key is not a valid PEM public key.", code="pipeline_key_invalid",
                               extra={"field": "public_key"})
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidInput("Only Ed25519 keys are accepted.", code="pipeline_key_unsupported",
                               extra={"field": "public_key"})
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("public_key is neither PEM nor base64.", code="pipeline_key_invalid",
                           extra={"field": "public_key"})
    if len(raw) != dsse.ED25519_PUBLIC_KEY_BYTES:
        raise InvalidInput("A raw Ed25519 public key has 32 bytes.", code="pipeline_key_invalid",
                           extra={"field": "public_key"})
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise InvalidInput("public_key is not an Ed25519 key.", code="pipeline_key_invalid",
                           extra={"field": "public_key"})
    return raw


def pipeline_key_register(*, owner: Any, public_key: str, name: str = "") -> PipelineKey:
    """Register a service account's own Ed25519 key for the envelopes it signs."""
    raw = parse_public_key(public_key)
    keyid = dsse.envelope_keyid(raw)
    with transaction.atomic():
        if PipelineKey.objects.filter(keyid=keyid).exists() or SigningKey.objects.filter(public_key=raw).exists():
            raise Conflict("This public key is already registered.", code="pipeline_key_exists",
                           extra={"keyid": keyid})
        key = PipelineKey.objects.create(owner=owner, name=name[:200], public_key=raw, keyid=keyid)
        ledger_append(actor=owner, action="lineage.pipeline_key.registered", subject=key,
                      payload={"keyid": keyid, "owner": actor_label(owner), "name": key.name,
                               "public_key": base64.b64encode(raw).decode("ascii")})
    return key


def pipeline_key_revoke(*, key: PipelineKey, by: Any) -> PipelineKey:
    """Revoke a key: envelopes it signs are refused from now on; those stored before stay as they are."""
    with transaction.atomic():
        key = PipelineKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            raise Conflict("This key is already revoked.", code="pipeline_key_already_revoked",
                           extra={"keyid": key.keyid})
        key.revoked_at = timezone.now()
        key.revoked_by = actor_label(by)
        key.save(update_fields=["revoked_at", "revoked_by"])
        ledger_append(actor=by, action="lineage.pipeline_key.revoked", subject=key,
                      payload={"keyid": key.keyid, "revoked_at": _iso(key.revoked_at)})
    return key


# --- Submitted attestations -------------------------------------------------------------------

MAX_ENVELOPE_BYTES = 1024 * 1024


def _refuse(code: str, message: str, **extra: Any) -> InvalidInput:
    status = 422 if code == "attestation_subject_mismatch" else 400
    return InvalidInput(message, code=code, extra=extra, status_code=status)


def _envelope_keyids(envelope_bytes: bytes) -> list[str]:
    try:
        envelope = json.loads(envelope_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _refuse("attestation_malformed", "The envelope is not UTF-8 JSON.", field="envelope")
    if not isinstance(envelope, dict):
        raise _refuse("attestation_malformed", "The envelope must be a JSON object.", field="envelope")
    for field, kind in (("payloadType", str), ("payload", str), ("signatures", list)):
        if not isinstance(envelope.get(field), kind):
            raise _refuse("attestation_malformed", f"The envelope's {field} is missing or of the wrong type.",
                          field=field)
    keyids: list[str] = []
    for index, signature in enumerate(envelope["signatures"]):
        if not isinstance(signature, dict) or not isinstance(signature.get("sig"), str):
            raise _refuse("attestation_malformed", "Each signature needs a base64 sig.", field=f"signatures[{index}]")
        keyid = signature.get("keyid")
        if not isinstance(keyid, str) or not keyid:
            raise _refuse("attestation_malformed", "Each signature must carry its keyid.",
                          field=f"signatures[{index}].keyid")
        keyids.append(keyid)
    if not keyids:
        raise _refuse("attestation_malformed", "The envelope has no signatures.", field="signatures")
    if envelope["payloadType"] != dsse.PAYLOAD_TYPE_IN_TOTO:
        raise _refuse("attestation_payload_type_unsupported",
                      f"payloadType must be {dsse.PAYLOAD_TYPE_IN_TOTO}.", field="payloadType")
    return keyids


def attestation_submit(*, envelope_bytes: bytes, submitted_by: Any) -> Attestation:
    """Verify a pipeline's envelope, check its subjects, and store it byte for byte with its ledger entry.

    Trusted keys: the submitter's own non-revoked pipeline keys and the server's attestation keys.
    Any refusal raises before anything is written.
    """
    if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
        raise InvalidInput("The envelope is too large.", code="payload_too_large", status_code=413)
    keyids = _envelope_keyids(envelope_bytes)
    own_keys = {key.keyid: key for key in PipelineKey.objects.filter(owner=submitted_by, keyid__in=keyids)}
    server_keys = {key.dsse_keyid: key for key in SigningKey.objects.filter(
        purpose=SigningKey.Purpose.ATTESTATION, dsse_keyid__in=keyids)}
    trusted: dict[str, Ed25519PublicKey] = {}
    for keyid, pipeline_key in own_keys.items():
        if pipeline_key.revoked_at is None:
            trusted[keyid] = Ed25519PublicKey.from_public_bytes(bytes(pipeline_key.public_key))
    for keyid, server_key in server_keys.items():
        trusted[keyid] = Ed25519PublicKey.from_public_bytes(bytes(server_key.public_key))
    if not trusted:
        if own_keys:
            raise _refuse("attestation_key_revoked", "The signing key has been revoked.", keyids=sorted(own_keys))
        raise _refuse("attestation_key_unknown", "No signature is by a key registered to this account.",
                      keyids=keyids[:10])
    try:
        _payload_type, payload = dsse.verify_envelope(envelope_bytes, trusted)
    except dsse.DSSEError as exc:
        if str(exc).startswith("invalid signature"):
            raise _refuse("attestation_signature_invalid", "A signature does not verify.", detail=str(exc))
        raise _refuse("attestation_malformed", f"The envelope is malformed: {exc}.", field="envelope")
    try:
        statement = statements.parse_statement(payload)
    except statements.StatementError as exc:
        raise _refuse("attestation_malformed", f"The Statement is invalid: {exc}", field=exc.field)
    subjects = statements.subject_digests(statement)
    wanted = {digest for _name, digest in subjects}
    nodes_by_digest: dict[str, list[LineageNode]] = {}
    for node in LineageNode.objects.filter(digest__in=wanted).exclude(kind=Kind.RUN):
        nodes_by_digest.setdefault(node.digest, []).append(node)
    missing = sorted(wanted - set(nodes_by_digest))
    if missing:
        raise _refuse("attestation_subject_mismatch", "Subject digests do not match any registered object.",
                      unmatched_sha256=missing[:20])
    signer_keyid = next(keyid for keyid in keyids if keyid in trusted)
    label = actor_label(submitted_by)
    with transaction.atomic():
        signer = own_keys.get(signer_keyid)
        if signer is not None and not PipelineKey.objects.select_for_update().filter(
                pk=signer.pk, revoked_at__isnull=True).exists():
            raise _refuse("attestation_key_revoked", "The signing key has been revoked.", keyids=[signer_keyid])
        attestation = Attestation.objects.create(
            envelope=envelope_bytes, envelope_sha256=sha256_hex(envelope_bytes), payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
            predicate_type=str(statement["predicateType"])[:300], statement=statement, keyid=signer_keyid,
            origin=Attestation.Origin.PIPELINE, pipeline_key=own_keys.get(signer_keyid),
            server_key=server_keys.get(signer_keyid), submitted_by=label,
        )
        subject_nodes = [node for digest in sorted(wanted) for node in nodes_by_digest[digest]]
        names = dict((digest, name) for name, digest in subjects)
        AttestationSubject.objects.bulk_create([
            AttestationSubject(attestation=attestation, node=node, name=names[node.digest][:500], sha256=node.digest)
            for node in subject_nodes
        ])
        # Dependencies we know become edges into the subjects, where such a link is allowed.
        new_edges: list[LineageEdge] = []
        dependency_nodes = list(LineageNode.objects.filter(digest__in=statements.dependency_digests(statement))
                                .exclude(kind=Kind.RUN))
        for dependency in dependency_nodes:
            for node in subject_nodes:
                if dependency.pk == node.pk or (dependency.kind, node.kind) not in ALLOWED_LINKS:
                    continue
                edge, created = _edge_add(dependency, node)
                if created:
                    new_edges.append(edge)
        if new_edges:
            LineageEdge.objects.filter(pk__in=[edge.pk for edge in new_edges]).update(attestation=attestation)
        ledger_append(actor=submitted_by, action="lineage.attestation.submitted", subject=attestation, payload={
            "envelope_sha256": attestation.envelope_sha256, "keyid": signer_keyid,
            "predicate_type": attestation.predicate_type,
            "subjects": [[node.pk, node.digest] for node in subject_nodes],
            "new_edges": [[edge.source_id, edge.target_id] for edge in new_edges],
        })
    return attestation


def ensure_can_revoke(*, key: PipelineKey, user: Any) -> None:
    """Owners revoke their own keys; anyone else needs `lineage.change_pipelinekey`."""
    if key.owner_id != getattr(user, "pk", None) and not user.has_perm("lineage.change_pipelinekey"):
        raise Forbidden("Only the key's owner may revoke it.", code="permission_denied")

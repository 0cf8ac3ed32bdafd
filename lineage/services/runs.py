"""Training runs: recording a run with its inputs and outputs, and adding outputs later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import jcs
from audit.ledger import actor_label, ledger_append
from core.errors import InvalidInput, NotFound
from lineage import visibility
from lineage.models import (
    ARTIFACT_REF,
    RUN_REF,
    SHARED,
    Attestation,
    DatasetVersion,
    LineageEdge,
    LineageNode,
    TrainingRun,
)
from lineage.services.attestations import attestation_ref, server_attest
from lineage.services.graph import (
    Kind,
    acting_owner,
    edge_add,
    iso_time,
    node_get_or_create,
    require_owner_write,
    require_sha256,
    sha256_hex,
)


@dataclass(frozen=True)
class ArtifactSpec:
    """An output file of a run that is not (yet) a registered model version."""

    uri: str
    digest: str
    label: str = ""


def artifact_node(spec: ArtifactSpec, owner_team: str = SHARED) -> LineageNode:
    """The artifact node of a team (shared ones are named by digest alone): another team's file of the same
    bytes is another node, so recording one neither touches nor reveals theirs."""
    digest = require_sha256(spec.digest, "outputs.artifacts.digest")
    ref_id = digest if owner_team == SHARED else f"{owner_team}:{digest}"
    node, _ = node_get_or_create(kind=Kind.ARTIFACT, ref_type=ARTIFACT_REF, ref_id=ref_id, digest=digest,
                                  label=spec.label or spec.uri, owner_team=owner_team)
    return node


def _check_io(actor: Any, inputs: Sequence[DatasetVersion], outputs: Sequence[DatasetVersion]) -> None:
    """Inputs are dependencies (anything the actor reads); outputs are written into their datasets' teams."""
    for version in inputs:
        if not visibility.may_read_owner(actor, version.dataset.owner_team):
            raise NotFound(f"No dataset version {version.pk}.", code="dataset_version_not_found",
                           extra={"dataset_version": version.pk})
    for version in outputs:
        require_owner_write(actor, version.dataset.owner_team, "dataset")


def run_identity_digest(*, job_namespace: str, job_name: str, external_run_id: str | None, code_repository: str,
                        code_commit: str, parameters: Mapping[str, Any], environment: Mapping[str, Any],
                        started_at: datetime | None, created_at: datetime) -> str:
    """A run has no content; its node digest is SHA-256 of the JCS of what identified it when recorded."""
    return sha256_hex(jcs.canonicalize({
        "job": {"namespace": job_namespace, "name": job_name}, "external_run_id": external_run_id,
        "code": {"repository": code_repository, "commit": code_commit}, "parameters": dict(parameters),
        "environment": dict(environment), "started_at": iso_time(started_at), "recorded_at": iso_time(created_at),
    }))


def _check_json_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{field} must be a JSON object.", code="invalid_input", extra={"field": field})
    try:
        jcs.canonicalize(dict(value))
    except (jcs.CanonicalizationError, TypeError, ValueError):
        raise InvalidInput(f"{field} must hold plain JSON values.", code="invalid_input", extra={"field": field})
    return dict(value)


def run_create(*, job_name: str, job_namespace: str, external_run_id: str | None, code_repository: str,
                code_commit: str, parameters: Mapping[str, Any], environment: Mapping[str, Any],
                started_at: datetime | None, ended_at: datetime | None, status: str, actor: Any,
                owner_team: str = SHARED) -> TrainingRun:
    """A run and its node, of `owner_team` (the caller decided it); no ledger entry of its own."""
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
                                      label=f"{job_namespace}/{job_name}"[:300] if job_namespace else job_name[:300],
                                      owner_team=owner_team)
    run = TrainingRun.objects.create(
        job_namespace=job_namespace, job_name=job_name, external_run_id=external_run_id,
        code_repository=code_repository, code_commit=code_commit, parameters=parameters, environment=environment,
        started_at=started_at, ended_at=ended_at, status=status, actor=actor_label(actor), owner_team=owner_team,
        node=node)
    LineageNode.objects.filter(pk=node.pk).update(ref_id=str(run.pk))
    node.ref_id = str(run.pk)
    return run


def run_build_parameters(run: TrainingRun) -> tuple[dict[str, Any], dict[str, Any]]:
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
        edge, created = edge_add(node, run.node)
        if created:
            new_edges.append(edge)
    for node in outputs:
        edge, created = edge_add(run.node, node)
        if created:
            new_edges.append(edge)
    if not new_edges and action != "lineage.run.recorded":
        return None  # nothing new: no attestation, no ledger entry
    attestation = None
    if new_edges or action == "lineage.run.recorded":
        external, internal = run_build_parameters(run)
        all_inputs = list(LineageNode.objects.filter(out_edges__target=run.node).order_by("pk"))
        attestation = server_attest(
            subjects=[run.node, *outputs], dependencies=all_inputs, actor=actor,
            external_parameters=external, internal_parameters=internal, invocation_id=f"run:{run.pk}",
            started_on=run.started_at, finished_on=run.ended_at, edges=new_edges, owner_team=run.owner_team)
    ledger_append(actor=actor, action=action, subject=run, payload={
        "job": {"namespace": run.job_namespace, "name": run.job_name}, "external_run_id": run.external_run_id,
        "code": {"repository": run.code_repository, "commit": run.code_commit}, "parameters": run.parameters,
        "environment": run.environment, "started_at": iso_time(run.started_at), "ended_at": iso_time(run.ended_at),
        "status": run.status, "node": run.node_id, "owner_team": run.owner_team,
        "inputs": [[node.pk, node.digest] for node in inputs], "outputs": [[node.pk, node.digest] for node in outputs],
        "new_edges": [[edge.source_id, edge.target_id] for edge in new_edges],
        "attestation": attestation_ref(attestation), **(extra_payload or {}),
    })
    return attestation


def training_run_record(*, job_name: str, job_namespace: str = "", code_repository: str = "", code_commit: str = "",
                        parameters: Mapping[str, Any] | None = None, environment: Mapping[str, Any] | None = None,
                        started_at: datetime | None = None, ended_at: datetime | None = None,
                        status: str = TrainingRun.Status.COMPLETED, inputs: Sequence[DatasetVersion] = (),
                        output_versions: Sequence[DatasetVersion] = (), artifacts: Sequence[ArtifactSpec] = (),
                        actor: Any, owner_team: str | None = None) -> TrainingRun:
    """Record a run of the actor's team with its inputs (anything it reads) and outputs (its team's),
    attested and in the ledger, in one transaction."""
    owner = acting_owner(actor, owner_team)
    _check_io(actor, inputs, output_versions)
    with transaction.atomic():
        run = run_create(job_name=job_name, job_namespace=job_namespace, external_run_id=None,
                          code_repository=code_repository, code_commit=code_commit, parameters=parameters or {},
                          environment=environment or {}, started_at=started_at, ended_at=ended_at, status=status,
                          actor=actor, owner_team=owner)
        outputs = [version.node for version in output_versions] + [artifact_node(spec, owner) for spec in artifacts]
        _run_link(run=run, inputs=[version.node for version in inputs], outputs=outputs, actor=actor,
                  action="lineage.run.recorded")
    return run


def training_run_add_outputs(*, run: TrainingRun, output_versions: Sequence[DatasetVersion] = (),
                             artifacts: Sequence[ArtifactSpec] = (), actor: Any) -> Attestation | None:
    """Link more outputs to a run of the actor's team (attested, in the ledger); refuses cycles."""
    require_owner_write(actor, run.owner_team, "training run")
    _check_io(actor, (), output_versions)
    with transaction.atomic():
        outputs = ([version.node for version in output_versions]
                   + [artifact_node(spec, run.owner_team) for spec in artifacts])
        return _run_link(run=run, inputs=[], outputs=outputs, actor=actor, action="lineage.run.outputs_added")

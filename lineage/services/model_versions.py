"""Model versions and deployments on the graph: governance calls these; it never touches lineage's models.

Lineage knows these records only by reference (`ref_type`, `ref_id`, e.g. `governance.modelversion`).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit import jcs
from audit.ledger import ledger_append
from core.errors import InvalidInput, NotFound
from lineage import visibility
from lineage.models import LineageEdge, LineageNode, TrainingRun
from lineage.services.attestations import attestation_ref, server_attest
from lineage.services.graph import Kind, edge_add, node_get_or_create, require_sha256, sha256_hex
from lineage.services.runs import run_build_parameters


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
    digest = require_sha256(digest, "digest")
    with transaction.atomic():
        run = None
        if run_id is not None:
            run = TrainingRun.objects.select_related("node").filter(pk=run_id).first()
            # The run is the version's dependency: any run the actor may read; another team's is not found.
            if run is None or not visibility.may_read_owner(actor, run.owner_team):
                raise NotFound(f"No training run {run_id}.", code="training_run_not_found", extra={"run_id": run_id})
        node, created = node_get_or_create(kind=Kind.MODEL_VERSION, ref_type=ref_type, ref_id=ref_id,
                                            digest=digest, label=label)
        new_edges: list[LineageEdge] = []
        if run is not None:
            edge, edge_created = edge_add(run.node, node)
            if edge_created:
                new_edges.append(edge)
        if not created and not new_edges:
            return node
        if run is not None:
            external, internal = run_build_parameters(run)
            dependencies = list(LineageNode.objects.filter(out_edges__target=run.node).order_by("pk"))
            started_on, finished_on = run.started_at, run.ended_at
        else:
            external, internal, dependencies, started_on, finished_on = {}, {}, [], None, None
        external = {**external, "model_version": {"type": ref_type, "id": ref_id, "label": label}}
        attestation = server_attest(
            subjects=[node], dependencies=dependencies, actor=actor, external_parameters=external,
            internal_parameters=internal,
            invocation_id=f"run:{run.pk}" if run else f"model_version:{ref_type}:{ref_id}",
            started_on=started_on, finished_on=finished_on, edges=new_edges)
        ledger_append(actor=actor, action="lineage.model_version.recorded", subject=node, payload={
            "model_version": {"type": ref_type, "id": ref_id}, "digest": digest, "label": label,
            "run": run.pk if run else None, "inputs": [[dep.pk, dep.digest] for dep in dependencies],
            "attestation": attestation_ref(attestation),
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
        node, created = node_get_or_create(kind=Kind.DEPLOYMENT, ref_type=deployment_ref[0],
                                            ref_id=deployment_ref[1], digest=digest, label=label)
        edge, edge_created = edge_add(version, node)
        if not created and not edge_created:
            return node
        attestation = server_attest(
            subjects=[node], dependencies=[version], actor=actor,
            external_parameters={"deployment": {"type": deployment_ref[0], "id": deployment_ref[1], "label": label},
                                 "model_version": {"type": version.ref_type, "id": version.ref_id}},
            invocation_id=f"deployment:{deployment_ref[0]}:{deployment_ref[1]}", edges=[edge])
        ledger_append(actor=actor, action="lineage.deployment.recorded", subject=node, payload={
            "deployment": list(deployment_ref), "model_version": list(version_ref), "digest": digest,
            "label": label, "attestation": attestation_ref(attestation),
        })
    return node

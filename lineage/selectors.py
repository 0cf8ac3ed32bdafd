"""Reads of lineage: graph queries, attestations per subject, and permission-filtered lists.

Reads that can reach a node naming a governed record (a model version, a deployment) take the
`user` they answer for and pass it through `lineage.visibility`: what that user may not see is
not found, and is left out of lists and graphs. Trusted in-process callers pass
`visibility.UNRESTRICTED`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db.models import Q, QuerySet

from audit import dsse
from audit.models import SigningKey
from core.errors import InvalidInput, NotFound
from lineage import attestations as statements
from lineage import graph, visibility
from lineage.models import (
    DATASET_VERSION_REF,
    RUN_REF,
    Attestation,
    Dataset,
    DatasetVersion,
    LineageNode,
    PipelineKey,
    TrainingRun,
)

VIEW_PERMISSION = "lineage.view_lineagenode"
_CHUNK = 500


def can_view_lineage(user: Any) -> bool:
    """Deny by default: an active, authenticated user holding `lineage.view_lineagenode`."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(VIEW_PERMISSION))


# --- Nodes and graph --------------------------------------------------------------------------

def node_get(*, node_id: int, user: Any) -> LineageNode:
    node = LineageNode.objects.filter(pk=node_id).first()
    if node is None or not visibility.node_is_visible(user, node):
        raise NotFound(f"No lineage node {node_id}.", code="lineage_node_not_found", extra={"node": node_id})
    return node


def node_for_ref(*, kind: str, ref: str, user: Any) -> LineageNode:
    """Resolve `kind:id` as the graph API names nodes: `node:<pk>`, `dataset_version:<pk>`, `run:<pk>`,
    or `model_version:<ref_type>:<ref_id>` / `deployment:<ref_type>:<ref_id>` for governance records."""
    if kind == "node":
        if not ref.isdigit():
            raise InvalidInput("node ids are integers.", code="invalid_parameter", extra={"parameter": "node"})
        return node_get(node_id=int(ref), user=user)
    if kind in (LineageNode.Kind.DATASET_VERSION, LineageNode.Kind.RUN):
        ref_type = DATASET_VERSION_REF if kind == LineageNode.Kind.DATASET_VERSION else RUN_REF
        node = LineageNode.objects.filter(kind=kind, ref_type=ref_type, ref_id=ref).first()
    elif kind in LineageNode.Kind.values:
        ref_type, _, ref_id = ref.rpartition(":")
        query = visibility.visible_nodes(user, LineageNode.objects.filter(kind=kind, ref_id=ref_id))
        node = (query.filter(ref_type=ref_type) if ref_type else query).order_by("pk").first()
    else:
        raise InvalidInput(f"Unknown node kind {kind!r}.", code="invalid_parameter", extra={"parameter": "node"})
    if node is None or not visibility.node_is_visible(user, node):
        raise NotFound(f"No lineage node {kind}:{ref}.", code="lineage_node_not_found",
                       extra={"node": f"{kind}:{ref}"})
    return node


def node_document(node: LineageNode, depth: int | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {"id": node.pk, "kind": node.kind, "ref": {"type": node.ref_type, "id": node.ref_id},
                                "digest": {"sha256": node.digest}, "label": node.label}
    if depth is not None:
        document["depth"] = depth
    return document


def lineage_graph(*, node: LineageNode, direction: str, depth: int, user: Any,
                  max_nodes: int = graph.DEFAULT_MAX_NODES) -> dict[str, Any]:
    """The upstream / downstream / both-ways graph of `node` up to `depth` hops, as JSON-ready data.

    Nodes hidden from `user` are left out, and so are the edges that touch them; a hidden root is not found.
    """
    if direction not in graph.DIRECTIONS:
        raise InvalidInput("direction must be upstream, downstream or both.", code="invalid_parameter",
                           extra={"parameter": "direction"})
    if not 0 <= depth <= graph.MAX_DEPTH:
        raise InvalidInput(f"depth must be between 0 and {graph.MAX_DEPTH}.", code="invalid_parameter",
                           extra={"parameter": "depth"})
    traversal = graph.traverse(start_id=node.pk, direction=direction, depth=depth, max_nodes=max_nodes)
    traversal.rows.setdefault(node.pk, (node.kind, node.ref_type, node.ref_id, node.digest, node.label))
    hidden = visibility.hidden_node_ids(user, {node_id: row[1] for node_id, row in traversal.rows.items()})
    if node.pk in hidden:
        raise NotFound(f"No lineage node {node.pk}.", code="lineage_node_not_found", extra={"node": node.pk})
    nodes = []
    for node_id, level in sorted(traversal.depths.items(), key=lambda item: (item[1], item[0])):
        if node_id in hidden:
            continue
        kind, ref_type, ref_id, digest, label = traversal.rows[node_id]
        nodes.append({"id": node_id, "kind": kind, "ref": {"type": ref_type, "id": ref_id},
                      "digest": {"sha256": digest}, "label": label, "depth": level})
    return {
        "root": node.pk, "direction": direction, "depth": depth, "truncated": traversal.truncated,
        "nodes": nodes,
        "edges": [{"source": source, "target": target, "attestation": attestation_id}
                  for (source, target), attestation_id in sorted(traversal.edges.items())
                  if source not in hidden and target not in hidden],
    }


# --- Attestations -----------------------------------------------------------------------------

def attestation_list(*, user: Any) -> QuerySet[Attestation]:
    """Every attestation `user` may see, newest first."""
    return visibility.visible_attestations(user, Attestation.objects.order_by("-pk"))


def attestation_get(*, attestation_id: int, user: Any) -> Attestation:
    attestation = visibility.visible_attestations(user, Attestation.objects.filter(pk=attestation_id)).first()
    if attestation is None:
        raise NotFound(f"No attestation {attestation_id}.", code="attestation_not_found",
                       extra={"attestation": attestation_id})
    return attestation


def _attestations_for_nodes(node_ids: list[int], user: Any) -> list[Attestation]:
    if not node_ids:
        return []
    found: dict[int, Attestation] = {}
    for start in range(0, len(node_ids), _CHUNK):
        chunk = node_ids[start:start + _CHUNK]
        query = Attestation.objects.filter(Q(subjects__node_id__in=chunk) | Q(edges__target_id__in=chunk))
        for attestation in visibility.visible_attestations(user, query.distinct()):
            found[attestation.pk] = attestation
    return [found[key] for key in sorted(found)]


def _subject_nodes(subject: tuple[str, str], user: Any) -> list[int]:
    ref_type, ref_id = str(subject[0]), str(subject[1])
    nodes = visibility.visible_nodes(user, LineageNode.objects.filter(ref_type=ref_type, ref_id=ref_id))
    return list(nodes.values_list("pk", flat=True))


def attestations_for_subject(subject: tuple[str, str], *, user: Any) -> list[Attestation]:
    """Every attestation naming the record `(ref_type, ref_id)` as a subject, oldest first (none if it is hidden)."""
    return _attestations_for_nodes(_subject_nodes(subject, user), user)


def attestations_upstream(subject: tuple[str, str], *, user: Any, depth: int = graph.MAX_DEPTH) -> list[Attestation]:
    """Every attestation about the record or anything upstream of it (what a bundle for it should carry)."""
    node_ids: set[int] = set()
    for node_id in _subject_nodes(subject, user):
        traversal = graph.traverse(start_id=node_id, direction=graph.UPSTREAM, depth=depth, max_nodes=100_000)
        node_ids.update(traversal.depths)
    return _attestations_for_nodes(sorted(node_ids), user)


def verification_keys() -> dict[str, Ed25519PublicKey]:
    """keyid -> key for every key that can verify stored envelopes (server and pipeline, revoked included)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for keyid, raw in SigningKey.objects.filter(purpose=SigningKey.Purpose.ATTESTATION).values_list(
            "dsse_keyid", "public_key"):
        keys[keyid] = Ed25519PublicKey.from_public_bytes(bytes(raw))
    for keyid, raw in PipelineKey.objects.values_list("keyid", "public_key"):
        keys[keyid] = Ed25519PublicKey.from_public_bytes(bytes(raw))
    return keys


def attestation_verify(envelope: bytes, keys: dict[str, Ed25519PublicKey]) -> dict[str, Any]:
    """Verify a stored envelope and return its Statement; raises `DSSEError` / `StatementError`."""
    payload_type, payload = dsse.verify_envelope(envelope, keys)
    if payload_type != dsse.PAYLOAD_TYPE_IN_TOTO:
        raise dsse.DSSEError(f"unexpected payloadType {payload_type!r}")
    return statements.parse_statement(payload)


def key_list(*, user: Any) -> list[dict[str, Any]]:
    """Every key that can verify envelopes: server attestation keys, then the pipeline keys `user` may read."""
    from audit.keys import public_pem

    rows: list[dict[str, Any]] = []
    for key in SigningKey.objects.filter(purpose=SigningKey.Purpose.ATTESTATION).order_by("valid_from", "pk"):
        rows.append({"id": None, "keyid": key.dsse_keyid, "kind": "server", "owner": f"server:{key.name}",
                     "owner_team": "",
                     "public_key_pem": public_pem(bytes(key.public_key)), "algorithm": "ed25519",
                     "status": "retired" if key.valid_until else "active", "created_at": key.valid_from,
                     "revoked_at": key.valid_until})
    pipeline_keys = visibility.owned_visible(user, PipelineKey.objects.select_related("owner"))
    for pipeline_key in pipeline_keys.order_by("created_at", "pk"):
        rows.append({"id": pipeline_key.pk, "keyid": pipeline_key.keyid, "kind": "pipeline",
                     "owner": f"user:{pipeline_key.owner.get_username()}",
                     "public_key_pem": public_pem(bytes(pipeline_key.public_key)), "algorithm": "ed25519",
                     "owner_team": pipeline_key.owner_team,
                     "status": "revoked" if pipeline_key.revoked_at else "active",
                     "created_at": pipeline_key.created_at, "revoked_at": pipeline_key.revoked_at})
    return rows


def pipeline_key_get(*, key_id: int, user: Any) -> PipelineKey:
    key = visibility.owned_visible(user, PipelineKey.objects.filter(pk=key_id)).first()
    if key is None:
        raise NotFound(f"No pipeline key {key_id}.", code="pipeline_key_not_found", extra={"key": key_id})
    return key


# --- Records ----------------------------------------------------------------------------------

def dataset_list(*, user: Any) -> QuerySet[Dataset]:
    """The datasets of the teams `user` may read, and the shared ones."""
    return visibility.owned_visible(user, Dataset.objects.all()).order_by("namespace", "name", "pk")


def dataset_get(*, dataset_id: int, user: Any) -> Dataset:
    dataset = dataset_list(user=user).filter(pk=dataset_id).first()
    if dataset is None:
        raise NotFound(f"No dataset {dataset_id}.", code="dataset_not_found", extra={"dataset": dataset_id})
    return dataset


def dataset_version_list(*, dataset: Dataset) -> QuerySet[DatasetVersion]:
    return dataset.versions.select_related("dataset").order_by("created_at", "pk")


def dataset_version_get(*, version_id: int, user: Any, dataset_id: int | None = None) -> DatasetVersion:
    query = visibility.owned_visible(user, DatasetVersion.objects.select_related("dataset", "node"),
                                     field="dataset__owner_team").filter(pk=version_id)
    if dataset_id is not None:
        query = query.filter(dataset_id=dataset_id)
    version = query.first()
    if version is None:
        raise NotFound(f"No dataset version {version_id}.", code="dataset_version_not_found",
                       extra={"dataset_version": version_id})
    return version


def dataset_versions_resolve(refs: Iterable[int | str], *, field: str, user: Any) -> list[DatasetVersion]:
    """Dataset versions `user` may read, by id (int) or by sha256 digest (64 hex); refuse unknown ones naming the
    field (another team's are unknown too). A digest that several readable versions share names the caller's own
    team's first, else the oldest."""
    readable = visibility.owned_visible(user, DatasetVersion.objects.select_related("node", "dataset"),
                                        field="dataset__owner_team")
    own = sorted(visibility.owners_of(user).write)
    found: list[DatasetVersion] = []
    for index, ref in enumerate(refs):
        if isinstance(ref, bool):
            ref = str(ref)
        if isinstance(ref, int):
            version = readable.filter(pk=ref).first()
        elif isinstance(ref, str) and statements.is_sha256_hex(ref):
            matches = readable.filter(digest=ref).order_by("pk")
            version = matches.filter(dataset__owner_team__in=own).first() or matches.first()
        else:
            raise InvalidInput("Name dataset versions by id or by sha256 digest.", code="invalid_input",
                               extra={"field": f"{field}[{index}]"})
        if version is None:
            raise NotFound(f"No dataset version {ref}.", code="dataset_version_not_found",
                           extra={"field": f"{field}[{index}]", "dataset_version": ref})
        found.append(version)
    return found


def training_run_list(*, user: Any) -> QuerySet[TrainingRun]:
    """The runs of the teams `user` may read, and the shared ones."""
    return visibility.owned_visible(user, TrainingRun.objects.all()).order_by("-created_at", "-pk")


def training_run_get(*, run_id: int, user: Any) -> TrainingRun:
    run = training_run_list(user=user).select_related("node").filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"No training run {run_id}.", code="training_run_not_found", extra={"run": run_id})
    return run


def run_io(run: TrainingRun, *, user: Any) -> tuple[list[LineageNode], list[LineageNode]]:
    """(inputs, outputs) of a run, from the graph, without the nodes hidden from `user`."""
    inputs = LineageNode.objects.filter(out_edges__target_id=run.node_id).order_by("pk")
    outputs = LineageNode.objects.filter(in_edges__source_id=run.node_id).order_by("pk")
    return list(visibility.visible_nodes(user, inputs)), list(visibility.visible_nodes(user, outputs))


def record_url(node: LineageNode) -> str:
    """Where the API shows the record a node stands for."""
    if node.kind == LineageNode.Kind.DATASET_VERSION:
        version = DatasetVersion.objects.filter(node=node).values_list("pk", "dataset_id").first()
        if version:
            return f"/api/lineage/datasets/{version[1]}/versions/{version[0]}/"
    if node.kind == LineageNode.Kind.RUN:
        return f"/api/lineage/runs/{node.ref_id}/"
    return f"/api/lineage/nodes/{node.pk}/"

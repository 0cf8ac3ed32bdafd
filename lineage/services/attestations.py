"""Attestations: the server's own (one per graph change) and the envelopes pipelines submit.

Every link added to the graph is covered by an attestation: an in-toto Statement v1 with an
SLSA-provenance-v1-shaped predicate, signed by the server's attestation key into a DSSE
envelope (or, for envelopes a pipeline submits, signed by the pipeline's own key). The
envelope bytes are stored exactly as produced or received.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import transaction

from audit import dsse
from audit.keys import active_key
from audit.ledger import actor_label, ledger_append, lock_for_update
from audit.models import SigningKey
from audit.refusals import refusal_recorded
from core.errors import Forbidden, InvalidInput
from lineage import attestations as statements
from lineage import visibility
from lineage.models import SHARED, Attestation, AttestationSubject, LineageEdge, LineageNode, PipelineKey
from lineage.services.graph import ALLOWED_LINKS, Kind, builder_id, descriptor, edge_add, iso_time, node_name, sha256_hex

# --- Server attestations ----------------------------------------------------------------------

def server_attest(*, subjects: Sequence[LineageNode], dependencies: Sequence[LineageNode], actor: Any,
                  external_parameters: Mapping[str, Any], internal_parameters: Mapping[str, Any] | None = None,
                  invocation_id: str, started_on: datetime | None = None, finished_on: datetime | None = None,
                  edges: Iterable[LineageEdge] = (), owner_team: str = SHARED) -> Attestation:
    """Sign a Statement about `subjects` made from `dependencies`, store it (owned by the team whose record
    was written) and link it to `edges`."""
    key = active_key(SigningKey.Purpose.ATTESTATION)
    label = actor_label(actor)
    statement = statements.build_statement(
        subjects=[(node_name(node), node.digest) for node in subjects],
        build_type=statements.BUILD_TYPE_LINEAGE,
        external_parameters=external_parameters,
        internal_parameters=internal_parameters or {},
        resolved_dependencies=[descriptor(node) for node in dependencies],
        builder_id=builder_id(), invocation_id=invocation_id,
        started_on=iso_time(started_on), finished_on=iso_time(finished_on),
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
        origin=Attestation.Origin.SERVER, server_key=key.record, submitted_by=label, owner_team=owner_team,
    )
    AttestationSubject.objects.bulk_create([
        AttestationSubject(attestation=attestation, node=node, name=node_name(node), sha256=node.digest)
        for node in {node.pk: node for node in subjects}.values()
    ])
    edge_ids = [edge.pk for edge in edges]
    if edge_ids:
        LineageEdge.objects.filter(pk__in=edge_ids).update(attestation=attestation)
    return attestation


def attestation_ref(attestation: Attestation | None) -> dict[str, Any] | None:
    if attestation is None:
        return None
    return {"id": attestation.pk, "envelope_sha256": attestation.envelope_sha256, "keyid": attestation.keyid}



# --- Submitted attestations -------------------------------------------------------------------

MAX_ENVELOPE_BYTES = 1024 * 1024


def _refuse(code: str, message: str, **extra: Any) -> InvalidInput:
    return InvalidInput(message, code=code, extra=extra)


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


def attestation_submit(*, envelope_bytes: bytes, submitted_by: Any) -> tuple[Attestation, bool]:
    """Verify a pipeline's envelope, check its subjects, and store it byte for byte with its ledger entry.

    Returns (attestation, created). Trusted keys: the submitter's own pipeline keys; an envelope
    naming one of the server's keys is refused (403 `attestation_server_key`: only the server signs
    with them), and so is one signed by a revoked key. The same envelope again (same SHA-256, by
    its key's account) returns the stored one and writes nothing. Subjects must be records the
    submitter may write (their team's dataset versions and artifacts, their team's models' versions
    and deployments): any other digest, whether it exists elsewhere or not, is refused alike (403
    `attestation_subject_not_writable`). Dependencies become edges where they name records the
    submitter may read. Refusals by a rule (403) are ledger entries `lineage.attestation.submitted.refused`;
    any refusal raises before anything else is written.
    """
    if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
        raise InvalidInput("The envelope is too large.", code="payload_too_large", status_code=413)
    envelope_sha256 = sha256_hex(envelope_bytes)
    keyids = _envelope_keyids(envelope_bytes)
    with refusal_recorded(actor=submitted_by, action="lineage.attestation.submitted",
                          subject=("lineage.envelope", envelope_sha256),
                          attempt={"envelope_sha256": envelope_sha256, "keyids": keyids[:10]}):
        checked = _checked_submission(envelope_bytes=envelope_bytes, envelope_sha256=envelope_sha256, keyids=keyids,
                                      submitted_by=submitted_by)
    if isinstance(checked, Attestation):
        return checked, False
    return _store_submission(checked, envelope_bytes=envelope_bytes, envelope_sha256=envelope_sha256,
                             submitted_by=submitted_by), True


@dataclass(frozen=True)
class _Checked:
    statement: dict[str, Any]
    subjects: list[tuple[str, str]]
    subject_nodes: list[LineageNode]
    signer: PipelineKey


def _checked_submission(*, envelope_bytes: bytes, envelope_sha256: str, keyids: list[str],
                        submitted_by: Any) -> _Checked | Attestation:
    """Every check before anything is written: the stored attestation for a resubmission, else what to store."""
    server_keyids = sorted(SigningKey.objects.filter(dsse_keyid__in=keyids).values_list("dsse_keyid", flat=True))
    if server_keyids:
        raise Forbidden("The envelope names a key of this server; only the server signs with its keys.",
                        code="attestation_server_key", extra={"keyids": server_keyids})
    own_keys = {key.keyid: key for key in PipelineKey.objects.filter(owner=submitted_by, keyid__in=keyids)}
    stored = Attestation.objects.filter(envelope_sha256=envelope_sha256, origin=Attestation.Origin.PIPELINE,
                                        pipeline_key__in=list(own_keys.values())).order_by("pk").first()
    if stored is not None and bytes(stored.envelope) == envelope_bytes:
        return stored
    trusted: dict[str, Ed25519PublicKey] = {
        keyid: Ed25519PublicKey.from_public_bytes(bytes(key.public_key))
        for keyid, key in own_keys.items() if key.revoked_at is None}
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
    candidates = LineageNode.objects.filter(digest__in=wanted).exclude(kind=Kind.RUN).order_by("pk")
    for node in visibility.writable_node_list(submitted_by, candidates):
        nodes_by_digest.setdefault(node.digest, []).append(node)
    missing = sorted(wanted - set(nodes_by_digest))
    if missing:
        # One answer whether the digest is unknown or another team's: no oracle for what exists elsewhere.
        raise Forbidden("Subjects must be records you may write; these digests match none.",
                        code="attestation_subject_not_writable", extra={"unmatched_sha256": missing[:20]})
    signer_keyid = next(keyid for keyid in keyids if keyid in trusted)
    subject_nodes = [node for digest in sorted(wanted) for node in nodes_by_digest[digest]]
    return _Checked(statement=statement, subjects=subjects, subject_nodes=subject_nodes, signer=own_keys[signer_keyid])


def _store_submission(checked: _Checked, *, envelope_bytes: bytes, envelope_sha256: str,
                      submitted_by: Any) -> Attestation:
    statement, subjects, subject_nodes, signer = (checked.statement, checked.subjects, checked.subject_nodes,
                                                  checked.signer)
    signer_keyid = signer.keyid
    owners = sorted({visibility.node_owner(node) for node in subject_nodes} - {SHARED})
    label = actor_label(submitted_by)
    with transaction.atomic():
        if not lock_for_update(PipelineKey.objects).filter(pk=signer.pk, revoked_at__isnull=True).exists():
            raise _refuse("attestation_key_revoked", "The signing key has been revoked.", keyids=[signer_keyid])
        attestation = Attestation.objects.create(
            envelope=envelope_bytes, envelope_sha256=envelope_sha256, payload_type=dsse.PAYLOAD_TYPE_IN_TOTO,
            predicate_type=str(statement["predicateType"])[:300], statement=statement, keyid=signer_keyid,
            origin=Attestation.Origin.PIPELINE, pipeline_key=signer, submitted_by=label,
            owner_team=owners[0] if owners else signer.owner_team,
        )
        names = dict((digest, name) for name, digest in subjects)
        AttestationSubject.objects.bulk_create([
            AttestationSubject(attestation=attestation, node=node, name=names[node.digest][:500], sha256=node.digest)
            for node in subject_nodes
        ])
        # Dependencies the submitter may read become edges into the subjects, where such a link is allowed.
        new_edges: list[LineageEdge] = []
        dependency_nodes = visibility.visible_node_list(submitted_by, LineageNode.objects.filter(
            digest__in=statements.dependency_digests(statement)).exclude(kind=Kind.RUN).order_by("pk"))
        for dependency in dependency_nodes:
            for node in subject_nodes:
                if dependency.pk == node.pk or (dependency.kind, node.kind) not in ALLOWED_LINKS:
                    continue
                edge, created = edge_add(dependency, node)
                if created:
                    new_edges.append(edge)
        if new_edges:
            LineageEdge.objects.filter(pk__in=[edge.pk for edge in new_edges]).update(attestation=attestation)
        ledger_append(actor=submitted_by, action="lineage.attestation.submitted", subject=attestation, payload={
            "envelope_sha256": attestation.envelope_sha256, "keyid": signer_keyid,
            "predicate_type": attestation.predicate_type, "owner_team": attestation.owner_team,
            "subjects": [[node.pk, node.digest] for node in subject_nodes],
            "new_edges": [[edge.source_id, edge.target_id] for edge in new_edges],
        })
    return attestation

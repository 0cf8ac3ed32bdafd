"""The graph's building blocks: nodes, edges (kept acyclic), and the names and digests statements use.

These are the steps every lineage write shares; each runs inside the caller's transaction and
writes no ledger entry of its own. The services that call them (datasets, runs, model versions,
attestations) name their ledger action at the write.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from django.conf import settings

from audit.ledger import format_time
from core.errors import Conflict, Forbidden, InvalidInput
from lineage import attestations as statements
from lineage import graph as traversal
from lineage import visibility
from lineage.models import SHARED, DatasetVersion, LineageEdge, LineageNode

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


def acting_owner(actor: Any, owner_team: str | None = None) -> str:
    """The team a new record of `actor` belongs to: the one named, else the only team the actor writes for.

    System actors record shared records unless they name a team. A user who writes for no team is
    refused (403 `lineage_team_required`); one who writes for several must name one (400
    `lineage_owner_ambiguous`); naming a team they do not write for is 403 `lineage_not_owner`.
    """
    if visibility.is_system_actor(actor):
        return owner_team or SHARED
    teams = visibility.owners_of(actor).write
    if owner_team:
        if owner_team not in teams:
            raise Forbidden(f"You do not record lineage for {owner_team}.", code="lineage_not_owner",
                            extra={"owner_team": owner_team})
        return owner_team
    if not teams:
        raise Forbidden("Lineage records belong to a team, and you record for none.", code="lineage_team_required")
    if len(teams) > 1:
        raise InvalidInput("You record lineage for several teams: name one in owner_team.",
                           code="lineage_owner_ambiguous", extra={"field": "owner_team", "allowed": sorted(teams)})
    return next(iter(teams))


def require_owner_write(actor: Any, owner_team: str, what: str) -> None:
    """Refuse (403 `lineage_not_owner`) a write to a record of a team `actor` does not write for."""
    if not visibility.may_write_owner(actor, owner_team):
        raise Forbidden(f"This {what} belongs to another team; only its team may add to it.",
                        code="lineage_not_owner", extra={"record": what})


def builder_id() -> str:
    """SLSA `runDetails.builder.id` for statements the server makes."""
    return f"https://{settings.LEDGER_ORIGIN}/lineage"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def require_sha256(value: str, field: str) -> str:
    if not statements.is_sha256_hex(value):
        raise InvalidInput(f"{field} must be a lowercase hex SHA-256 (64 characters).", code="invalid_digest",
                           extra={"field": field})
    return value


def iso_time(moment: datetime | None) -> str | None:
    return format_time(moment) if moment else None


def node_name(node: LineageNode) -> str:
    """The subject / dependency name used in statements: `<kind>:<ref_type>:<ref_id>`."""
    return f"{node.kind}:{node.ref_type}:{node.ref_id}"


def descriptor(node: LineageNode) -> dict[str, Any]:
    uri = None
    if node.kind == Kind.DATASET_VERSION:
        uri = DatasetVersion.objects.filter(node=node).values_list("location_uri", flat=True).first()
    return statements.resource(node_name(node), node.digest, uri)


def node_get_or_create(*, kind: str, ref_type: str, ref_id: str, digest: str,
                       label: str, owner_team: str = SHARED) -> tuple[LineageNode, bool]:
    node = LineageNode.objects.filter(kind=kind, ref_type=ref_type, ref_id=ref_id).first()
    if node is not None:
        if node.digest != digest:
            raise Conflict(f"{kind} {ref_type}:{ref_id} is already registered with another digest.",
                           code="lineage_node_digest_conflict",
                           extra={"kind": kind, "ref": [ref_type, ref_id], "registered_digest": node.digest})
        return node, False
    return LineageNode.objects.create(kind=kind, ref_type=ref_type, ref_id=ref_id, digest=digest,
                                      label=label[:300], owner_team=owner_team), True


def edge_add(source: LineageNode, target: LineageNode) -> tuple[LineageEdge, bool]:
    """Add `source -> target` unless present; refuse links of the wrong kinds and cycles."""
    if (source.kind, target.kind) not in ALLOWED_LINKS:
        raise InvalidInput(f"A {source.kind} cannot link to a {target.kind}.", code="lineage_link_not_allowed",
                           extra={"source": source.kind, "target": target.kind})
    traversal.lock_edges()
    existing = LineageEdge.objects.filter(source=source, target=target).first()
    if existing is not None:
        return existing, False
    if traversal.reaches(from_id=target.pk, to_id=source.pk):
        raise Conflict("This link would make the lineage graph cyclic.", code="lineage_cycle",
                       extra={"source": source.pk, "target": target.pk})
    return LineageEdge.objects.create(source=source, target=target), True

"""Reads for the pages, built on the owning apps' selectors (permission-filtered there, deny by default).

Each function returns everything one part of a page needs in a fixed number of queries, so a
page's query count does not grow with the number of versions, requests or entries it shows.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Prefetch, Q, QuerySet

from audit import ledger, witnesses
from audit import selectors as audit_selectors
from audit.models import Checkpoint, LedgerEntry, SigningKey
from core.ids import parse_id
from governance import permissions
from governance import selectors as governance_selectors
from governance.models import (
    ApprovalDecision,
    ApprovalRequest,
    Deployment,
    ModelVersion,
    RegisteredModel,
    RequestStatus,
    VersionStatus,
)

VERIFICATION_SUBJECT = ("audit.ledger", "main")
VERIFICATION_ACTIONS = ("ledger.verified", "ledger.verification_failed")
LEDGER_PAGE_SIZE = 50


# --- Dashboard ---------------------------------------------------------------------------------

def visible_models(*, user: Any) -> QuerySet[RegisteredModel]:
    """The models the user may see (governance's selector). A page builds it once and passes it to
    the reads below, which use it as a subquery, instead of rebuilding the guardian filters per read."""
    return governance_selectors.registered_model_list(user=user)


def _visible(user: Any, visible: QuerySet[RegisteredModel] | None) -> QuerySet[RegisteredModel]:
    return visible if visible is not None else visible_models(user=user)


def decidable_requests(*, user: Any, visible: QuerySet[RegisteredModel] | None = None) -> QuerySet[ApprovalRequest]:
    """Pending requests the user may decide now, as one query (the rule is governance's)."""
    pending = (ApprovalRequest.objects.select_related("version__model", "submitted_by")
               .filter(status=RequestStatus.PENDING, version__model__in=_visible(user, visible)))
    return permissions.decidable_requests(user=user, pending=pending).order_by("expires_at", "pk")


def submitted_requests(*, user: Any, visible: QuerySet[RegisteredModel] | None = None) -> QuerySet[ApprovalRequest]:
    return (ApprovalRequest.objects.select_related("version__model", "submitted_by")
            .filter(submitted_by=user, version__model__in=_visible(user, visible)).order_by("-submitted_at", "-pk"))


SCAN_CHUNK = 200
SCAN_MAX_CHUNKS = 5


def first_matching(*, candidates: QuerySet[ApprovalRequest], matching: QuerySet[ApprovalRequest],
                   limit: int) -> list[ApprovalRequest]:
    """The first `limit` rows of `matching`, in the order of `candidates` (a superset of it).

    `candidates` is cheap to walk in order (an index); each chunk of its ids is checked against
    the permission-filtered `matching`, so a dashboard reads a few hundred rows, not every pending
    request of 10,000 models. After a few chunks it falls back to the full query.
    """
    found: list[int] = []
    ids = candidates.values_list("pk", flat=True)
    for chunk in range(SCAN_MAX_CHUNKS):
        batch = list(ids[chunk * SCAN_CHUNK:(chunk + 1) * SCAN_CHUNK])
        if batch:
            found += list(matching.filter(pk__in=batch).values_list("pk", flat=True))
        if len(found) >= limit or len(batch) < SCAN_CHUNK:
            break
    else:
        found = list(matching.values_list("pk", flat=True)[:limit])
    if not found:
        return []
    rows = {row.pk: row for row in ApprovalRequest.objects.filter(pk__in=found[:limit])
            .select_related("version__model", "submitted_by")}
    return [rows[pk] for pk in found[:limit] if pk in rows]


def decidable_requests_first(*, user: Any, limit: int = 20,
                             visible: QuerySet[RegisteredModel] | None = None) -> list[ApprovalRequest]:
    """The `limit` decidable requests that expire first (walks the status/expiry index)."""
    matching = decidable_requests(user=user, visible=visible)
    if not matching.query.is_empty():
        candidates = ApprovalRequest.objects.filter(status=RequestStatus.PENDING).order_by("expires_at", "pk")
        return first_matching(candidates=candidates, matching=matching, limit=limit)
    return []


def submitted_requests_first(*, user: Any, limit: int = 10,
                             visible: QuerySet[RegisteredModel] | None = None) -> list[ApprovalRequest]:
    """The user's `limit` latest visible requests."""
    candidates = ApprovalRequest.objects.filter(submitted_by=user).order_by("-submitted_at", "-pk")
    return first_matching(candidates=candidates, matching=submitted_requests(user=user, visible=visible),
                          limit=limit)


def deployments_by_environment(*, user: Any, visible: QuerySet[RegisteredModel] | None = None) -> list[dict[str, Any]]:
    """Active deployments of the models the user may see, counted per environment."""
    rows = (Deployment.objects.filter(is_active=True, model__in=_visible(user, visible)).order_by()
            .values("environment__name", "environment__is_production")
            .annotate(count=Count("pk")).order_by("-environment__is_production", "environment__name"))
    return [{"name": row["environment__name"], "is_production": row["environment__is_production"],
             "count": row["count"]} for row in rows]


def signing_keys() -> list[SigningKey]:
    """Every key the server ever signed with (retired ones too: old checkpoints stay signed by them)."""
    return list(SigningKey.objects.order_by("purpose", "valid_from", "pk"))


def latest_checkpoint() -> Checkpoint | None:
    return audit_selectors.checkpoint_latest()


def last_verification() -> LedgerEntry | None:
    """The latest recorded verification of the whole ledger (its outcome is in the payload)."""
    subject_type, subject_id = VERIFICATION_SUBJECT
    return (LedgerEntry.objects.filter(subject_type=subject_type, subject_id=subject_id,
                                       action__in=VERIFICATION_ACTIONS).order_by("-seq").first())


def recent_activity(*, user: Any, limit: int = 10) -> tuple[str, list[LedgerEntry]]:
    """(scope, entries): the whole ledger for those who may read it, else the user's own actions."""
    if audit_selectors.can_read_ledger(user):
        return "all", list(LedgerEntry.objects.order_by("-seq")[:limit])
    label = f"user:{user.get_username()}"
    return "own", list(LedgerEntry.objects.filter(actor=label).order_by("-seq")[:limit])


# --- Models ------------------------------------------------------------------------------------

def model_list(*, user: Any, query: str = "") -> QuerySet[RegisteredModel]:
    models = governance_selectors.registered_model_list(user=user)
    if query:
        models = models.filter(Q(name__icontains=query) | Q(description__icontains=query))
    return models


@dataclass
class ModelPage:
    model: RegisteredModel
    versions: list[ModelVersion]
    requests: list[ApprovalRequest]
    deployments: list[Deployment]
    timeline: list[dict[str, Any]] = field(default_factory=list)


def model_page(*, user: Any, name: str) -> ModelPage:
    """A model the user may see (NotFound otherwise) with its versions, requests, decisions and deployments."""
    model = governance_selectors.registered_model_get(user=user, name=name)
    active = Deployment.objects.filter(is_active=True).select_related("environment").order_by("environment__name")
    versions = list(ModelVersion.objects.filter(model=model).select_related("created_by")
                    .prefetch_related(Prefetch("deployments", queryset=active, to_attr="active_deployments"))
                    .order_by("-created_at", "-pk"))
    decisions = ApprovalDecision.objects.select_related("approver").order_by("decided_at", "pk")
    requests = list(ApprovalRequest.objects.filter(version__model=model).select_related("version", "submitted_by")
                    .prefetch_related(Prefetch("decisions", queryset=decisions, to_attr="decision_list"))
                    .order_by("-submitted_at", "-pk"))
    deployments = list(Deployment.objects.filter(model=model).select_related("version", "environment", "deployed_by")
                       .order_by("-deployed_at", "-pk")[:50])
    return ModelPage(model=model, versions=versions, requests=requests, deployments=deployments,
                     timeline=approval_timeline(requests))


def approval_timeline(requests: list[ApprovalRequest]) -> list[dict[str, Any]]:
    """Requests, decisions and closures as one list, newest first: who, when, what, comment."""
    events: list[dict[str, Any]] = []
    for request in requests:
        version = request.version
        reapproval = request.kind == "reapproval"
        events.append({"when": request.submitted_at, "kind": "submitted",
                       "who": request.submitted_by.get_username() if request.submitted_by else "monitoring",
                       "version": version.label, "request": request.pk, "comment": request.comment,
                       "text": f"{'opened a re-approval' if reapproval else 'requested approval'} of {version.label}"})
        for decision in getattr(request, "decision_list", []):
            events.append({"when": decision.decided_at, "kind": decision.decision,
                           "who": decision.approver.get_username(), "version": version.label, "request": request.pk,
                           "comment": decision.comment, "roles": decision.approver_roles,
                           "text": f"{'approved' if decision.decision == 'approve' else 'rejected'} {version.label}"})
        if request.closed_at is not None:
            # A decision that closes the request carries the same comment; show it once.
            decided = [decision.comment for decision in getattr(request, "decision_list", [])]
            comment = "" if decided and decided[-1] == request.closing_comment else request.closing_comment
            events.append({"when": request.closed_at, "kind": request.status, "who": "", "version": version.label,
                           "request": request.pk, "comment": comment,
                           "text": f"request #{request.pk} {request.get_status_display().lower()}"})
    events.sort(key=lambda event: (event["when"], event["request"]), reverse=True)
    return events


def lineage_for_version(version: ModelVersion | None, *, user: Any) -> dict[str, Any] | None:
    """The lineage graph around a version (upstream and downstream) as `user` may see it, laid out for SVG;
    None if it has no node."""
    if version is None:
        return None
    from lineage import graph
    from lineage import selectors as lineage_selectors
    from lineage.models import LineageNode
    from lineage.views import layout

    node = LineageNode.objects.filter(ref_type="governance.modelversion", ref_id=str(version.pk)).first()
    if node is None:
        return None
    data = lineage_selectors.lineage_graph(node=node, direction=graph.BOTH, depth=4, max_nodes=60, user=user)
    drawing = layout(data)
    return {"node": node, "drawing": drawing, "truncated": data["truncated"]}


VERSION_BADGES = {
    VersionStatus.DRAFT: "neutral", VersionStatus.PENDING_REVIEW: "warn", VersionStatus.APPROVED: "ok",
    VersionStatus.DEPLOYED: "ok", VersionStatus.REJECTED: "bad", VersionStatus.DEPRECATED: "neutral",
    VersionStatus.RETIRED: "neutral",
}


# --- Ledger ------------------------------------------------------------------------------------

@dataclass
class LedgerFilters:
    subject_type: str = ""
    subject_id: str = ""
    actor: str = ""
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class LedgerPage:
    entries: list[LedgerEntry]
    newer: int | None  # pass as `after` to see newer entries
    older: int | None  # pass as `before` to see older entries


def _keyset(entries: QuerySet[LedgerEntry], *, by_time: bool, before: int | None, after: int | None,
            ) -> tuple[QuerySet[LedgerEntry], bool]:
    """Entries after/before the cursor entry, ordered away from it; True when the order is ascending.

    Searches with a time window read in (recorded_at, seq) order, so the planner walks the
    recorded_at index from the window's end and stops after one page, instead of walking a
    million entries backwards by seq. Entries are timed under the append lock, so both orders
    agree unless the server's clock stepped back.
    """
    ascending = after is not None
    cursor = after if ascending else before
    if cursor is not None:
        if by_time:
            moment = LedgerEntry.objects.filter(seq=cursor).values_list("recorded_at", flat=True).first()
            if moment is None:
                return entries.none(), ascending
            if ascending:
                entries = entries.filter(recorded_at__gte=moment).exclude(recorded_at=moment, seq__lte=cursor)
            else:
                entries = entries.filter(recorded_at__lte=moment).exclude(recorded_at=moment, seq__gte=cursor)
        else:
            entries = entries.filter(seq__gt=cursor) if ascending else entries.filter(seq__lt=cursor)
    if by_time:
        order = ("recorded_at", "seq") if ascending else ("-recorded_at", "-seq")
    else:
        order = ("seq",) if ascending else ("-seq",)
    return entries.order_by(*order), ascending


def ledger_search(*, filters: LedgerFilters, before: int | None = None, after: int | None = None,
                  page_size: int = LEDGER_PAGE_SIZE) -> LedgerPage:
    """Newest first, keyset-paginated (no COUNT over a million rows); `before`/`after` are entry seqs."""
    entries = audit_selectors.ledger_entry_list(
        action_prefix=filters.action or None, subject_type=filters.subject_type or None,
        subject_id=filters.subject_id or None, actor=filters.actor or None, since=filters.since, until=filters.until)
    # On SQLite the append's raw INSERT stores recorded_at with a "+00:00" suffix the ORM's
    # parameters lack, so equality on it never matches there; SQLite pages by seq alone (it has
    # no million-entry planner problem to avoid).
    by_time = (filters.since is not None or filters.until is not None) and connection.vendor == "postgresql"
    ordered, ascending = _keyset(entries, by_time=by_time, before=before, after=after)
    rows = list(ordered[: page_size + 1])
    more = len(rows) > page_size
    rows = rows[:page_size]
    if ascending:
        rows.reverse()
        return LedgerPage(entries=rows, newer=rows[0].seq if rows and more else None,
                          older=rows[-1].seq if rows else None)
    return LedgerPage(entries=rows, newer=rows[0].seq if rows and before is not None else None,
                      older=rows[-1].seq if rows and more else None)


def _b64(raw: bytes) -> str:
    return base64.b64encode(bytes(raw)).decode("ascii")


def ledger_entry_evidence(*, seq: int) -> dict[str, Any]:
    """One entry with what a browser needs to check it alone: bytes, hashes, proof, signed checkpoint, vkey."""
    entry = audit_selectors.ledger_entry_get(seq=seq)
    canonical = bytes(entry.canonical)
    # The latest checkpoint that witnesses cosigned, if one covers the entry; else the latest.
    checkpoint = witnesses.checkpoint_to_show(entry.seq + 1)
    cosignatures = witnesses.cosignatures_latest(checkpoint) if checkpoint else []
    proof: list[str] | None = None
    if checkpoint is not None and entry.seq < checkpoint.tree_size:
        proof = [_b64(node) for node in ledger.inclusion_proof(leaf_index=entry.seq, tree_size=checkpoint.tree_size)]
    verify_data = {
        "seq": entry.seq,
        "canonical_b64": _b64(canonical),
        "entry_hash_hex": bytes(entry.entry_hash).hex(),
        "leaf_index": entry.seq,
        "tree_size": checkpoint.tree_size if checkpoint else None,
        "proof_b64": proof,
        "checkpoint_note": witnesses.cosigned_note(checkpoint, cosignatures) if checkpoint else None,
        "vkey": checkpoint.key.vkey if checkpoint else None,
        # The witnesses of the service's policy; the browser checks their cosignatures itself.
        "witnesses": [{key: item[key] for key in ("name", "vkey", "not_independent")} for item in policy_witnesses()],
    }
    from governance.pages.signing import approver_signature_evidence

    verify_data.update(approver_signature_evidence(entry=entry, checkpoint=checkpoint))
    return {
        "entry": entry,
        "pretty": json.dumps(json.loads(canonical), indent=2),  # non-ASCII as \u escapes: no look-alikes
        "canonical_b64": verify_data["canonical_b64"],
        "entry_hash_hex": verify_data["entry_hash_hex"],
        "prev_hash_hex": bytes(entry.prev_hash).hex(),
        "leaf_hash_hex": bytes(entry.leaf_hash).hex(),
        "checkpoint": checkpoint,
        "proof": proof,
        "verify_data": verify_data,
        "cosigned_note": verify_data["checkpoint_note"],
        "cosignatures": cosignatures,
    }


def policy_witnesses() -> list[dict[str, object]]:
    """The witnesses of the service's policy file (name, vkey, URL, whether it is the demo's), or none."""
    try:
        policy = witnesses.witness_policy()
    except (OSError, ValueError):
        return []
    if policy is None:
        return []
    return [{"name": name, "vkey": item.key.vkey, "url": item.url or "",
             "not_independent": item.key.name.endswith("/not-independent")}
            for name, item in policy.witnesses.items()]


def subject_page_url(subject_type: str, subject_id: str) -> str | None:
    """The page that shows a ledger subject, for the governance subjects that have one (one query at most)."""
    if subject_type == "governance.registeredmodel":
        name = RegisteredModel.objects.filter(pk=parse_id(subject_id)).values_list("name", flat=True).first()
        return f"/models/{name}/" if name else None
    if subject_type == "governance.modelversion":
        row = ModelVersion.objects.filter(pk=parse_id(subject_id)).values_list("model__name", "label").first()
        return f"/models/{row[0]}/?version={row[1]}" if row else None
    if subject_type == "governance.approvalrequest":
        row = ApprovalRequest.objects.filter(pk=parse_id(subject_id)).values_list("version__model__name").first()
        return f"/models/{row[0]}/#request-{subject_id}" if row else None
    if subject_type == "governance.deployment":
        row = Deployment.objects.filter(pk=parse_id(subject_id)).values_list("model__name").first()
        return f"/models/{row[0]}/#deployments" if row else None
    return None



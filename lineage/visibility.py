"""Who may see which lineage node, when some nodes stand for records another app governs.

Lineage keeps its own records (dataset versions, runs, artifacts) and, by reference, records of
the layer above (`ref_type` "governance.modelversion", "governance.deployment", ...). It cannot
import that layer, so the layer registers two callables when its app is ready, the way
`governance.evidence` lets the fairness app register its check:

- a subject resolver, `fn(ref_type, ref_id) -> GovernedSubject | None`: the governed record
  behind a node (for a model-version node, its registered model and team), or None;
- a visibility filter, `fn(user, nodes) -> nodes`: narrows a queryset of nodes that name governed
  records to those the user may see.

A node whose ref is one of lineage's own names no governed record: Django model permissions alone
decide, as before. Every other node is hidden unless the filter lets it through; with no filter
registered only superusers see it (deny by default: lineage knows no other "sees every model"
right). A hidden node does not exist for that user: 404 on detail, omitted from lists and graphs,
and so are the attestations that name it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from django.db.models import Q, QuerySet

from lineage.models import LINEAGE_REF_TYPES, Attestation, LineageEdge, LineageNode

_CHUNK = 500


@dataclass(frozen=True)
class GovernedSubject:
    """The governed record behind a lineage node, as the app that governs it names it."""

    record_type: str  # e.g. "governance.registeredmodel"
    record_id: str
    name: str  # e.g. the model's name
    owner: str  # e.g. "team:credit-risk"


# fn(ref_type, ref_id) -> GovernedSubject | None
SubjectResolver = Callable[[str, str], GovernedSubject | None]
# fn(user, nodes naming governed records) -> the subset of them the user may see
VisibilityFilter = Callable[[Any, QuerySet[LineageNode]], QuerySet[LineageNode]]

_subject_resolver: list[SubjectResolver] = []
_visibility_filter: list[VisibilityFilter] = []


class _Unrestricted:
    """A trusted in-process caller (benchmarks, bundle building): no visibility filter applies."""

    def __repr__(self) -> str:
        return "UNRESTRICTED"


UNRESTRICTED: Final = _Unrestricted()


def register_subject_resolver(fn: SubjectResolver) -> None:
    """Make `fn(ref_type, ref_id) -> GovernedSubject | None` name the governed record behind nodes."""
    _subject_resolver[:] = [fn]


def unregister_subject_resolver() -> None:
    _subject_resolver.clear()


def register_visibility_filter(fn: VisibilityFilter) -> None:
    """Make `fn(user, nodes) -> nodes` decide which nodes naming governed records a user may see."""
    _visibility_filter[:] = [fn]


def unregister_visibility_filter() -> None:
    _visibility_filter.clear()


def registered_subject_resolver() -> SubjectResolver | None:
    return _subject_resolver[0] if _subject_resolver else None


def registered_visibility_filter() -> VisibilityFilter | None:
    return _visibility_filter[0] if _visibility_filter else None


def names_governed_subject(ref_type: str) -> bool:
    """Whether a node with this ref stands for another app's record rather than one of lineage's own."""
    return ref_type not in LINEAGE_REF_TYPES


def resolve_subject(ref_type: str, ref_id: str) -> GovernedSubject | None:
    """The governed record behind a node's ref; None for lineage's own records or when nobody answers."""
    if not names_governed_subject(ref_type) or not _subject_resolver:
        return None
    subject = _subject_resolver[0](str(ref_type), str(ref_id))
    return subject if isinstance(subject, GovernedSubject) else None


def _is_superuser(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_active", False)
                and getattr(user, "is_superuser", False))


def _visible_governed(user: Any, governed: QuerySet[LineageNode]) -> QuerySet[LineageNode]:
    """The nodes of `governed` (all naming governed records) that `user` may see; deny by default."""
    if not _visibility_filter:
        return governed if _is_superuser(user) else governed.none()
    allowed = _visibility_filter[0](user, governed)
    if not isinstance(allowed, QuerySet) or allowed.model is not LineageNode:
        return governed.none()
    return allowed


def visible_nodes(user: Any, nodes: QuerySet[LineageNode]) -> QuerySet[LineageNode]:
    """`nodes` without those that name a governed record `user` may not see."""
    if user is UNRESTRICTED:
        return nodes
    governed = nodes.order_by().exclude(ref_type__in=LINEAGE_REF_TYPES)
    allowed = _visible_governed(user, governed)
    return nodes.filter(Q(ref_type__in=LINEAGE_REF_TYPES) | Q(pk__in=allowed.order_by().values("pk")))


def hidden_node_ids(user: Any, ref_types: Mapping[int, str]) -> set[int]:
    """Of these nodes (id -> ref_type), the ids `user` may not see; only governed ones are looked up."""
    if user is UNRESTRICTED:
        return set()
    governed = sorted(node_id for node_id, ref_type in ref_types.items() if names_governed_subject(ref_type))
    seen: set[int] = set()
    for start in range(0, len(governed), _CHUNK):
        chunk = LineageNode.objects.filter(pk__in=governed[start:start + _CHUNK])
        seen.update(_visible_governed(user, chunk).values_list("pk", flat=True))
    return set(governed) - seen


def node_is_visible(user: Any, node: LineageNode) -> bool:
    return not hidden_node_ids(user, {node.pk: node.ref_type})


def visible_node_list(user: Any, nodes: Iterable[LineageNode]) -> list[LineageNode]:
    """The nodes of an already fetched list that `user` may see, order kept."""
    nodes = list(nodes)
    hidden = hidden_node_ids(user, {node.pk: node.ref_type for node in nodes})
    return [node for node in nodes if node.pk not in hidden]


def visible_attestations(user: Any, attestations: QuerySet[Attestation]) -> QuerySet[Attestation]:
    """`attestations` without those naming, as a subject or an end of an edge they cover, a node hidden from `user`.

    Such an envelope carries the hidden record's name and digest, so it is hidden with it.
    """
    if user is UNRESTRICTED:
        return attestations
    hidden = hidden_nodes(user).values("pk")
    return (attestations.exclude(subjects__node__in=hidden).exclude(edges__source__in=hidden)
            .exclude(edges__target__in=hidden))


def visible_edges(user: Any, edges: QuerySet[LineageEdge]) -> QuerySet[LineageEdge]:
    """`edges` without those with an end hidden from `user`."""
    if user is UNRESTRICTED:
        return edges
    hidden = hidden_nodes(user).values("pk")
    return edges.exclude(source__in=hidden).exclude(target__in=hidden)


def hidden_nodes(user: Any) -> QuerySet[LineageNode]:
    """Every node naming a governed record that `user` may not see."""
    if user is UNRESTRICTED:
        return LineageNode.objects.none()
    governed = LineageNode.objects.exclude(ref_type__in=LINEAGE_REF_TYPES)
    return governed.exclude(pk__in=_visible_governed(user, governed).order_by().values("pk"))

"""Who may see which lineage node, when some nodes stand for records another app governs.

Lineage keeps its own records (dataset versions, runs, artifacts) and, by reference, records of
the layer above (`ref_type` "governance.modelversion", "governance.deployment", ...). It cannot
import that layer, so the layer registers two callables when its app is ready, the way
`governance.evidence` lets the fairness app register its check:

- a subject resolver, `fn(ref_type, ref_id) -> GovernedSubject | None`: the governed record
  behind a node (for a model-version node, its registered model and team), or None;
- a visibility filter, `fn(user, nodes) -> nodes`: narrows a queryset of nodes that name governed
  records to those the user may see.

- an owner resolver, `fn(user) -> LineageOwners`: the owners (teams, "team:<name>") whose lineage
  records the user may read, and those for which the user may write.

Lineage's own records (datasets and their versions, runs, artifacts, pipeline keys, attestations)
belong to a team: `owner_team`, set from the writer's team when recorded. They are read by whoever
may read that owner's records and written only by those who may write for it; shared records
(`owner_team` "", recorded by the system) are read by every lineage reader and written by system
actors only. A node naming a governed record is hidden unless the visibility filter lets it
through; with no filter registered only superusers see it (deny by default: lineage knows no other
"sees every model" right). A hidden node does not exist for that user: 404 on detail, omitted from
lists and graphs, and so are the attestations that name it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from django.db.models import Q, QuerySet

from lineage.models import LINEAGE_REF_TYPES, SHARED, Attestation, LineageEdge, LineageNode

_CHUNK = 500


@dataclass(frozen=True)
class GovernedSubject:
    """The governed record behind a lineage node, as the app that governs it names it."""

    record_type: str  # e.g. "governance.registeredmodel"
    record_id: str
    name: str  # e.g. the model's name
    owner: str  # e.g. "team:credit-risk"


@dataclass(frozen=True)
class LineageOwners:
    """Whose lineage records a user may read (None: every owner's) and for whom they may write."""

    read: frozenset[str] | None
    write: frozenset[str]


NO_OWNERS: Final = LineageOwners(read=frozenset(), write=frozenset())
EVERY_OWNER: Final = LineageOwners(read=None, write=frozenset())

# fn(ref_type, ref_id) -> GovernedSubject | None
SubjectResolver = Callable[[str, str], GovernedSubject | None]
# fn(user, nodes naming governed records) -> the subset of them the user may see
VisibilityFilter = Callable[[Any, QuerySet[LineageNode]], QuerySet[LineageNode]]

# fn(user) -> LineageOwners
OwnerResolver = Callable[[Any], LineageOwners]

_subject_resolver: list[SubjectResolver] = []
_visibility_filter: list[VisibilityFilter] = []
_owner_resolver: list[OwnerResolver] = []


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


def register_owner_resolver(fn: OwnerResolver) -> None:
    """Make `fn(user) -> LineageOwners` say whose lineage records a user reads and for whom they write."""
    _owner_resolver[:] = [fn]


def unregister_owner_resolver() -> None:
    _owner_resolver.clear()


def registered_owner_resolver() -> OwnerResolver | None:
    return _owner_resolver[0] if _owner_resolver else None


def is_system_actor(actor: Any) -> bool:
    """A named task or command (`system:<task>`): it records for any owner, as it always did."""
    return isinstance(actor, str)


_OWNERS_CACHE = "_lineage_owners"


def owners_of(user: Any) -> LineageOwners:
    """Whose records `user` reads and for whom they write; deny by default (superusers read everything)."""
    if user is UNRESTRICTED or is_system_actor(user):
        return EVERY_OWNER
    if not (getattr(user, "is_authenticated", False) and getattr(user, "is_active", False)):
        return NO_OWNERS
    cached = getattr(user, _OWNERS_CACHE, None)
    if isinstance(cached, LineageOwners):
        return cached
    if _owner_resolver:
        owners = _owner_resolver[0](user)
        owners = owners if isinstance(owners, LineageOwners) else NO_OWNERS
    else:
        owners = EVERY_OWNER if _is_superuser(user) else NO_OWNERS
    try:
        setattr(user, _OWNERS_CACHE, owners)  # per request: the user object lives as long as it
    except AttributeError:
        pass
    return owners


def may_read_owner(user: Any, owner_team: str) -> bool:
    read = owners_of(user).read
    return owner_team == SHARED or read is None or owner_team in read


def may_write_owner(user: Any, owner_team: str) -> bool:
    """System actors write for anyone; users only for the teams they may write for (never shared records)."""
    if is_system_actor(user):
        return True
    return owner_team != SHARED and owner_team in owners_of(user).write


def owned_visible(user: Any, records: QuerySet[Any], field: str = "owner_team") -> QuerySet[Any]:
    """`records` (with an owner field) without those whose owner `user` may not read."""
    read = owners_of(user).read
    if read is None:
        return records
    return records.filter(Q(**{field: SHARED}) | Q(**{f"{field}__in": sorted(read)}))


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
    own = owned_visible(user, LineageNode.objects.filter(ref_type__in=LINEAGE_REF_TYPES))
    return nodes.filter(Q(pk__in=own.order_by().values("pk")) | Q(pk__in=allowed.order_by().values("pk")))


def hidden_node_ids(user: Any, ref_types: Mapping[int, str]) -> set[int]:
    """Of these nodes (id -> ref_type), the ids `user` may not see (another team's records included)."""
    if user is UNRESTRICTED:
        return set()
    ids = sorted(ref_types)
    seen: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = LineageNode.objects.filter(pk__in=ids[start:start + _CHUNK])
        seen.update(visible_nodes(user, chunk).values_list("pk", flat=True))
    return set(ids) - seen


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
    return (owned_visible(user, attestations).exclude(subjects__node__in=hidden).exclude(edges__source__in=hidden)
            .exclude(edges__target__in=hidden))


def visible_edges(user: Any, edges: QuerySet[LineageEdge]) -> QuerySet[LineageEdge]:
    """`edges` without those with an end hidden from `user`."""
    if user is UNRESTRICTED:
        return edges
    hidden = hidden_nodes(user).values("pk")
    return edges.exclude(source__in=hidden).exclude(target__in=hidden)


def hidden_nodes(user: Any) -> QuerySet[LineageNode]:
    """Every node that `user` may not see: governed records hidden from them and other teams' records."""
    if user is UNRESTRICTED:
        return LineageNode.objects.none()
    return LineageNode.objects.exclude(pk__in=visible_nodes(user, LineageNode.objects.all()).order_by().values("pk"))


def node_owner(node: LineageNode) -> str:
    """The team a node belongs to: its own `owner_team`, or for a governed record the owner its app names."""
    if not names_governed_subject(node.ref_type):
        return node.owner_team
    subject = resolve_subject(node.ref_type, node.ref_id)
    return subject.owner if subject is not None else SHARED


def writable_node_list(user: Any, nodes: Iterable[LineageNode]) -> list[LineageNode]:
    """The nodes `user` may write about (attest, link into): visible to them and owned by a team they write for."""
    nodes = list(nodes)
    if is_system_actor(user):
        return nodes
    return [node for node in visible_node_list(user, nodes) if may_write_owner(user, node_owner(node))]

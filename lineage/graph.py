"""Graph traversal over `LineageEdge`: breadth-first, one query per level (and per 500 ids).

A level-by-level BFS costs `depth` round trips, works the same on PostgreSQL and SQLite, and
never revisits a node, whereas a recursive CTE over a DAG enumerates every path. Both
traversals and the cycle check go through `_step`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection

from lineage.models import LineageEdge

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"
BOTH = "both"
DIRECTIONS = (UPSTREAM, DOWNSTREAM, BOTH)
MAX_DEPTH = 50
DEFAULT_MAX_NODES = 5000
_CHUNK = 500
# Any 64-bit constant: the advisory lock that serializes edge inserts on PostgreSQL.
_EDGE_LOCK_KEY = 0x6C696E6561676501


@dataclass
class Traversal:
    """Nodes reached (id -> signed depth: negative upstream, positive downstream) and edges seen."""

    depths: dict[int, int] = field(default_factory=dict)
    edges: dict[tuple[int, int], int | None] = field(default_factory=dict)
    truncated: bool = False


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def _step(frontier: list[int], direction: str) -> list[tuple[int, int, int | None]]:
    """Edges (source, target, attestation id) leaving `frontier` in `direction`."""
    found: list[tuple[int, int, int | None]] = []
    column = "source_id__in" if direction == DOWNSTREAM else "target_id__in"
    for chunk in _chunks(frontier):
        found.extend(LineageEdge.objects.filter(**{column: chunk})
                     .values_list("source_id", "target_id", "attestation_id"))
    return found


def _walk(start_id: int, direction: str, depth: int, result: Traversal, max_nodes: int) -> None:
    sign = -1 if direction == UPSTREAM else 1
    seen = {start_id}
    frontier = [start_id]
    for level in range(1, depth + 1):
        if not frontier:
            return
        next_frontier: list[int] = []
        for source, target, attestation_id in _step(frontier, direction):
            result.edges[(source, target)] = attestation_id
            other = target if direction == DOWNSTREAM else source
            if other in seen:
                continue
            if len(result.depths) >= max_nodes:
                result.truncated = True
                continue
            seen.add(other)
            result.depths.setdefault(other, sign * level)
            next_frontier.append(other)
        frontier = next_frontier


def traverse(*, start_id: int, direction: str, depth: int, max_nodes: int = DEFAULT_MAX_NODES) -> Traversal:
    """Nodes within `depth` hops of `start_id`; edges between reached nodes only."""
    result = Traversal(depths={start_id: 0})
    if direction in (UPSTREAM, BOTH):
        _walk(start_id, UPSTREAM, depth, result, max_nodes)
    if direction in (DOWNSTREAM, BOTH):
        _walk(start_id, DOWNSTREAM, depth, result, max_nodes)
    result.edges = {pair: att for pair, att in result.edges.items()
                    if pair[0] in result.depths and pair[1] in result.depths}
    return result


def reaches(*, from_id: int, to_id: int) -> bool:
    """Whether a directed path leads from `from_id` to `to_id` (unbounded, each node visited once)."""
    if from_id == to_id:
        return True
    seen = {from_id}
    frontier = [from_id]
    while frontier:
        next_frontier: list[int] = []
        for _source, target, _attestation in _step(frontier, DOWNSTREAM):
            if target == to_id:
                return True
            if target not in seen:
                seen.add(target)
                next_frontier.append(target)
        frontier = next_frontier
    return False


def lock_edges() -> None:
    """Serialize edge inserts until the transaction ends, so two writers cannot close a cycle together.

    SQLite needs nothing: our write transactions are IMMEDIATE and hold the database lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_EDGE_LOCK_KEY])

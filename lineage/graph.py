"""Graph traversal over `LineageEdge` with recursive CTEs (PostgreSQL and SQLite both run them).

The walk is `UNION` over (node, depth) pairs, so each node enters at most once per level and the
work is bounded by nodes x depth, not by the number of paths through the DAG. Edges between the
reached nodes are fetched afterwards with one query per 500 ids. The cycle check walks without a
depth limit over node ids only and stops at the first hit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection

from audit.ledger import ledger_head_lock
from lineage.models import LineageEdge, LineageNode

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
    # id -> (kind, ref_type, ref_id, digest, label), read in the same query as the walk.
    rows: dict[int, tuple[str, str, str, str, str]] = field(default_factory=dict)
    edges: dict[tuple[int, int], int | None] = field(default_factory=dict)
    truncated: bool = False


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def _edges_into(node_ids: list[int], reached: set[int]) -> dict[tuple[int, int], int | None]:
    """Edges whose both ends were reached (looked up by target), with their attestation ids."""
    found: dict[tuple[int, int], int | None] = {}
    for chunk in _chunks(node_ids):
        for source, target, attestation_id in LineageEdge.objects.filter(target_id__in=chunk).values_list(
                "source_id", "target_id", "attestation_id"):
            if source in reached:
                found[(source, target)] = attestation_id
    return found


_WALK_SQL = {
    UPSTREAM: """
        WITH RECURSIVE walk(id, depth) AS (
            SELECT CAST(%s AS BIGINT), 0
            UNION
            SELECT e.source_id, w.depth + 1 FROM {edge} e JOIN walk w ON e.target_id = w.id WHERE w.depth < %s
        )
        SELECT n.id, MIN(w.depth) AS depth, n.kind, n.ref_type, n.ref_id, n.digest, n.label
        FROM walk w JOIN {node} n ON n.id = w.id
        GROUP BY n.id, n.kind, n.ref_type, n.ref_id, n.digest, n.label ORDER BY depth, n.id LIMIT %s""",
    DOWNSTREAM: """
        WITH RECURSIVE walk(id, depth) AS (
            SELECT CAST(%s AS BIGINT), 0
            UNION
            SELECT e.target_id, w.depth + 1 FROM {edge} e JOIN walk w ON e.source_id = w.id WHERE w.depth < %s
        )
        SELECT n.id, MIN(w.depth) AS depth, n.kind, n.ref_type, n.ref_id, n.digest, n.label
        FROM walk w JOIN {node} n ON n.id = w.id
        GROUP BY n.id, n.kind, n.ref_type, n.ref_id, n.digest, n.label ORDER BY depth, n.id LIMIT %s""",
}

_REACH_SQL = """
    WITH RECURSIVE reach(id) AS (
        SELECT CAST(%s AS BIGINT)
        UNION
        SELECT e.target_id FROM {edge} e JOIN reach r ON e.source_id = r.id
    )
    SELECT 1 FROM reach WHERE id = %s LIMIT 1"""


def _walk(start_id: int, direction: str, depth: int, result: Traversal, max_nodes: int) -> None:
    sign = -1 if direction == UPSTREAM else 1
    sql = _WALK_SQL[direction].format(edge=connection.ops.quote_name(LineageEdge._meta.db_table),
                                      node=connection.ops.quote_name(LineageNode._meta.db_table))
    with connection.cursor() as cursor:
        # One more row than allowed tells us whether the walk was cut short.
        cursor.execute(sql, [start_id, depth, max_nodes + 1])
        rows = cursor.fetchall()
    if len(rows) > max_nodes:
        result.truncated = True
        rows = rows[:max_nodes]
    for node_id, level, *columns in rows:
        if node_id == start_id:
            result.rows[node_id] = tuple(columns)  # type: ignore[assignment]
        elif len(result.depths) < max_nodes:
            if node_id not in result.depths:
                result.depths[node_id] = sign * level
                result.rows[node_id] = tuple(columns)  # type: ignore[assignment]
        else:
            result.truncated = True


def traverse(*, start_id: int, direction: str, depth: int, max_nodes: int = DEFAULT_MAX_NODES) -> Traversal:
    """Nodes within `depth` hops of `start_id` (nearest first); edges between reached nodes only."""
    result = Traversal(depths={start_id: 0})
    if direction in (UPSTREAM, BOTH):
        _walk(start_id, UPSTREAM, depth, result, max_nodes)
    if direction in (DOWNSTREAM, BOTH):
        _walk(start_id, DOWNSTREAM, depth, result, max_nodes)
    reached = set(result.depths)
    result.edges = _edges_into(sorted(reached), reached)
    return result


def reaches(*, from_id: int, to_id: int) -> bool:
    """Whether a directed path leads from `from_id` to `to_id` (unbounded, each node visited once)."""
    if from_id == to_id:
        return True
    sql = _REACH_SQL.format(edge=connection.ops.quote_name(LineageEdge._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [from_id, to_id])
        return cursor.fetchone() is not None


def lock_edges() -> None:
    """Serialize edge inserts until the transaction ends, so two writers cannot close a cycle together.

    SQLite needs nothing: our write transactions are IMMEDIATE and hold the database lock. The
    ledger head is locked first, the one lock order of every transaction that appends.
    """
    if connection.vendor == "postgresql":
        ledger_head_lock()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_EDGE_LOCK_KEY])

"""The only writer of the ledger: appends (single and batch), checkpoints, and proofs.

An append runs inside the caller's transaction, so a change and its entry commit together
or not at all. It serializes on the chain head: `SELECT ... FOR UPDATE` of the one
`LedgerHead` row on PostgreSQL; on SQLite every write transaction is IMMEDIATE, which takes
the database write lock at BEGIN. Concurrent writers therefore queue; they never read the
same head, so the chain cannot fork and `seq` has no gaps.

Whatever does not depend on the head (the JCS bytes of actor, action, payload and subject) is
encoded before the lock. On PostgreSQL an append of up to `SERVER_APPEND_MAX` entries is then a
single call of the `audit_ledger_append` function (migrations audit/0003, 0009), which locks the head,
reads the clock, splices and hashes the entries, extends the Merkle frontier, inserts and moves
the head: the head is held for that one statement and the commit, with no client round trip or
client CPU in between. Larger batches, and SQLite, do the same steps here in Python (COPY on
PostgreSQL), with the same clock (the database server's on PostgreSQL) and the same bytes.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.utils import timezone

from audit import jcs, merkle, note
from audit.keys import active_key
from audit.models import Checkpoint, LedgerEntry, LedgerHead, MerkleNode, SigningKey, node_key
from core.errors import InvalidInput, NotFound, Unavailable
from core.outbox.services import task_enqueue_on_commit

logger = logging.getLogger(__name__)

ZERO_HASH = bytes(32)
HASH_SIZE = 32


@dataclass(frozen=True)
class EntryDraft:
    """What a caller wants recorded; `seq`, time and hashes are assigned at append."""

    actor: str
    action: str
    subject_type: str
    subject_id: str
    payload: Any = field(default_factory=dict)


def actor_label(actor: Any) -> str:
    """`user:<username>` for users, the string itself for `system:<task>` and `service:<name>`."""
    if isinstance(actor, str):
        label = actor
    elif hasattr(actor, "ledger_actor_label"):
        label = actor.ledger_actor_label()
    elif hasattr(actor, "get_username") and getattr(actor, "is_authenticated", False):
        label = f"user:{actor.get_username()}"
    else:
        label = ""
    if not label:
        raise InvalidInput("A ledger entry needs an actor.", code="ledger_actor_missing")
    return label


def subject_ref(subject: Any) -> tuple[str, str]:
    """(type, id) of a model instance (`app_label.model_name`, pk) or of an explicit pair."""
    if isinstance(subject, models.Model):
        meta = subject._meta
        return f"{meta.app_label}.{meta.model_name}", str(subject.pk)
    subject_type, subject_id = subject
    return str(subject_type), str(subject_id)


def draft(*, actor: Any, action: str, subject: Any, payload: Any = None) -> EntryDraft:
    subject_type, subject_id = subject_ref(subject)
    return EntryDraft(actor=actor_label(actor), action=action, subject_type=subject_type,
                      subject_id=subject_id, payload={} if payload is None else payload)


def format_time(moment: datetime) -> str:
    """UTC, microseconds, `Z`: one spelling, so the canonical bytes are reproducible."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_ready(payload: Any) -> Any:
    # Dates, decimals and UUIDs become strings, the way Django serializes them.
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


_ABSENT: Any = object()


def entry_document(*, seq: int, recorded_at: str, actor: str, action: str, subject_type: str,
                   subject_id: str, payload: Any, prev_hash: bytes, subject_prev: Any = _ABSENT) -> dict[str, Any]:
    """The fields that are hashed: everything but `entry_hash`.

    `subject_prev` (the seq of the previous entry about the same subject, null for the first)
    is in every entry from the ledger's cut-over seq on (`LedgerHead.subject_prev_from`);
    entries written before it lack the field.
    """
    document = {
        "seq": seq,
        "recorded_at": recorded_at,
        "actor": actor,
        "action": action,
        "subject": {"type": subject_type, "id": subject_id},
        "payload": payload,
        "prev_hash": prev_hash.hex(),
    }
    if subject_prev is not _ABSENT:
        document["subject_prev"] = subject_prev
    return document


def _frontier_from_bytes(tree_size: int, raw: bytes) -> list[tuple[int, bytes]]:
    """The head stores only the hashes; their levels are the set bits of tree_size, largest first."""
    levels = [bit for bit in range(tree_size.bit_length() - 1, -1, -1) if tree_size >> bit & 1]
    return [(level, raw[i * HASH_SIZE:(i + 1) * HASH_SIZE]) for i, level in enumerate(levels)]


def _frontier_from_head(head: LedgerHead) -> list[tuple[int, bytes]]:
    return _frontier_from_bytes(head.tree_size, bytes(head.frontier))


def _lock_head() -> LedgerHead:
    head = LedgerHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        # Created by the migration; recreate only if someone removed it (first append wins).
        LedgerHead.objects.get_or_create(pk=1)
        head = LedgerHead.objects.select_for_update().get(pk=1)
    return head


def _lock_head_raw(cursor: Any) -> tuple[int, bytes, bytes]:
    """Lock the chain head with one statement and return (tree_size, head_hash, frontier)."""
    suffix = " FOR UPDATE" if connection.features.has_select_for_update else ""
    cursor.execute(f"SELECT tree_size, head_hash, frontier FROM audit_ledgerhead WHERE id = 1{suffix}")
    row = cursor.fetchone()
    if row is None:
        LedgerHead.objects.get_or_create(pk=1)
        cursor.execute(f"SELECT tree_size, head_hash, frontier FROM audit_ledgerhead WHERE id = 1{suffix}")
        row = cursor.fetchone()
    return int(row[0]), bytes(row[1]), bytes(row[2])


def _encode_parts(item: EntryDraft, memo: dict[tuple[str, ...], bytes] | None = None) -> tuple[bytes, bytes]:
    """JCS of the fields known before the head is locked: the prefix up to payload, and subject.

    `memo` (one per batch) keeps the JCS of the strings a batch repeats: actor, action, subject type.
    """
    value = item.payload
    try:
        if type(value) is dict and len(value) > 1 and len(set(map(id, value.values()))) < len(value):
            payload = jcs.canonicalize_members(value)  # a shared value (a created row's state) encoded once
        else:
            payload = jcs.canonicalize(value)
    except jcs.CanonicalizationError:
        payload = jcs.canonicalize(_json_ready(item.payload))
    if memo is None:
        memo = {}
    head_key = (item.action, item.actor)
    head = memo.get(head_key)
    if head is None:
        head = memo[head_key] = (b'{"action":' + jcs.canonicalize(item.action) + b',"actor":'
                                 + jcs.canonicalize(item.actor) + b',"payload":')
    type_key = (item.subject_type,)
    subject_type = memo.get(type_key)
    if subject_type is None:
        subject_type = memo[type_key] = b',"type":' + jcs.canonicalize(item.subject_type) + b"}"
    # The keys of {"id", "type"} are fixed ASCII, so this is the object's RFC 8785 form.
    subject = b'{"id":' + jcs.canonicalize(item.subject_id) + subject_type
    return head + payload + b',"prev_hash":"', subject


def _splice(prefix: bytes, subject: bytes, *, prev_hash: bytes, recorded_at: bytes, seq: int,
            subject_prev: int | None) -> bytes:
    """The entry's RFC 8785 bytes. Top-level keys are fixed ASCII, so sorted order is known:
    action, actor, payload, prev_hash, recorded_at, seq, subject, subject_prev."""
    return b"".join((prefix, prev_hash.hex().encode(), b'","recorded_at":"', recorded_at, b'","seq":',
                     str(seq).encode(), b',"subject":', subject, b',"subject_prev":',
                     b"null" if subject_prev is None else str(subject_prev).encode(), b"}"))


def _previous_by_subject(cursor: Any, drafts: Sequence[EntryDraft]) -> dict[tuple[str, str], int]:
    """The latest seq about each subject of the batch, read with the head held (so it is final)."""
    if connection.vendor == "postgresql":
        return _previous_by_subject_postgresql(drafts)
    wanted = sorted({(item.subject_type, item.subject_id) for item in drafts})
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(wanted), 400):
        chunk = wanted[start:start + 400]
        values = ", ".join(["(%s, %s)"] * len(chunk))
        cursor.execute(
            "SELECT subject_type, subject_id, max(seq) FROM audit_ledgerentry WHERE "
            f"(subject_type, subject_id) IN (VALUES {values}) GROUP BY subject_type, subject_id",
            [value for pair in chunk for value in pair])
        for subject_type, subject_id, seq in cursor.fetchall():
            if seq is not None:
                found[(subject_type, subject_id)] = int(seq)
    return found


# ORDER BY ... LIMIT 1, not max(seq): one index entry per subject whatever the statistics say
# (max(seq) was planned as a read of every entry about the subject; see migration audit/0008).
_PREVIOUS_SQL = ("SELECT s.i, (SELECT e.seq FROM audit_ledgerentry e WHERE e.subject_type = %s "
                 "AND e.subject_id = s.i ORDER BY e.seq DESC LIMIT 1) FROM unnest(%s::text[]) AS s(i)")


def _previous_by_subject_postgresql(drafts: Sequence[EntryDraft]) -> dict[tuple[str, str], int]:
    # One statement per subject type (a batch usually has one), bound on the server: the ids
    # travel as one binary text[], not as two arrays quoted in Python for the client-side cursor.
    import psycopg

    ids_by_type: dict[str, dict[str, None]] = {}
    for item in drafts:
        ids_by_type.setdefault(item.subject_type, {})[item.subject_id] = None
    found: dict[tuple[str, str], int] = {}
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as raw:
        for subject_type, ids in ids_by_type.items():
            raw.execute(_PREVIOUS_SQL, [subject_type, list(ids)], binary=True)
            for subject_id, seq in raw.fetchall():
                if seq is not None:
                    found[(subject_type, subject_id)] = seq
    log_raw_query(connection, _PREVIOUS_SQL % ("...", f"<{len(drafts)} ids>"), started)
    return found


def log_raw_query(database: Any, sql: str, started: float) -> None:
    """Put a statement sent on a raw psycopg cursor into Django's query log (when it keeps one), as
    Django's own cursor would, so query counts and captured queries include it."""
    if database.queries_logged:
        database.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


_ENTRY_COLUMNS = ("seq", "recorded_at", "actor", "action", "subject_type", "subject_id",
                  "canonical", "prev_hash", "entry_hash", "leaf_hash")
_INSERT_ENTRY = ("INSERT INTO audit_ledgerentry (" + ", ".join(_ENTRY_COLUMNS) + ") VALUES ("
                 + ", ".join(["%s"] * len(_ENTRY_COLUMNS)) + ")")


_ENTRY_COPY_TYPES = ("int8", "timestamptz", "varchar", "varchar", "varchar", "varchar", "bytea", "bytea", "bytea",
                     "bytea")


def _write_rows(cursor: Any, rows: Iterable[tuple[Any, ...]],
                nodes_and_head: Callable[[], tuple[list[tuple[int, bytes]], tuple[int, bytes, bytes]]]) -> None:
    """Insert the entries, then the nodes and head that `nodes_and_head` gives once they are all in."""
    if connection.vendor == "postgresql":
        _write_rows_postgresql(rows, nodes_and_head)
        return
    # Store the time as the ORM does on this backend, so equality filters on it match.
    adapt = connection.ops.adapt_datetimefield_value
    cursor.executemany(_INSERT_ENTRY, [(row[0], adapt(row[1]), *row[2:]) for row in rows])
    nodes, head = nodes_and_head()
    if nodes:
        cursor.executemany("INSERT INTO audit_merklenode (node_id, hash) VALUES (%s, %s)", nodes)
    cursor.execute("UPDATE audit_ledgerhead SET tree_size = %s, head_hash = %s, frontier = %s WHERE id = 1",
                   list(head))


def _write_rows_postgresql(rows: Iterable[tuple[Any, ...]],
                           nodes_and_head: Callable[[], tuple[list[tuple[int, bytes]], tuple[int, bytes, bytes]]],
                           ) -> None:
    # Django's psycopg cursors bind parameters client-side (quoting in Python). A plain psycopg
    # cursor binds server-side, and COPY is formatted by psycopg in C.
    import psycopg

    # Binary COPY: the bytea columns (most of each row) travel as raw bytes, not hex text that
    # the client formats and the server parses. Each row is written as soon as it is made, and the
    # Merkle nodes are computed before the COPY ends: the server stores and indexes the rows
    # already sent meanwhile.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as raw:
        with raw.copy("COPY audit_ledgerentry (" + ", ".join(_ENTRY_COLUMNS) + ") FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_ENTRY_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
            nodes, head = nodes_and_head()
        if nodes:
            with raw.copy("COPY audit_merklenode (node_id, hash) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(("int8", "bytea"))
                for node in nodes:
                    copy.write_row(node)
        raw.execute("UPDATE audit_ledgerhead SET tree_size = %s, head_hash = %s, frontier = %s WHERE id = 1",
                    list(head))


# Appends of up to this many entries run as one call of the server-side function (migrations
# audit/0003, 0009): the head is locked, the entries hashed and inserted, the frontier extended and
# the head moved in a single statement. Larger batches are hashed here and sent with COPY,
# which is faster per entry than the function's row-by-row INSERTs.
SERVER_APPEND_MAX = 64
_SERVER_ARGUMENT_TYPES = ("bytea", "bytea", "text", "text", "text", "text")


class _ServerAppendStatements(dict[int, str]):
    """`SELECT * FROM audit_ledger_append(ARRAY[...], ...)` for n entries, with scalar parameters
    (psycopg binds scalars far more cheaply than it dumps Python lists as arrays)."""

    def __missing__(self, count: int) -> str:
        arrays = ", ".join("ARRAY[" + ", ".join([f"%s::{kind}"] * count) + "]" for kind in _SERVER_ARGUMENT_TYPES)
        self[count] = f"SELECT * FROM audit_ledger_append({arrays})"
        return self[count]


_SERVER_APPEND_SQL = _ServerAppendStatements()


def _append_on_server(drafts: Sequence[EntryDraft], parts: list[tuple[bytes, bytes]]) -> list[LedgerEntry]:
    """PostgreSQL: lock, time, hash, insert and move the head in one round trip."""
    import psycopg

    arguments = ([prefix for prefix, _ in parts] + [subject for _, subject in parts]
                 + [item.actor for item in drafts] + [item.action for item in drafts]
                 + [item.subject_type for item in drafts] + [item.subject_id for item in drafts])
    # A raw cursor skips Django's wrapper: restore it, so a deadlock or a lost connection here is
    # django.db.OperationalError (a 503 with Retry-After) like everywhere else, never a bare psycopg error.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as raw:
        # Binary results: the bytea columns arrive as raw bytes and the time in its binary form, not
        # as hex and ISO text to decode while the head is still held (until the caller's COMMIT).
        raw.execute(_SERVER_APPEND_SQL[len(drafts)], arguments, binary=True)
        results = raw.fetchall()
    entries = []
    for item, (seq, recorded_at, canonical, prev_hash, entry_hash, leaf) in zip(drafts, results, strict=True):
        entries.append(LedgerEntry(seq=seq, recorded_at=recorded_at, actor=item.actor, action=item.action,
                                   subject_type=item.subject_type, subject_id=item.subject_id, canonical=canonical,
                                   prev_hash=prev_hash, entry_hash=entry_hash, leaf_hash=leaf))
    return entries


def _server_time(cursor: Any) -> datetime:
    """PostgreSQL's clock, read with the head held (the server-side append uses the same clock)."""
    cursor.execute("SELECT clock_timestamp()")
    moment: datetime = cursor.fetchone()[0]
    return moment


@dataclass(frozen=True)
class LockedHead:
    """The chain head as a caller read it under its row lock, in the current transaction.

    Lets a caller that had to lock the head anyway (audit.capture locks it before any row, and
    reads the row in the same statement) spare the append its own locking round trip. It is
    used only while no append has run on this connection since it was read (`generation`);
    otherwise the append locks and reads the head itself, as always.
    """

    generation: int
    tree_size: int
    head_hash: bytes
    frontier: bytes


def append_generation() -> int:
    """Counts appends on this connection; a LockedHead is stale once it has moved."""
    return getattr(connection, "_ledger_append_generation", 0)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch builds its many short-lived objects.

    Those objects (rows, states, drafts, entry bytes) are freed by reference counting; but their
    allocations keep triggering collections, and the full ones walk every object of the process:
    in a 5,000-row `bulk_create` about a sixth of the time (bench/bench_capture.py). Re-enabled on
    exit only if it was enabled on entry, so nesting is harmless.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def ledger_append(*, actor: Any, action: str, subject: Any, payload: Any = None) -> LedgerEntry:
    """Append one entry inside the caller's transaction and return it (outside any transaction, on
    PostgreSQL, the append is one statement and its own transaction)."""
    return ledger_append_many([draft(actor=actor, action=action, subject=subject, payload=payload)],
                              checkpoint=False)[0]


def ledger_append_many(drafts: Sequence[EntryDraft], *, checkpoint: bool = True,
                       head: LockedHead | None = None, returning: bool = True) -> list[LedgerEntry]:
    """Append many entries in one transaction (all or none); a checkpoint follows the commit.

    Returns the entries written, or, with `returning=False` (callers that only record), nothing.
    """
    if not drafts:
        return []
    for item in drafts:
        if not item.actor:
            raise InvalidInput("A ledger entry needs an actor.", code="ledger_actor_missing")
    # Encode everything that does not depend on the chain head before taking the lock.
    memo: dict[tuple[str, ...], bytes] = {}
    parts = [_encode_parts(item, memo) for item in drafts]
    if connection.vendor == "postgresql" and len(drafts) <= SERVER_APPEND_MAX:
        # Outside any transaction the function's one statement is the whole transaction: no BEGIN
        # and COMMIT round trips, and the server commits (and lets go of the head) with no wait on
        # this process in between; on_commit then runs at once. Inside one, no savepoint: if the
        # append fails, the caller's whole transaction must fail with it.
        alone = not connection.in_atomic_block and connection.get_autocommit()
        with nullcontext() if alone else transaction.atomic(savepoint=False):
            # The function locks the head itself (at no cost if the caller already holds it).
            connection._ledger_append_generation = append_generation() + 1  # type: ignore[attr-defined]
            entries = _append_on_server(drafts, parts)
            if checkpoint:
                transaction.on_commit(_checkpoint_after_commit)
        return entries if returning else []
    with transaction.atomic(savepoint=False), connection.cursor() as cursor, gc_paused():
        if head is not None and head.generation == append_generation():
            seq, prev_hash, frontier_bytes = head.tree_size, head.head_hash, head.frontier
        else:
            seq, prev_hash, frontier_bytes = _lock_head_raw(cursor)
        connection._ledger_append_generation = append_generation() + 1  # type: ignore[attr-defined]
        first_seq = seq
        # On PostgreSQL the server's clock, as in the server-side append, so that recorded_at
        # follows one clock along the chain whichever path wrote an entry.
        now = _server_time(cursor) if connection.vendor == "postgresql" else timezone.now()
        recorded_at = format_time(now).encode()
        previous = _previous_by_subject(cursor, drafts)
        rows: list[tuple[Any, ...]] = []
        leaves: list[bytes] = []

        def entry_rows() -> Iterator[tuple[Any, ...]]:
            # A generator, so that on PostgreSQL each row goes into the COPY as soon as it is hashed.
            nonlocal seq, prev_hash
            sha256 = hashlib.sha256
            leaf_hash = merkle.leaf_hash
            for item, (prefix, subject) in zip(drafts, parts, strict=True):
                key = (item.subject_type, item.subject_id)
                canonical = _splice(prefix, subject, prev_hash=prev_hash, recorded_at=recorded_at, seq=seq,
                                    subject_prev=previous.get(key))
                previous[key] = seq
                entry_hash = sha256(canonical).digest()
                leaves.append(leaf_hash(canonical))
                row = (seq, now, item.actor, item.action, item.subject_type, item.subject_id, canonical,
                       prev_hash, entry_hash, leaves[-1])
                rows.append(row)
                prev_hash = entry_hash
                seq += 1
                yield row

        def nodes_and_head() -> tuple[list[tuple[int, bytes]], tuple[int, bytes, bytes]]:
            frontier, completed = merkle.frontier_extend(_frontier_from_bytes(first_seq, frontier_bytes), leaves,
                                                         first_seq)
            nodes = [(node_key(level, index), node) for level, index, node in completed]
            return nodes, (seq, prev_hash, b"".join(node for _, node in frontier))

        _write_rows(cursor, entry_rows(), nodes_and_head)
        if checkpoint:
            transaction.on_commit(_checkpoint_after_commit)
    if not returning:
        return []
    return [LedgerEntry(**dict(zip(_ENTRY_COLUMNS, row, strict=True))) for row in rows]


def _checkpoint_after_commit() -> None:
    try:
        checkpoint_create()
    except Unavailable as exc:
        # Writes must not fail because the signing key is absent; the scheduled job retries.
        logger.warning("checkpoint after batch skipped: %s", exc.code)


WITNESS_TASK = "audit.tasks.checkpoint_witness_task"


def checkpoint_create() -> Checkpoint:
    """Sign the current tree head as a C2SP checkpoint, or return the one already made for it."""
    key = active_key(SigningKey.Purpose.CHECKPOINT)
    with transaction.atomic():
        head = _lock_head()
        existing = Checkpoint.objects.filter(tree_size=head.tree_size).first()
        if existing is not None:
            return existing
        root = merkle.frontier_root(_frontier_from_head(head))
        body = note.checkpoint_body(settings.LEDGER_ORIGIN, head.tree_size, root)
        signed = note.sign_note(body, name=key.record.name, private_key=key.private_key)
        created = Checkpoint.objects.create(tree_size=head.tree_size, root_hash=root, note=signed,
                                            key=key.record, created_at=timezone.now())
        if settings.WITNESS_POLICY_FILE:
            # Named, not imported: the task module imports the services that import this one.
            task_enqueue_on_commit(WITNESS_TASK)
        return created


# --- Proofs ----------------------------------------------------------------------------------

def current_tree_size() -> int:
    head = LedgerHead.objects.filter(pk=1).values_list("tree_size", flat=True).first()
    return int(head or 0)


def _lookup_nodes(wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Fetch complete-subtree hashes: leaves from the entries, higher levels from the node table."""
    found: dict[tuple[int, int], bytes] = {}
    leaf_indices = [index for level, index in wanted if level == 0]
    keys = {node_key(level, index): (level, index) for level, index in wanted if level > 0}
    if leaf_indices:
        for seq, leaf in LedgerEntry.objects.filter(seq__in=leaf_indices).values_list("seq", "leaf_hash"):
            found[(0, seq)] = bytes(leaf)
    if keys:
        for key, node in MerkleNode.objects.filter(node_id__in=list(keys)).values_list("node_id", "hash"):
            found[keys[key]] = bytes(node)
    return found


def root_at(tree_size: int) -> bytes:
    """The Merkle root of the first `tree_size` entries, from stored complete subtrees."""
    if tree_size == 0:
        return merkle.root_hash([])
    subtrees = merkle.complete_subtrees(0, tree_size)
    found = _lookup_nodes(subtrees)
    try:
        return merkle.fold_subtrees([found[subtree] for subtree in subtrees])
    except KeyError as exc:
        raise NotFound("The ledger has no such tree.", code="tree_size_unknown") from exc


def inclusion_proof(*, leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 inclusion proof for entry `leaf_index` in the tree of size `tree_size`."""
    size_now = current_tree_size()
    if tree_size > size_now:
        raise InvalidInput(f"tree_size {tree_size} exceeds the ledger size {size_now}.",
                           code="tree_size_too_large", extra={"tree_size": tree_size, "ledger_size": size_now})
    if not 0 <= leaf_index < tree_size:
        raise InvalidInput(f"Entry {leaf_index} is not in a tree of size {tree_size}.",
                           code="leaf_index_out_of_range", extra={"leaf_index": leaf_index, "tree_size": tree_size})
    return merkle.build_proof(merkle.inclusion_proof_ranges(leaf_index, tree_size), _lookup_nodes)


def consistency_proof(*, first_size: int, second_size: int) -> list[bytes]:
    """RFC 9162 consistency proof between two tree sizes of this ledger."""
    size_now = current_tree_size()
    if second_size > size_now:
        raise InvalidInput(f"second {second_size} exceeds the ledger size {size_now}.",
                           code="tree_size_too_large", extra={"second": second_size, "ledger_size": size_now})
    if not 0 < first_size <= second_size:
        raise InvalidInput("first must be at least 1 and at most second.", code="invalid_tree_sizes",
                           extra={"first": first_size, "second": second_size})
    return merkle.build_proof(merkle.consistency_proof_ranges(first_size, second_size), _lookup_nodes)


def entries_for_subjects(subjects: Iterable[tuple[str, str]]) -> list[LedgerEntry]:
    """Every entry about any of the given (type, id) subjects, in ledger order."""
    query = models.Q(pk__in=[])
    for subject_type, subject_id in subjects:
        query |= models.Q(subject_type=subject_type, subject_id=subject_id)
    return list(LedgerEntry.objects.filter(query).order_by("seq"))


# --- Lock order --------------------------------------------------------------------------------
# Every transaction that writes the ledger ends up holding the chain-head lock. If it also locks
# rows, the order must be the same everywhere, or two writers deadlock (one holds a row and waits
# for the head, the other the reverse). The rule: the head first. Services lock rows only through
# `lock_for_update` (and advisory locks after `ledger_head_lock`); governed saves take the head
# before reading a row's "before" (audit.capture.record). tests/integration/test_lock_order.py shows the
# deadlock that a plain `select_for_update()` before an append runs into, and that this avoids it.
_HEAD_LOCK_SQL = "SELECT 1 FROM audit_ledgerhead WHERE id = 1 FOR UPDATE"

_M = TypeVar("_M", bound=models.Model)


def ledger_head_lock() -> None:
    """Lock the chain head in the current transaction, before any row lock it will take.

    On SQLite this is a no-op: write transactions there are IMMEDIATE, so they are serialized
    whole and cannot deadlock on row locks.
    """
    if connection.features.has_select_for_update and not connection.get_autocommit():
        with connection.cursor() as cursor:
            cursor.execute(_HEAD_LOCK_SQL)


def lock_for_update(queryset: models.QuerySet[_M], **options: Any) -> models.QuerySet[_M]:
    """`queryset.select_for_update(**options)` for a transaction that appends: the head is locked first."""
    ledger_head_lock()
    return queryset.select_for_update(**options)


# --- One statement: a governed row write and its entry (migrations audit/0007, 0009) ---
# audit.capture sends a governed save, create or delete on PostgreSQL as one call of
# `audit_governed_write`: the head locked first, the row's (guarded) statement, and the append
# through `audit_ledger_append_entry` (the per-entry step of every server-side append), with no
# client round trip in between.

_GOVERNED_WRITE_SQL = "SELECT out_rows, out_key FROM audit_governed_write(%s, %s, %s, %s, %s, %s, %s, %s)"


def ledger_governed_write(*, statement: str, returning: bool, entry: EntryDraft | None,
                          key_subject: bool = False) -> tuple[int, str | None] | None:
    """Run a row's write `statement` (SQL with its values inlined) with the ledger head locked
    first, appending `entry` in the same statement when the write touched a row.

    Returns None when it touched no row (a guard that found the row changed): then nothing was
    written and nothing appended. Else (rows touched, the key it returned when `returning`).
    With `key_subject`, the entry's subject id is the key the statement returned (an INSERT
    whose integer key the database assigns). Runs in the caller's transaction, or as its own
    one-statement transaction in autocommit.
    """
    import psycopg

    if entry is not None and not entry.actor:
        raise InvalidInput("A ledger entry needs an actor.", code="ledger_actor_missing")
    if entry is None:
        arguments: list[Any] = [statement, returning, None, None, None, None, None, None]
    else:
        prefix, subject = _encode_parts(entry)
        if key_subject:
            subject = jcs.canonicalize(entry.subject_type)
        arguments = [statement, returning, prefix, subject, entry.actor, entry.action, entry.subject_type,
                     None if key_subject else entry.subject_id]
    # The connection itself, not the thread-local proxy `django.db.connection`: each attribute read
    # through the proxy costs a context-local lookup, and this runs once per governed save.
    database = connections[DEFAULT_DB_ALIAS]
    database.ensure_connection()
    database.validate_no_broken_transaction()
    started = time.monotonic()
    # A raw cursor binds on the server (bytea as binary) and is prepared after a few calls; the
    # error wrapper keeps a deadlock or a lost connection a django.db.OperationalError.
    with database.wrap_database_errors, psycopg.Cursor(database.connection) as raw:
        raw.execute(_GOVERNED_WRITE_SQL, arguments)
        row = raw.fetchone()
    log_raw_query(database, f"SELECT audit_governed_write({statement!r}, ...)", started)
    if row is None:
        return None
    if entry is not None:
        database._ledger_append_generation = getattr(database, "_ledger_append_generation", 0) + 1  # type: ignore[attr-defined]
    return int(row[0]), row[1]

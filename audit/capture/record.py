"""Recording a change: the ledger head locked first, the row's before-state, the entry drafted and appended.

A service names its action at the write (`GovernedModel.save_recorded(action=..., by=...)`,
`m2m_set_recorded(...)`): the name travels with that one instance's write as a `NamedAction`,
never through a context that another write could pick up. Unnamed writes get the generic
`<model_name>.<verb>` action.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models

from audit.capture.rows import ModelSpec, json_value, model_spec, public, read_states, state_from_row
from audit.ledger import EntryDraft, LockedHead, actor_label, append_generation, ledger_append_many

# Where an instance carries the action named for its next write (set and cleared by the
# `*_recorded` methods of GovernedModel around exactly that one write).
NAMED_KEY = "_governed_named"
# Drafts collected while a delete runs, so one cascade is one batch append.
_pending: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("ledger_pending", default=None)


@dataclass(frozen=True)
class NamedAction:
    """The action a service names at one write, with what it adds to the entry's payload."""

    action: str
    extra: Mapping[str, Any] = field(default_factory=dict)




# Every governed write takes the ledger head lock FIRST, before any row lock. Governed writers
# therefore never wait for each other while holding a row (no deadlocks between two services
# that touch the same rows in different orders), and while we hold the head no other governed
# write can commit, so the row we read next is the true "before".
_HEAD_LOCK = "SELECT tree_size, head_hash, frontier FROM audit_ledgerhead WHERE id = 1 FOR UPDATE"
_read_sql: dict[tuple[type[models.Model], str], tuple[str, list[tuple[Any, list[Any]]]]] = {}


def _head(using: str, tree_size: int, head_hash: Any, frontier: Any) -> LockedHead | None:
    # The ledger lives on the default database; elsewhere it locks the head itself.
    if using != DEFAULT_DB_ALIAS:
        return None
    return LockedHead(generation=append_generation(), tree_size=int(tree_size), head_hash=bytes(head_hash),
                      frontier=bytes(frontier))


def lock_head(using: str) -> LockedHead | None:
    """Lock the ledger head (first, before any row) and return it for the append to reuse."""
    connection = connections[using]
    if not connection.features.has_select_for_update:  # SQLite: IMMEDIATE transactions lock at BEGIN
        return None
    with connection.cursor() as cursor:
        cursor.execute(_HEAD_LOCK)
        row = cursor.fetchone()
    return None if row is None else _head(using, *row)


def locked_before(model: type[models.Model], using: str,
                   pk: Any) -> tuple[dict[str, Any] | None, LockedHead | None]:
    """Lock the ledger head and read the row's current state, in one statement when possible.

    The row is read with the statement's snapshot, taken before any wait for the head lock. A
    governed write that committed while we waited appended to the ledger, so the locked head's
    tree_size then differs from the one the snapshot saw: only in that case is the row read
    again (a fresh statement, with the head held, sees the committed row).
    """
    connection = connections[using]
    if not connection.features.has_select_for_update:
        return read_states(model, using, [pk], lock=False).get(pk), None
    key = (model, connection.vendor)
    prepared = _read_sql.get(key)
    spec = model_spec(model)
    if prepared is None:
        quote = connection.ops.quote_name
        meta = model._meta
        pk_column = quote(meta.pk.column)  # type: ignore[union-attr]
        columns = []
        converters = []
        for field_spec in spec.fields:
            column = field_spec.field.get_col(meta.db_table)
            columns.append(f"t.{quote(field_spec.field.column)}")
            converters.append((column, connection.ops.get_db_converters(column)
                               + column.get_db_converters(connection)))
        sql = (f"SELECT h.tree_size, h.head_hash, h.frontier, (SELECT tree_size FROM audit_ledgerhead WHERE id = 1), "
               f"t.{pk_column} IS NOT NULL, {', '.join(columns)} "
               f"FROM audit_ledgerhead h LEFT JOIN {quote(meta.db_table)} t ON t.{pk_column} = %s "
               f"WHERE h.id = 1 FOR UPDATE OF h")
        prepared = (sql, converters)
        _read_sql[key] = prepared
    sql, converters = prepared
    with connection.cursor() as cursor:
        cursor.execute(sql, [model._meta.pk.get_db_prep_value(pk, connection)])  # type: ignore[union-attr]
        row = cursor.fetchone()
    if row is None:
        # No head row yet (it is created by the migration): let the ledger create it.
        return read_states(model, using, [pk], lock=True).get(pk), None
    head = _head(using, row[0], row[1], row[2])
    if row[0] != row[3]:
        # A governed write committed while we waited for the head: read the row again, fresh.
        return read_states(model, using, [pk], lock=True).get(pk), head
    if not row[4]:
        return None, head
    values = []
    for value, (column, functions) in zip(row[5:], converters, strict=True):
        for function in functions:
            value = function(value, column, connection)
        values.append(value)
    return state_from_row(spec, values), head


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    changed = [name for name, value in after.items() if before.get(name, value) != value or name not in before]
    return {name: before.get(name) for name in changed}, {name: after[name] for name in changed}


def draft_change(actor: Any, spec: ModelSpec, pk: Any, verb: str, before: Any, after: Any, state: Any,
                 named: NamedAction | None = None, **more: Any) -> EntryDraft:
    """The entry for one row's change: the named action (with its extra payload), else `<model_name>.<verb>`."""
    if named is None:
        action, payload = f"{spec.model_name}.{verb}", {}
    else:
        action, payload = named.action, dict(named.extra)
    payload.update(more)
    if spec.has_redacted:
        before, after, state = public(before), public(after), public(state)
    payload.update(before=before, after=after, state=state)
    return EntryDraft(actor=actor_label(actor), action=action, subject_type=spec.subject_type,
                      subject_id=str(json_value(pk)), payload=payload)


def record(drafts: list[EntryDraft], *, checkpoint: bool = False, head: LockedHead | None = None) -> None:
    if not drafts:
        return
    pending = _pending.get()
    if pending is not None:
        pending.drafts.extend(drafts)
    else:
        ledger_append_many(drafts, checkpoint=checkpoint, head=head, returning=False)


@dataclass
class _Batch:
    drafts: list[EntryDraft]
    head: LockedHead | None = None


@contextmanager
def collecting() -> Iterator[_Batch]:
    """Collect the drafts of a delete (and its cascades) and append them as one batch at the end."""
    outer = _pending.get()
    if outer is not None:
        yield outer
        return
    batch = _Batch(drafts=[])
    token = _pending.set(batch)
    try:
        yield batch
    finally:
        _pending.reset(token)
    # Reached only when the block succeeded; on an error the transaction rolls back anyway.
    ledger_append_many(batch.drafts, checkpoint=len(batch.drafts) > 1, head=batch.head, returning=False)



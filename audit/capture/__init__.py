"""Governed models: every ORM write to them appends a ledger entry in the same transaction.

Declare a model governed by subclassing `GovernedModel`. Then each write path records what
changed, inside the transaction that makes the change (a failed append rolls the change back,
and a rolled-back change leaves no entry):

- `save()` (so `create`, `get_or_create`, `update_or_create` and admin edits), `delete()`
  (with the governed rows it cascades to), `QuerySet.update()`, `QuerySet.delete()`,
  `bulk_create`, `bulk_update`, and many-to-many `add`/`remove`/`set`/`clear`.
- Entry: subject `("<app_label>.<model_name>", str(pk))`, action `<model_name>.created` /
  `.updated` / `.deleted` / `.m2m_changed` (or the one a service names at the write: `save_recorded(action=..., by=...)`,
  `m2m_set_recorded(...)`), payload
  `{"before", "after", "state"}`: before/after hold the changed fields only on update and
  every field on create/delete; `state` is the full recorded row after the change (null after
  a delete). An update that changes nothing records nothing.
- The actor comes from `core.actor.acting_as(...)`, else from the request stored by
  `core.actor.ActorMiddleware` (its `user`, read at write time). Without one the write
  is refused (`ledger_actor_missing`): writes are never anonymous.

Locking and the before-state: every governed write locks the ledger head FIRST, before any row.
While we hold it no other governed write can commit, so the row we read next is the true
"before" (a snapshot taken when the instance was loaded would be stale whenever another writer
committed in between), and governed writers never deadlock on rows they touch in different
orders.

On PostgreSQL a save, a create, and a delete that cascades to nothing are ONE statement
(`guarded`, migrations audit/0007 and 0009): a server-side function locks the head, runs the
row's write and appends the entry through the same per-entry function as every other server-side
append (`audit_ledger_append_entry`). An UPDATE (and such a DELETE) is guarded by the values the instance was loaded with
(`WHERE pk = ... AND <every recorded column> IS NOT DISTINCT FROM <loaded value>`); when another
writer changed the row, the guard touches nothing, the row is read again and the call retried,
then after a few tries the save locks the head and the row and writes unguarded. So the recorded
"before" is always the row as it was, at one round trip per save when nobody else wrote the row.
`QuerySet.update()` locks, updates and returns each row's before and after in one statement.
Elsewhere (SQLite, other databases, multi-table inheritance, expressions among the values) a
save locks the head and reads the row in one statement (`record.locked_before`) inside a
transaction, then updates and appends: five round trips. Other write paths lock the head with
one statement of their own.

Excluded from capture: `governed_exclude` fields are never recorded (a change to them alone
records nothing); `governed_redact` fields are recorded as "<redacted>" (a change shows up, the
value never does). Many-to-many sets are recorded in their own entries, not in `state`, and so
is a target's deletion, which drops it from every governed owner's set (`target_deleted`).

Writes that bypass the ORM (raw SQL, data migrations, `loaddata`) cannot be stopped; the state
check registered here (`verify_ledger(check_state=True)`, `verify_ledger --state`) names every
row that differs from the state its last ledger entry recorded, and every many-to-many set that
differs from the set its last m2m entry recorded.

Modules: `rows` (which models are governed, what is recorded of a row), `record` (head lock,
before-state, drafting and appending entries), `guarded` (PostgreSQL's one-statement writes),
`models` (GovernedModel, its queryset and manager), `m2m` (many-to-many sets), `state` (the
out-of-band state check).
"""

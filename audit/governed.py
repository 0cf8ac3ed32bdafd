"""Governed models: every ORM write to them appends a ledger entry in the same transaction.

Declare a model governed by subclassing `GovernedModel`. Then each write path records what
changed, inside the transaction that makes the change (a failed append rolls the change back,
and a rolled-back change leaves no entry):

- `save()` (so `create`, `get_or_create`, `update_or_create` and admin edits), `delete()`
  (with the governed rows it cascades to), `QuerySet.update()`, `QuerySet.delete()`,
  `bulk_create`, `bulk_update`, and many-to-many `add`/`remove`/`set`/`clear`.
- Entry: subject `("<app_label>.<model_name>", str(pk))`, action `<model_name>.created` /
  `.updated` / `.deleted` / `.m2m_changed` (or the one named by `ledger_action`), payload
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
orders. A save does it in one statement: it locks the head and reads the row, and re-reads the
row only if an append committed while it waited for the lock. The head it read is handed to
the append (`LockedHead`; the server-side append on PostgreSQL re-reads it under the lock it
already holds, at no extra round trip), so an audited save costs BEGIN, that statement, the
row's UPDATE, the append, COMMIT: the same five round trips as the stale-snapshot design,
measured in bench/bench_capture.py. Other write paths lock the head with one statement of their
own.

Excluded from capture: `governed_exclude` fields are never recorded (a change to them alone
records nothing); `governed_redact` fields are recorded as "<redacted>" (a change shows up, the
value never does). Many-to-many sets are recorded in their own entries, not in `state`, and so
is a target's deletion, which drops it from every governed owner's set (`target_deleted`).

Writes that bypass the ORM (raw SQL, data migrations, `loaddata`) cannot be stopped; the state
check registered here (`verify_ledger(check_state=True)`, `verify_ledger --state`) names every
row that differs from the state its last ledger entry recorded, and every many-to-many set that
differs from the set its last m2m entry recorded.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, models, router, transaction
from django.db.models import Max
from django.db.models.expressions import BaseExpression, DatabaseDefault
from django.db.models.signals import class_prepared, m2m_changed, post_delete, pre_delete
from django.utils.duration import duration_iso_string

from audit import jcs
from audit.ledger import EntryDraft, LockedHead, append_generation, draft, ledger_append_many
from core.actor import current_actor
from core.errors import InvalidInput

REDACTED = "<redacted>"
# How an update learns the row's "before": "locked" reads it with the ledger head held (correct
# under concurrent writers); "snapshot" uses the state recorded when the instance was loaded or
# last saved (stale if another writer committed in between). Switchable only so that
# bench/bench_capture.py can measure both; nothing else may set it.
BEFORE_STATE = "locked"
MAX_SAFE_INTEGER = 2**53 - 1

_action: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "ledger_action", default=None)
# Drafts collected while a delete runs, so one cascade is one batch append.
_pending: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("ledger_pending", default=None)
# Set while bulk_update runs Django's own update(): bulk_update records its rows itself.
_passthrough: contextvars.ContextVar[bool] = contextvars.ContextVar("ledger_passthrough", default=False)


# --- Context: under which action name (who acts: core.actor) ---------------------------------

@contextmanager
def ledger_action(action: str, **extra: Any) -> Iterator[None]:
    """Captured writes inside this block are recorded under `action`, with `extra` merged into the payload."""
    token = _action.set((action, extra))
    try:
        yield
    finally:
        _action.reset(token)


# --- What is recorded of a row ---------------------------------------------------------------

@dataclass(frozen=True)
class _Secret:
    digest: str


def _public(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if not values:
        return values
    return {name: REDACTED if isinstance(value, _Secret) else value for name, value in values.items()}


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    attname: str
    field: models.Field[Any, Any]
    redacted: bool
    # Dates, times, decimals, UUIDs and durations are normalized through the field first.
    normalize: bool
    quantum: Decimal | None


@dataclass(frozen=True)
class ModelSpec:
    """How one governed model is recorded: its subject type and the fields in its state."""

    model: type[models.Model]
    subject_type: str
    model_name: str
    fields: tuple[_FieldSpec, ...]
    has_redacted: bool

    @property
    def attnames(self) -> list[str]:
        return [spec.attname for spec in self.fields]


_specs: dict[type[models.Model], ModelSpec] = {}


def model_spec(model: type[models.Model]) -> ModelSpec:
    spec = _specs.get(model)
    if spec is None:
        meta = model._meta.concrete_model._meta  # type: ignore[union-attr]
        excluded = set(getattr(model, "governed_exclude", ()))
        redacted = set(getattr(model, "governed_redact", ()))
        fields = tuple(
            _FieldSpec(field.name, field.attname, field, field.name in redacted,
                       normalize=isinstance(field, _NORMALIZED_FIELDS),
                       quantum=Decimal(1).scaleb(-field.decimal_places)
                       if isinstance(field, models.DecimalField) and field.decimal_places is not None else None)
            for field in meta.concrete_fields
            if not field.primary_key and field.name not in excluded
        )
        spec = ModelSpec(model=model, subject_type=f"{meta.app_label}.{meta.model_name}",
                         model_name=meta.model_name, fields=fields,
                         has_redacted=any(field_spec.redacted for field_spec in fields))
        _specs[model] = spec
    return spec


def json_value(value: Any) -> Any:
    """A field value as JSON: ISO dates (UTC), Decimal/UUID as text, bytes as hex, FK as the pk."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return duration_iso_string(value)
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(item) for item in value]
    if isinstance(value, models.Model):
        return json_value(value.pk)
    name = getattr(value, "name", None)  # FieldFile
    if isinstance(name, str) or name is None and hasattr(value, "storage"):
        return name
    return str(value)


_NORMALIZED_FIELDS = (models.DateField, models.TimeField, models.DecimalField, models.UUIDField,
                      models.DurationField)
_PLAIN_TYPES = frozenset((str, int, bool, type(None)))


def _field_value(spec: _FieldSpec, value: Any) -> Any:
    if not spec.redacted and not spec.normalize and type(value) in _PLAIN_TYPES:
        if type(value) is int and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return str(value)
        return value
    if spec.redacted:
        if value is None or value == "" or value == b"":
            return value
        # Compared by digest so a change is recorded; only "<redacted>" is ever written.
        return _Secret(hashlib.sha256(json.dumps(json_value(value)).encode()).hexdigest())
    if value is not None and spec.normalize:
        # Normalize to the type the database returns: a string assigned to a date field, or
        # Decimal("1.5") in a field with 2 places, must record what will be read back.
        value = spec.field.to_python(value)
        if spec.quantum is not None and isinstance(value, Decimal) and value.is_finite():
            value = value.quantize(spec.quantum)
    return json_value(value)


def _needs_reread(instance: models.Model, spec: ModelSpec) -> bool:
    for field_spec in spec.fields:
        value = instance.__dict__.get(field_spec.attname)
        if isinstance(value, (BaseExpression, DatabaseDefault)) or hasattr(value, "resolve_expression"):
            return True
    return False


def instance_state(instance: models.Model) -> dict[str, Any]:
    """The recorded state of an in-memory instance (as it was written)."""
    spec = model_spec(type(instance))
    values = instance.__dict__
    return {field_spec.name: _field_value(field_spec, values.get(field_spec.attname)) for field_spec in spec.fields}


def _state_from_row(spec: ModelSpec, row: Sequence[Any]) -> dict[str, Any]:
    return {field_spec.name: _field_value(field_spec, value)
            for field_spec, value in zip(spec.fields, row, strict=True)}


def _read_states(model: type[models.Model], using: str, pks: Sequence[Any], *,
                 lock: bool) -> dict[Any, dict[str, Any]]:
    """Current recorded state of rows by pk, read inside the transaction (locked when `lock`)."""
    spec = model_spec(model)
    states: dict[Any, dict[str, Any]] = {}
    chunk = 900 if connections[using].vendor == "sqlite" else 10_000
    for start in range(0, len(pks), chunk):
        query = model._base_manager.using(using).filter(pk__in=pks[start:start + chunk])
        if lock:
            query = query.select_for_update()
        for row in query.values_list("pk", *spec.attnames):
            states[row[0]] = _state_from_row(spec, row[1:])
    return states


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


def _lock_head(using: str) -> LockedHead | None:
    """Lock the ledger head (first, before any row) and return it for the append to reuse."""
    connection = connections[using]
    if not connection.features.has_select_for_update:  # SQLite: IMMEDIATE transactions lock at BEGIN
        return None
    with connection.cursor() as cursor:
        cursor.execute(_HEAD_LOCK)
        row = cursor.fetchone()
    return None if row is None else _head(using, *row)


def _locked_before(model: type[models.Model], using: str,
                   pk: Any) -> tuple[dict[str, Any] | None, LockedHead | None]:
    """Lock the ledger head and read the row's current state, in one statement when possible.

    The row is read with the statement's snapshot, taken before any wait for the head lock. A
    governed write that committed while we waited appended to the ledger, so the locked head's
    tree_size then differs from the one the snapshot saw: only in that case is the row read
    again (a fresh statement, with the head held, sees the committed row).
    """
    connection = connections[using]
    if not connection.features.has_select_for_update:
        return _read_states(model, using, [pk], lock=False).get(pk), None
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
        return _read_states(model, using, [pk], lock=True).get(pk), None
    head = _head(using, row[0], row[1], row[2])
    if row[0] != row[3]:
        # A governed write committed while we waited for the head: read the row again, fresh.
        return _read_states(model, using, [pk], lock=True).get(pk), head
    if not row[4]:
        return None, head
    values = []
    for value, (column, functions) in zip(row[5:], converters, strict=True):
        for function in functions:
            value = function(value, column, connection)
        values.append(value)
    return _state_from_row(spec, values), head


def _changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    changed = [name for name, value in after.items() if before.get(name, value) != value or name not in before]
    return {name: before.get(name) for name in changed}, {name: after[name] for name in changed}


def _draft(actor: Any, spec: ModelSpec, pk: Any, verb: str, before: Any, after: Any, state: Any,
           **more: Any) -> EntryDraft:
    context = _action.get()
    if context is None:
        action, payload = f"{spec.model_name}.{verb}", {}
    else:
        action, payload = context[0], dict(context[1])
    payload.update(more)
    if spec.has_redacted:
        before, after, state = _public(before), _public(after), _public(state)
    payload.update(before=before, after=after, state=state)
    return draft(actor=actor, action=action, subject=(spec.subject_type, str(json_value(pk))), payload=payload)


def _record(drafts: list[EntryDraft], *, checkpoint: bool = False, head: LockedHead | None = None) -> None:
    if not drafts:
        return
    pending = _pending.get()
    if pending is not None:
        pending.drafts.extend(drafts)
    else:
        ledger_append_many(drafts, checkpoint=checkpoint, head=head)


@dataclass
class _Batch:
    drafts: list[EntryDraft]
    head: LockedHead | None = None


@contextmanager
def _collecting() -> Iterator[_Batch]:
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
    ledger_append_many(batch.drafts, checkpoint=len(batch.drafts) > 1, head=batch.head)


# --- Querysets and the model base ------------------------------------------------------------

class GovernedQuerySet(models.QuerySet[Any]):
    """Bulk paths that record one entry per row they change."""

    def update(self, **kwargs: Any) -> int:
        if _passthrough.get():
            return super().update(**kwargs)
        spec = model_spec(self.model)
        using = self.db
        with transaction.atomic(using=using, savepoint=False):
            head = _lock_head(using)
            locked = self._chain()
            # With the head held no governed writer can interfere; the row locks only keep
            # writers outside the ORM from changing a row between this read and the UPDATE.
            features = connections[using].features
            if features.has_select_for_update and not locked.query.distinct and not locked.query.combinator:
                locked = locked.select_for_update(of=("self",) if features.has_select_for_update_of else ())
            before = {row[0]: _state_from_row(spec, row[1:]) for row in locked.values_list("pk", *spec.attnames)}
            if not before:
                return 0
            actor = current_actor()  # asked only now: a SET_NULL cascade that touches no row needs none
            pks = list(before)
            count = 0
            chunk = 900 if connections[using].vendor == "sqlite" else 10_000
            for start in range(0, len(pks), chunk):
                query = self.model._base_manager.using(using).filter(pk__in=pks[start:start + chunk])
                count += models.QuerySet.update(query, **kwargs)
            after = _read_states(self.model, using, pks, lock=False)
            drafts = []
            for pk, old in before.items():
                new = after.get(pk)
                if new is None:
                    continue
                changed_before, changed_after = _changes(old, new)
                if changed_after:
                    drafts.append(_draft(actor, spec, pk, "updated", changed_before, changed_after, new))
            _record(drafts, checkpoint=True, head=head)
        return count

    update.alters_data = True  # type: ignore[attr-defined]

    def delete(self) -> tuple[int, dict[str, int]]:
        using = self.db
        with transaction.atomic(using=using, savepoint=False), _collecting() as batch:
            head = _lock_head(using)
            batch.head = batch.head or head
            return super().delete()

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        if kwargs.get("ignore_conflicts") or kwargs.get("update_conflicts"):
            raise InvalidInput("bulk_create with ignore_conflicts or update_conflicts cannot say which rows "
                               "it wrote, so it is refused for governed models.",
                               code="governed_bulk_conflicts_unsupported")
        spec = model_spec(self.model)
        actor = current_actor()
        using = self.db
        objs = list(objs)
        with transaction.atomic(using=using, savepoint=False):
            head = _lock_head(using)
            created = super().bulk_create(objs, *args, **kwargs)
            if any(obj.pk is None for obj in created):
                raise InvalidInput("The database did not return the keys of the new rows.",
                                   code="governed_bulk_create_no_pk")
            reread = any(_needs_reread(obj, spec) for obj in created)
            states = _read_states(self.model, using, [obj.pk for obj in created], lock=False) if reread else {}
            drafts = []
            for obj in created:
                state = states[obj.pk] if reread else instance_state(obj)
                drafts.append(_draft(actor, spec, obj.pk, "created", None, state, state))
            _record(drafts, checkpoint=True, head=head)
        return created

    bulk_create.alters_data = True  # type: ignore[attr-defined]

    def bulk_update(self, objs: Iterable[Any], fields: Sequence[str], batch_size: int | None = None) -> int:
        spec = model_spec(self.model)
        actor = current_actor()
        using = self.db
        objs = list(objs)
        pks = [obj.pk for obj in objs]
        with transaction.atomic(using=using, savepoint=False):
            head = _lock_head(using)
            before = _read_states(self.model, using, pks, lock=True)
            token = _passthrough.set(True)
            try:
                count = super().bulk_update(objs, fields, batch_size=batch_size)
            finally:
                _passthrough.reset(token)
            after = _read_states(self.model, using, list(before), lock=False)
            drafts = []
            for pk, old in before.items():
                changed_before, changed_after = _changes(old, after[pk])
                if changed_after:
                    drafts.append(_draft(actor, spec, pk, "updated", changed_before, changed_after, after[pk]))
            _record(drafts, checkpoint=True, head=head)
        return count

    bulk_update.alters_data = True  # type: ignore[attr-defined]


class GovernedManager(models.Manager.from_queryset(GovernedQuerySet)):  # type: ignore[misc]
    """Default (and base) manager of governed models."""


class GovernedModel(models.Model):
    """Abstract base: every ORM write to a subclass appends a ledger entry in the same transaction."""

    # Fields never recorded (left out of before/after/state): e.g. counters that change on every read.
    governed_exclude: ClassVar[tuple[str, ...]] = ()
    # Fields recorded as "<redacted>": a change shows up, the value never does (secrets, hashes).
    governed_redact: ClassVar[tuple[str, ...]] = ()

    objects = GovernedManager()

    class Meta:
        abstract = True
        base_manager_name = "objects"

    def save_base(self, raw: bool = False, force_insert: Any = False, force_update: bool = False,
                  using: str | None = None, update_fields: Iterable[str] | None = None) -> None:
        if raw:
            # Fixture loading: not a change anyone made; the state check reports it.
            return super().save_base(raw=raw, force_insert=force_insert, force_update=force_update,
                                     using=using, update_fields=update_fields)
        spec = model_spec(type(self))
        actor = current_actor()
        using = using or router.db_for_write(self.__class__, instance=self)
        meta = self._meta
        pk = self.pk
        with transaction.atomic(using=using, savepoint=False):
            before = None
            head = None
            if pk is not None and not force_insert and not (self._state.adding and meta.pk.has_default()):  # type: ignore[union-attr]
                snapshot = self.__dict__.get("_governed_snapshot") if BEFORE_STATE == "snapshot" else None
                if snapshot is not None and not self._state.adding:
                    before = snapshot
                else:
                    before, head = _locked_before(type(self), using, pk)
            elif BEFORE_STATE != "snapshot":
                head = _lock_head(using)
            super().save_base(raw=raw, force_insert=force_insert, force_update=force_update,
                              using=using, update_fields=update_fields)
            if _needs_reread(self, spec):
                after = _read_states(type(self), using, [self.pk], lock=False)[self.pk]
            elif before is not None and update_fields is not None:
                written = set(update_fields)
                after = dict(before)
                for field_spec in spec.fields:
                    if field_spec.name in written or field_spec.attname in written:
                        after[field_spec.name] = _field_value(field_spec, self.__dict__.get(field_spec.attname))
            else:
                after = instance_state(self)
            if before is None:
                _record([_draft(actor, spec, self.pk, "created", None, after, after)], head=head)
            else:
                changed_before, changed_after = _changes(before, after)
                if changed_after:
                    _record([_draft(actor, spec, self.pk, "updated", changed_before, changed_after, after)],
                            head=head)
            if BEFORE_STATE == "snapshot":
                self.__dict__["_governed_snapshot"] = after

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Any:
        instance = super().from_db(db, field_names, values)
        if BEFORE_STATE == "snapshot":
            instance.__dict__["_governed_snapshot"] = instance_state(instance)
        return instance

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        current_actor()
        using = using or router.db_for_write(self.__class__, instance=self)
        pk = self.pk
        try:
            with transaction.atomic(using=using, savepoint=False), _collecting() as batch:
                if pk is not None:
                    fresh, head = _locked_before(type(self), using, pk)
                    batch.head = batch.head or head
                    self.__dict__["_governed_before"] = fresh if fresh is not None else _MISSING
                return super().delete(using=using, keep_parents=keep_parents)
        except BaseException:
            # Django clears the pk once its own delete is done; the transaction rolled back, so
            # the row is still there and the instance must still name it.
            self.pk = pk
            raise
        finally:
            self.__dict__.pop("_governed_before", None)

    delete.alters_data = True  # type: ignore[attr-defined]


_MISSING: dict[str, Any] = {}


def _on_post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    spec = model_spec(sender)
    before = instance.__dict__.get("_governed_before")
    if before is _MISSING:
        return  # the row was already gone: nothing was deleted
    if before is None:
        before = instance_state(instance)
    _record([_draft(current_actor(), spec, instance.pk, "deleted", before, None, None)])


# --- Many-to-many ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _M2M:
    owner: type[models.Model]
    field: models.ManyToManyField[Any, Any]
    source: str  # through-table attname pointing at the owner
    target: str  # through-table attname pointing at the other side


_m2m_by_through: dict[type[models.Model], _M2M] = {}
_m2m_resolved: set[type[models.Model]] = set()


def _resolve_m2m() -> None:
    for model in governed_models():
        if model in _m2m_resolved:
            continue
        for field in model._meta.local_many_to_many:
            through = field.remote_field.through  # type: ignore[union-attr]
            if isinstance(through, str):
                return  # not resolved yet; try again on the next signal
            _m2m_by_through[through] = _M2M(owner=model, field=field,
                                             source=field.m2m_column_name(), target=field.m2m_reverse_name())
        _m2m_resolved.add(model)


def _m2m_sets(info: _M2M, using: str, owners: Iterable[Any]) -> dict[Any, set[Any]]:
    owners = list(owners)
    sets: dict[Any, set[Any]] = {owner: set() for owner in owners}
    through = info.field.remote_field.through  # type: ignore[union-attr]
    rows = (through._base_manager.using(using).filter(**{f"{info.source}__in": owners})
            .values_list(info.source, info.target))
    for owner, target in rows:
        sets[owner].add(target)
    return sets


def _on_m2m_changed(sender: type[models.Model], instance: models.Model, action: str, reverse: bool,
                    model: type[models.Model], pk_set: set[Any] | None, using: str, **kwargs: Any) -> None:
    if sender not in _m2m_by_through:
        _resolve_m2m()
    info = _m2m_by_through.get(sender)
    if info is None:
        return
    stash_key = f"_governed_m2m_{id(sender)}"
    if action.startswith("pre_"):
        current_actor()
        head = _lock_head(using)
        if not reverse:
            owners: list[Any] = [instance.pk]
        elif action == "pre_clear":
            through = info.field.remote_field.through  # type: ignore[union-attr]
            owners = list(through._base_manager.using(using).filter(**{info.target: instance.pk})
                          .values_list(info.source, flat=True))
        else:
            owners = list(pk_set or ())
        instance.__dict__[stash_key] = (_m2m_sets(info, using, owners), head)
        return
    stashed = instance.__dict__.pop(stash_key, None)
    if stashed is None:
        return
    before_sets, head = stashed
    actor = current_actor()
    spec = model_spec(info.owner)
    after_sets = _m2m_sets(info, using, before_sets)
    changed = [owner for owner in before_sets if before_sets[owner] != after_sets[owner]]
    if not changed:
        return
    states = _read_states(info.owner, using, changed, lock=False)
    name = info.field.name
    operation = action.removeprefix("post_")
    drafts = []
    for owner in changed:
        drafts.append(_draft(
            actor, spec, owner, "m2m_changed",
            {name: sorted(json_value(pk) for pk in before_sets[owner])},
            {name: sorted(json_value(pk) for pk in after_sets[owner])},
            states.get(owner),
            m2m={"field": name, "operation": operation,
                 "pks": sorted(json_value(pk) for pk in before_sets[owner] ^ after_sets[owner])},
        ))
    _record(drafts, checkpoint=len(drafts) > 1, head=head)


def _on_m2m_target_pre_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    """A deleted target leaves the sets of its governed owners (the through rows go with it,
    deleted by the collector without an m2m_changed signal): record that on each owner."""
    for info in _m2m_by_target.get(sender, ()):
        through = info.field.remote_field.through  # type: ignore[union-attr]
        owners = list(through._base_manager.using(using).filter(**{info.target: instance.pk})
                      .values_list(info.source, flat=True).distinct())
        if not owners:
            continue
        actor = current_actor()  # asked only now: deleting a target nobody holds needs none
        head = _lock_head(using)
        before_sets = _m2m_sets(info, using, owners)
        spec = model_spec(info.owner)
        states = _read_states(info.owner, using, owners, lock=False)
        name = info.field.name
        drafts = [_draft(actor, spec, owner, "m2m_changed",
                         {name: sorted(json_value(pk) for pk in before_sets[owner])},
                         {name: sorted(json_value(pk) for pk in before_sets[owner] - {instance.pk})},
                         states.get(owner),
                         m2m={"field": name, "operation": "target_deleted", "pks": [json_value(instance.pk)]})
                  for owner in owners]
        _record(drafts, checkpoint=len(drafts) > 1, head=head)


_m2m_by_target: dict[type[models.Model], list[_M2M]] = {}


def connect_m2m_targets() -> None:
    """Once apps are ready: watch deletions of every model a governed many-to-many points at."""
    _resolve_m2m()
    for info in _m2m_by_through.values():
        target_model = info.field.remote_field.model  # type: ignore[union-attr]
        infos = _m2m_by_target.setdefault(target_model, [])
        if info not in infos:
            infos.append(info)
            pre_delete.connect(_on_m2m_target_pre_delete, sender=target_model,
                               dispatch_uid=f"governed-m2m-target-{target_model._meta.label}")


# --- Registry --------------------------------------------------------------------------------

_registry: list[type[models.Model]] = []


def governed_models() -> list[type[models.Model]]:
    """Every concrete (non-proxy) governed model."""
    return list(_registry)


def _on_class_prepared(sender: type[models.Model], **kwargs: Any) -> None:
    if not issubclass(sender, GovernedModel) or sender._meta.abstract:
        return
    if not isinstance(sender._default_manager, GovernedManager):
        raise ImproperlyConfigured(f"{sender.__name__}: the default manager of a governed model must be a "
                                   "GovernedManager, or bulk writes would bypass the ledger.")
    # Related managers and the deletion collector use the base manager: it must capture too.
    if sender._meta.base_manager_name is None:
        sender._meta.base_manager_name = sender._default_manager.name
    post_delete.connect(_on_post_delete, sender=sender, dispatch_uid=f"governed-delete-{sender._meta.label}")
    if not sender._meta.proxy and sender not in _registry:
        _registry.append(sender)


class_prepared.connect(_on_class_prepared, dispatch_uid="governed-class-prepared")
m2m_changed.connect(_on_m2m_changed, dispatch_uid="governed-m2m-changed")


# --- State check: rows changed outside the ORM -----------------------------------------------

def _captured(payload: Any) -> bool:
    """Whether an entry was written by the capture (it records the row's state, or its deletion)."""
    return (isinstance(payload, dict) and "before" in payload and "after" in payload
            and (payload.get("state") is None or isinstance(payload["state"], dict)) and "state" in payload)


def _last_entries(subject_type: str) -> dict[str, dict[str, Any]]:
    """Payload of the last entry with a recorded state, per subject of one type."""
    from audit.models import LedgerEntry

    entries = LedgerEntry.objects.filter(subject_type=subject_type)
    last_seqs = entries.values("subject_id").annotate(last=Max("seq")).values("last")
    found: dict[str, dict[str, Any]] = {}
    stateless: list[str] = []
    for subject_id, canonical in LedgerEntry.objects.filter(seq__in=last_seqs).values_list("subject_id", "canonical"):
        payload = json.loads(bytes(canonical))["payload"]
        if _captured(payload):
            found[subject_id] = payload
        else:
            stateless.append(subject_id)
    # A service may append its own entries about a governed row (e.g. "bundle.exported");
    # those carry no state, so look further back for the subjects whose last entry is one.
    chunk = 500
    for start in range(0, len(stateless), chunk):
        wanted = set(stateless[start:start + chunk])
        rows = entries.filter(subject_id__in=wanted).order_by("-seq").values_list("subject_id", "canonical")
        for subject_id, canonical in rows.iterator(chunk_size=2000):
            if subject_id in found:
                continue
            payload = json.loads(bytes(canonical))["payload"]
            if _captured(payload):
                found[subject_id] = payload
    return found


def governed_state_problems() -> Iterator[dict[str, Any]]:
    """Rows whose live state differs from the state their last ledger entry recorded."""
    for model in governed_models():
        spec = model_spec(model)
        recorded = _last_entries(spec.subject_type)
        compared = [field_spec for field_spec in spec.fields if not field_spec.redacted]
        live_ids: set[str] = set()
        rows = model._base_manager.order_by().values_list("pk", *spec.attnames)
        for row in rows.iterator(chunk_size=2000):
            subject_id = str(json_value(row[0]))
            live_ids.add(subject_id)
            payload = recorded.get(subject_id)
            if payload is None:
                yield {"subject_type": spec.subject_type, "subject_id": subject_id,
                       "message": "row has no ledger entry (written outside the ORM)", "fields": []}
                continue
            state = payload.get("state")
            if state is None:
                yield {"subject_type": spec.subject_type, "subject_id": subject_id,
                       "message": "row exists but its last ledger entry records its deletion", "fields": []}
                continue
            live = _state_from_row(spec, row[1:])
            differing = sorted(field_spec.name for field_spec in compared
                               if state.get(field_spec.name) != live[field_spec.name])
            if differing:
                yield {"subject_type": spec.subject_type, "subject_id": subject_id,
                       "message": f"row differs from its last ledger entry in: {', '.join(differing)}",
                       "fields": differing}
        for subject_id, payload in recorded.items():
            if subject_id not in live_ids and payload.get("state") is not None:
                yield {"subject_type": spec.subject_type, "subject_id": subject_id,
                       "message": "row is gone but its deletion was never recorded", "fields": []}
        yield from _m2m_state_problems(model, spec, live_ids)


def _m2m_state_problems(model: type[models.Model], spec: ModelSpec, live_ids: set[str]) -> Iterator[dict[str, Any]]:
    """Many-to-many sets that differ from the set their last m2m entry recorded (empty if none)."""
    from audit.models import LedgerEntry

    _resolve_m2m()
    for info in [info for info in _m2m_by_through.values() if info.owner is model]:
        name = info.field.name
        through = info.field.remote_field.through  # type: ignore[union-attr]
        live: dict[str, set[Any]] = defaultdict(set)
        for owner, target in through._base_manager.order_by().values_list(info.source, info.target).iterator(2000):
            live[str(json_value(owner))].add(json_value(target))
        # The m2m part of an entry's JCS bytes starts with this (keys are sorted: field first).
        marker = b'"m2m":{"field":' + jcs.canonicalize(name)
        recorded: dict[str, set[Any]] = {}
        entries = (LedgerEntry.objects.filter(subject_type=spec.subject_type).order_by("seq")
                   .values_list("subject_id", "canonical"))
        for subject_id, canonical in entries.iterator(chunk_size=2000):
            canonical = bytes(canonical)
            if marker not in canonical:
                continue
            payload = json.loads(canonical)["payload"]
            if isinstance(payload.get("m2m"), dict) and payload["m2m"].get("field") == name:
                recorded[subject_id] = set(payload["after"][name])
        for subject_id in sorted(live_ids):
            if live.get(subject_id, set()) != recorded.get(subject_id, set()):
                yield {"subject_type": spec.subject_type, "subject_id": subject_id,
                       "message": f"many-to-many {name} differs from its last ledger entry", "fields": [name]}

"""GovernedModel, its queryset and manager: every ORM write path of a governed model appends its entries.

A service names the action of a write at the write: `instance.save_recorded(action=..., by=...,
extra=...)` and `instance.m2m_set_recorded(field, objs, action=..., by=...)`. The name applies to
that one write of that one instance; any other write (nested, or later in the same block) gets
the generic `<model_name>.created` / `.updated` / `.deleted` / `.m2m_changed`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models, router, transaction
from django.db.models.signals import class_prepared, m2m_changed, post_delete, post_save, pre_save

from audit.capture import guarded
from audit.capture.m2m import on_m2m_changed
from audit.capture.record import (
    NAMED_KEY,
    NamedAction,
    changes,
    collecting,
    draft_change,
    lock_head,
    locked_before,
    record,
)
from audit.capture.rows import field_value, instance_state, model_spec, needs_reread, read_states, register, state_from_row
from audit.ledger import gc_paused
from core.actor import acting_as, current_actor
from core.errors import InvalidInput

# How an update learns the row's "before": "guarded" (PostgreSQL; elsewhere "locked") sends the
# row's write and its entry as one statement guarded by the values the instance was loaded with
# (audit.capture.guarded); "locked" reads it with the ledger head held (correct
# under concurrent writers); "snapshot" uses the state recorded when the instance was loaded or
# last saved (stale if another writer committed in between). Switchable only so that
# bench/bench_capture.py can measure both; nothing else may set it.
BEFORE_STATE = "guarded"
# Set while bulk_update runs Django's own update(): bulk_update records its rows itself.
_passthrough: contextvars.ContextVar[bool] = contextvars.ContextVar("ledger_passthrough", default=False)


class GovernedQuerySet(models.QuerySet[Any]):
    """Bulk paths that record one entry per row they change."""

    def update(self, **kwargs: Any) -> int:
        if _passthrough.get():
            return super().update(**kwargs)
        spec = model_spec(self.model)
        using = self.db
        # The rows' states, drafts and entries are our own work, done per row: without pauses for
        # the cyclic collector (ledger.gc_paused).
        with transaction.atomic(using=using, savepoint=False), gc_paused():
            head = lock_head(using)
            returned = guarded.update_returning(self, kwargs) if BEFORE_STATE == "guarded" else None
            if returned is not None:
                # PostgreSQL: rows locked, updated and returned before and after in one statement.
                if returned:
                    actor = current_actor()
                    drafts = []
                    for pk, changed_before, changed_after, new in returned:
                        if changed_after:
                            drafts.append(draft_change(actor, spec, pk, "updated", changed_before, changed_after, new))
                    record(drafts, checkpoint=True, head=head)
                return len(returned)
            locked = self._chain()
            # With the head held no governed writer can interfere; the row locks only keep
            # writers outside the ORM from changing a row between this read and the UPDATE.
            features = connections[using].features
            if features.has_select_for_update and not locked.query.distinct and not locked.query.combinator:
                locked = locked.select_for_update(of=("self",) if features.has_select_for_update_of else ())
            before = {row[0]: state_from_row(spec, row[1:]) for row in locked.values_list("pk", *spec.attnames)}
            if not before:
                return 0
            actor = current_actor()  # asked only now: a SET_NULL cascade that touches no row needs none
            pks = list(before)
            count = 0
            chunk = 900 if connections[using].vendor == "sqlite" else 10_000
            for start in range(0, len(pks), chunk):
                query = self.model._base_manager.using(using).filter(pk__in=pks[start:start + chunk])
                count += models.QuerySet.update(query, **kwargs)
            after = read_states(self.model, using, pks, lock=False)
            drafts = []
            for pk, old in before.items():
                new = after.get(pk)
                if new is None:
                    continue
                changed_before, changed_after = changes(old, new)
                if changed_after:
                    drafts.append(draft_change(actor, spec, pk, "updated", changed_before, changed_after, new))
            record(drafts, checkpoint=True, head=head)
        return count

    update.alters_data = True  # type: ignore[attr-defined]

    def delete(self) -> tuple[int, dict[str, int]]:
        using = self.db
        with transaction.atomic(using=using, savepoint=False), collecting() as batch:
            head = lock_head(using)
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
            head = lock_head(using)
            created = super().bulk_create(objs, *args, **kwargs)
            if any(obj.pk is None for obj in created):
                raise InvalidInput("The database did not return the keys of the new rows.",
                                   code="governed_bulk_create_no_pk")
            with gc_paused():  # the capture's own per-row work (not Django's insert)
                reread = any(needs_reread(obj, spec) for obj in created)
                states = read_states(self.model, using, [obj.pk for obj in created], lock=False) if reread else {}
                drafts = []
                for obj in created:
                    state = states[obj.pk] if reread else instance_state(obj)
                    drafts.append(draft_change(actor, spec, obj.pk, "created", None, state, state))
                record(drafts, checkpoint=True, head=head)
        return created

    bulk_create.alters_data = True  # type: ignore[attr-defined]

    def bulk_update(self, objs: Iterable[Any], fields: Sequence[str], batch_size: int | None = None) -> int:
        spec = model_spec(self.model)
        actor = current_actor()
        using = self.db
        objs = list(objs)
        pks = [obj.pk for obj in objs]
        with transaction.atomic(using=using, savepoint=False):
            head = lock_head(using)
            before = read_states(self.model, using, pks, lock=True)
            token = _passthrough.set(True)
            try:
                count = super().bulk_update(objs, fields, batch_size=batch_size)
            finally:
                _passthrough.reset(token)
            with gc_paused():  # the capture's own per-row work (not Django's update)
                after = read_states(self.model, using, list(before), lock=False)
                drafts = []
                for pk, old in before.items():
                    changed_before, changed_after = changes(old, after[pk])
                    if changed_after:
                        drafts.append(draft_change(actor, spec, pk, "updated", changed_before, changed_after,
                                                   after[pk]))
                record(drafts, checkpoint=True, head=head)
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

    def __getstate__(self) -> dict[str, Any]:
        # The loaded values may hold memoryviews (binary fields, with some drivers), which cannot
        # be pickled; a copy or an unpickled instance reads the row before its first guarded save.
        state = super().__getstate__()
        state.pop(guarded.LOADED_KEY, None)
        return state

    def save_recorded(self, *, action: str, by: Any, extra: Mapping[str, Any] | None = None,
                      update_fields: Iterable[str] | None = None) -> None:
        """Save, recording the change as `action` by `by`, with `extra` merged into the entry's payload.

        The name covers this one save of this instance: its entry, and nothing any other write records.
        """
        self.__dict__[NAMED_KEY] = NamedAction(action, dict(extra or {}))
        try:
            with acting_as(by):
                self.save(update_fields=update_fields)
        finally:
            self.__dict__.pop(NAMED_KEY, None)

    save_recorded.alters_data = True  # type: ignore[attr-defined]

    def m2m_set_recorded(self, field: str, objs: Iterable[Any], *, action: str, by: Any,
                         extra: Mapping[str, Any] | None = None) -> None:
        """`getattr(self, field).set(objs)`, recording the change of the set as `action` by `by`."""
        key = f"{NAMED_KEY}_m2m_{field}"
        self.__dict__[key] = NamedAction(action, dict(extra or {}))
        try:
            with acting_as(by):
                getattr(self, field).set(objs)
        finally:
            self.__dict__.pop(key, None)

    m2m_set_recorded.alters_data = True  # type: ignore[attr-defined]

    def save_base(self, raw: bool = False, force_insert: Any = False, force_update: bool = False,
                  using: str | None = None, update_fields: Iterable[str] | None = None) -> None:
        # Taken by the first save_base only, so a nested or later save never inherits the name.
        named = self.__dict__.pop(NAMED_KEY, None)
        if raw:
            # Fixture loading: not a change anyone made; the state check reports it.
            return super().save_base(raw=raw, force_insert=force_insert, force_update=force_update,
                                     using=using, update_fields=update_fields)
        spec = model_spec(type(self))
        actor = current_actor()
        using = using or router.db_for_write(self.__class__, instance=self)
        if BEFORE_STATE == "guarded" and guarded.applies(self, using, spec):
            # PostgreSQL: the row's write and its entry in one statement (audit.capture.guarded).
            self.__dict__[guarded.SAVE_KEY] = guarded.GuardedSave(
                actor, named, None if update_fields is None else frozenset(update_fields))
            try:
                if pre_save.has_listeners(type(self)) or post_save.has_listeners(type(self)):
                    # A receiver's writes commit with the row, as on the other path.
                    with transaction.atomic(using=using, savepoint=False):
                        super().save_base(raw=raw, force_insert=force_insert, force_update=force_update,
                                          using=using, update_fields=update_fields)
                else:
                    super().save_base(raw=raw, force_insert=force_insert, force_update=force_update,
                                      using=using, update_fields=update_fields)
            finally:
                self.__dict__.pop(guarded.SAVE_KEY, None)
            return
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
                    before, head = locked_before(type(self), using, pk)
            elif BEFORE_STATE != "snapshot":
                head = lock_head(using)
            super().save_base(raw=raw, force_insert=force_insert, force_update=force_update,
                              using=using, update_fields=update_fields)
            if needs_reread(self, spec):
                after = read_states(type(self), using, [self.pk], lock=False)[self.pk]
            elif before is not None and update_fields is not None:
                written = set(update_fields)
                after = dict(before)
                for field_spec in spec.fields:
                    if field_spec.name in written or field_spec.attname in written:
                        after[field_spec.name] = field_value(field_spec, self.__dict__.get(field_spec.attname))
            else:
                after = instance_state(self)
            if before is None:
                record([draft_change(actor, spec, self.pk, "created", None, after, after, named)], head=head)
            else:
                changed_before, changed_after = changes(before, after)
                if changed_after:
                    record([draft_change(actor, spec, self.pk, "updated", changed_before, changed_after, after, named)],
                            head=head)
            if BEFORE_STATE == "snapshot":
                self.__dict__["_governed_snapshot"] = after

    def _do_update(self, base_qs: Any, using: Any, pk_val: Any, values: Any, update_fields: Any,
                   forced_update: Any) -> bool:
        save = self.__dict__.get(guarded.SAVE_KEY)
        if save is None or not values:
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        return guarded.update(self, save, base_qs, using, pk_val, values)

    def _do_insert(self, manager: Any, using: Any, fields: Any, returning_fields: Any, raw: Any) -> Any:
        save = self.__dict__.get(guarded.SAVE_KEY)
        if save is None or raw:
            return super()._do_insert(manager, using, fields, returning_fields, raw)
        return guarded.insert(self, save, using, fields, returning_fields)

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.pop(guarded.LOADED_KEY, None)  # the next guarded save reads the row first
        super().refresh_from_db(*args, **kwargs)

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Any:
        instance = super().from_db(db, field_names, values)
        # The raw values as loaded: the guard of the next one-statement save (audit.capture.guarded).
        instance.__dict__[guarded.LOADED_KEY] = (field_names, values)
        if BEFORE_STATE == "snapshot":
            instance.__dict__["_governed_snapshot"] = instance_state(instance)
        return instance

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        current_actor()
        using = using or router.db_for_write(self.__class__, instance=self)
        pk = self.pk
        if BEFORE_STATE == "guarded" and pk is not None:
            done = guarded.delete(self, using, keep_parents, _on_post_delete)
            if done is not None:
                return done
        try:
            with transaction.atomic(using=using, savepoint=False), collecting() as batch:
                if pk is not None:
                    fresh, head = locked_before(type(self), using, pk)
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
    record([draft_change(current_actor(), spec, instance.pk, "deleted", before, None, None)])


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
    if not sender._meta.proxy:
        register(sender)


class_prepared.connect(_on_class_prepared, dispatch_uid="governed-class-prepared")
m2m_changed.connect(on_m2m_changed, dispatch_uid="governed-m2m-changed")


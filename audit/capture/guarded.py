"""PostgreSQL: a governed save, create or delete as ONE statement, with a guard that keeps the "before" true.

The row's write and its ledger entry go to the server as one call of `audit_governed_write`
(migrations audit/0007 and 0009, through `audit.ledger.ledger_governed_write`), which locks the ledger
head first, runs the row's statement and appends the entry with `audit_ledger_append_entry`, the
per-entry step every server-side append shares. In autocommit
that one statement is the whole transaction; inside an outer transaction it is one round trip.

An UPDATE is optimistic: the client records as "before" the values the instance was loaded with
(or last saved), and the UPDATE carries them as a guard, `WHERE pk = ... AND <every recorded
column> IS NOT DISTINCT FROM <that value>`. With the head held no governed writer can commit,
and PostgreSQL re-checks the guard on the newest version of a row another transaction changed,
so when the UPDATE touches the row the recorded "before" is exactly the row it replaced. When
the guard fails (the row changed since it was loaded, or is gone), nothing is written or
appended; the row is read again and the call retried with the new "before". After
`OPTIMISTIC_TRIES` failed tries the save falls back to the pessimistic path inside a
transaction: head locked, row read FOR UPDATE, then the same call without a guard.

A create is an `INSERT ... RETURNING pk` in the same call; a key assigned by the database is
spliced into the entry's subject by the server. A delete that cascades to nothing is a guarded
`DELETE` in the same call (one with cascades, or other delete receivers, keeps the batch path).

Used only where it is exact: PostgreSQL, the default database (the ledger's), no multi-table
inheritance, no expressions among the values, `select_on_save` off, and only a returned integer
key on insert. Everything else (and SQLite) takes the path in `audit.capture.models`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models import sql
from django.db.models.deletion import Collector
from django.db.models.signals import post_delete, pre_delete

from audit.capture.record import NamedAction, changes, draft_change, lock_head
from audit.capture.rows import ModelSpec, field_value, instance_state, model_spec, needs_reread, state_from_row
from audit.ledger import ledger_governed_write, log_raw_query
from core.actor import current_actor

# Where an instance keeps the raw values it was loaded with (or last saved): the guard's values.
LOADED_KEY = "_governed_loaded"
# Where save_base leaves what the one-statement write of this save needs.
SAVE_KEY = "_governed_guarded_save"
OPTIMISTIC_TRIES = 3


@dataclass(frozen=True)
class GuardedSave:
    actor: Any
    named: NamedAction | None
    update_fields: frozenset[str] | None


def applies(instance: models.Model, using: str, spec: ModelSpec) -> bool:
    """Whether this save can be sent as one guarded statement."""
    meta = instance._meta
    if using != DEFAULT_DB_ALIAS or meta.parents or meta.proxy or meta.select_on_save:
        return False
    if connections[using].vendor != "postgresql":
        return False
    pk = meta.pk
    if pk is None or getattr(meta, "pk_fields", [pk]) != [pk]:
        return False
    returning = meta.db_returning_fields
    if returning and (returning != [pk] or not isinstance(pk, models.AutoField | models.BigAutoField
                                                          | models.SmallAutoField)):
        return False
    return not needs_reread(instance, spec)


def loaded_values(instance: models.Model) -> dict[str, Any] | None:
    loaded = instance.__dict__.get(LOADED_KEY)
    if isinstance(loaded, tuple):
        names, values = loaded
        loaded = dict(zip(names, values, strict=False))
        instance.__dict__[LOADED_KEY] = loaded
    return loaded


def _read_raw(model: type[models.Model], using: str, spec: ModelSpec, pk: Any, *,
              lock: bool) -> dict[str, Any] | None:
    query = model._base_manager.using(using).filter(pk=pk)
    if lock:
        query = query.select_for_update()
    row = query.values_list(*spec.attnames).first()
    return None if row is None else dict(zip(spec.attnames, row, strict=True))


_guard_columns: dict[type[models.Model], list[tuple[str, models.Field[Any, Any], bool]]] = {}


def _guard(model: type[models.Model], connection: Any, spec: ModelSpec,
           loaded: dict[str, Any]) -> tuple[str, list[Any]]:
    columns = _guard_columns.get(model)
    if columns is None:
        quote = connection.ops.quote_name
        columns = [(quote(field_spec.field.column), field_spec.field, isinstance(field_spec.field, models.JSONField))
                   for field_spec in spec.fields]
        _guard_columns[model] = columns
    parts = []
    params: list[Any] = []
    for (column, model_field, is_json), attname in zip(columns, spec.attnames, strict=True):
        value = loaded[attname]
        if value is None:
            # A JSON null and SQL NULL both load as None, and so are both recorded as null.
            parts.append(f"({column} IS NULL OR {column} = 'null'::jsonb)" if is_json else f"{column} IS NULL")
        else:
            parts.append(f"{column} IS NOT DISTINCT FROM %s")
            params.append(model_field.get_db_prep_value(value, connection, prepared=False))
    return " AND ".join(parts), params


# The text of a save's UPDATE, by (model, the columns it sets, which of them are NULL): Django's
# compiler builds the same text on every save (about as long as the write itself); the values
# are the only part that changes. Only for plain values on a base manager that adds no filter.
_update_texts: dict[tuple[Any, ...], str] = {}


def _update_statement(base_qs: models.QuerySet[Any], using: str, connection: Any, pk: Any, values: list[Any],
                      guard: tuple[str, list[Any]] | None) -> str:
    fast = _plain_update(base_qs, connection, pk, values)
    if fast is None:
        query = base_qs.filter(pk=pk).query.chain(sql.UpdateQuery)
        query.add_update_fields(values)
        query.annotations = {}
        text, params = query.get_compiler(using).as_sql()
        params = list(params)
    else:
        text, params = fast
    if guard is not None and guard[0]:
        text = f"{text} AND {guard[0]}"
        params.extend(guard[1])
    return compose(connection, text, params)


def _plain_update(base_qs: models.QuerySet[Any], connection: Any, pk: Any,
                  values: list[Any]) -> tuple[str, list[Any]] | None:
    """What `SQLUpdateCompiler.as_sql` gives for `base_qs.filter(pk=pk)` updating `values`, from a
    cached text, or None where the compiler must build it (an expression, a model instance or a
    field with its own placeholder among the values; a base manager with a filter)."""
    if base_qs.query.where:
        return None
    prepared = []
    placeholders = []
    for field, _, value in values:
        if hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save"):
            return None
        value = field.get_db_prep_save(value, connection=connection)
        if hasattr(value, "as_sql"):
            return None
        if isinstance(field, models.BinaryField):  # its placeholder needs no compiler
            placeholders.append(connection.ops.binary_placeholder_sql(value))
        elif hasattr(field, "get_placeholder"):
            return None
        else:
            placeholders.append("%s")
        prepared.append(value)
    model = base_qs.model
    key = (model, connection.vendor, tuple(field.column for field, _, _ in values),
           tuple(None if value is None else placeholder for value, placeholder in zip(prepared, placeholders,
                                                                                      strict=True)))
    text = _update_texts.get(key)
    if text is None:
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        assignments = ", ".join(f"{quote(field.column)} = {'NULL' if value is None else placeholder}"
                                for (field, _, _), value, placeholder in zip(values, prepared, placeholders,
                                                                              strict=True))
        text = f"UPDATE {table} SET {assignments} WHERE {table}.{quote(model._meta.pk.column)} = %s"  # type: ignore[union-attr]
        _update_texts[key] = text
    params = [value for value in prepared if value is not None]
    params.append(model._meta.pk.get_db_prep_value(pk, connection, prepared=False))  # type: ignore[union-attr]
    return text, params


def compose(connection: Any, text: str, params: list[Any]) -> str:
    """`connection.ops.compose_sql(text, params)` (the values inlined, quoted by psycopg), with one
    client-side cursor kept per database connection instead of two new cursors per call."""
    connection.ensure_connection()
    raw = connection.connection
    kept = getattr(connection, "_governed_mogrify", None)
    if kept is None or kept[0] is not raw:
        from psycopg import ClientCursor  # the PostgreSQL backend's driver

        kept = (raw, ClientCursor(raw))
        connection._governed_mogrify = kept
    return kept[1].mogrify(text, params)


def _write_guarded(model: type[models.Model], using: str, spec: ModelSpec, pk: Any, loaded: dict[str, Any] | None,
                   attempt: Callable[[dict[str, Any], bool], bool]) -> bool:
    """Run `attempt(loaded, guarded)` until it writes; False when the row does not exist.

    Optimistic first (the row read without a lock when its loaded values are unknown or proved
    stale), then, after OPTIMISTIC_TRIES failed guards, pessimistic: in a transaction, the head
    locked, the row read FOR UPDATE, the statement sent without a guard.
    """
    for _ in range(OPTIMISTIC_TRIES):
        if loaded is None:
            loaded = _read_raw(model, using, spec, pk, lock=False)
            if loaded is None:
                return False
        if attempt(loaded, True):
            return True
        loaded = None
    # The row keeps changing under us (or a value compares unequal to itself): lock, read, write.
    with transaction.atomic(using=using, savepoint=False):
        lock_head(using)
        loaded = _read_raw(model, using, spec, pk, lock=True)
        if loaded is None:
            return False
        if not attempt(loaded, False):  # pragma: no cover - the row is locked
            raise RuntimeError("a locked row was not written")
        return True


def _complete(instance: models.Model, spec: ModelSpec) -> dict[str, Any] | None:
    loaded = loaded_values(instance)
    if loaded is not None and any(attname not in loaded for attname in spec.attnames):
        return None
    return loaded


def update(instance: models.Model, save: GuardedSave, base_qs: models.QuerySet[Any], using: str, pk: Any,
           values: list[Any]) -> bool:
    """The UPDATE of a save with its entry, in one statement; False when the row does not exist."""
    model = type(instance)
    spec = model_spec(model)
    connection = connections[using]
    written = save.update_fields

    def attempt(loaded: dict[str, Any], guarded: bool) -> bool:
        before = state_from_row(spec, [loaded[attname] for attname in spec.attnames])
        if written is None:
            after = instance_state(instance)
        else:
            after = dict(before)
            for field_spec in spec.fields:
                if field_spec.name in written or field_spec.attname in written:
                    after[field_spec.name] = field_value(field_spec, instance.__dict__.get(field_spec.attname))
        changed_before, changed_after = changes(before, after)
        entry = (draft_change(save.actor, spec, pk, "updated", changed_before, changed_after, after, save.named)
                 if changed_after else None)
        guard = _guard(model, connection, spec, loaded) if guarded else None
        done = ledger_governed_write(statement=_update_statement(base_qs, using, connection, pk, values, guard),
                                     returning=False, entry=entry)
        if done is None:
            return False
        fresh = dict(loaded)
        for field, _, _ in values:
            fresh[field.attname] = instance.__dict__.get(field.attname)
        instance.__dict__[LOADED_KEY] = fresh
        return True

    return _write_guarded(model, using, spec, pk, _complete(instance, spec), attempt)


def delete(instance: models.Model, using: str, keep_parents: bool, own_receiver: Any) -> tuple[int, dict[str, int]] | None:
    """A delete that cascades to nothing, with its entry, in one statement; None where it does not apply.

    Applies when the collector finds nothing else to delete or update and no receiver but the
    capture's own listens to the delete signals (they would otherwise run, and write, apart).
    """
    model = type(instance)
    meta = model._meta
    spec = model_spec(model)
    if not applies(instance, using, spec) or pre_delete.has_listeners(model):
        return None
    sync_receivers, async_receivers = post_delete._live_receivers(model)
    if async_receivers or any(receiver is not own_receiver for receiver in sync_receivers):
        return None
    collector = Collector(using=using, origin=instance)
    collector.collect([instance], keep_parents=keep_parents)
    if (collector.fast_deletes or collector.field_updates or list(collector.data) != [model]
            or len(collector.data[model]) != 1):
        return None
    connection = connections[using]
    pk = instance.pk
    quote = connection.ops.quote_name
    pk_field = meta.pk
    base = f"DELETE FROM {quote(meta.db_table)} WHERE {quote(pk_field.column)} = %s"  # type: ignore[union-attr]
    pk_param = pk_field.get_db_prep_value(pk, connection, prepared=False)  # type: ignore[union-attr]

    def attempt(loaded: dict[str, Any], guarded: bool) -> bool:
        before = state_from_row(spec, [loaded[attname] for attname in spec.attnames])
        entry = draft_change(current_actor(), spec, pk, "deleted", before, None, None)
        text, params = base, [pk_param]
        if guarded:
            guard, guard_params = _guard(model, connection, spec, loaded)
            if guard:
                text, params = f"{text} AND {guard}", params + guard_params
        return ledger_governed_write(statement=compose(connection, text, params), returning=False,
                                     entry=entry) is not None

    deleted = _write_guarded(model, using, spec, pk, _complete(instance, spec), attempt)
    setattr(instance, pk_field.attname, None)  # type: ignore[union-attr]
    instance.__dict__.pop(LOADED_KEY, None)
    return (1, {meta.label: 1}) if deleted else (0, {})


def insert(instance: models.Model, save: GuardedSave, using: str, fields: list[Any],
           returning_fields: list[Any]) -> list[tuple[Any, ...]]:
    """The INSERT of a save with its entry, in one statement; returns what Django's _do_insert returns."""
    model = type(instance)
    meta = model._meta
    spec = model_spec(model)
    connection = connections[using]
    statement = _insert_statement(instance, using, connection, fields, returning_fields)
    state = instance_state(instance)
    known = meta.pk.attname in {field.attname for field in fields}  # type: ignore[union-attr]
    entry = draft_change(save.actor, spec, instance.pk if known else "", "created", None, state, state, save.named)
    done = ledger_governed_write(statement=statement, returning=bool(returning_fields), entry=entry,
                                 key_subject=not known)
    if done is None:  # pragma: no cover - an INSERT without ON CONFLICT writes its row or raises
        raise RuntimeError("the INSERT wrote no row")
    instance.__dict__[LOADED_KEY] = {attname: instance.__dict__.get(attname) for attname in spec.attnames}
    if not returning_fields:
        return []
    return [(meta.pk.to_python(done[1]),)]  # type: ignore[union-attr]


# The text of a create's INSERT, by (model, its columns, the columns it returns): Django's compiler
# builds the same text on every create; the values are the only part that changes. Kept only when
# every value was a plain parameter (`%s`): no expression and no field with its own placeholder.
_insert_texts: dict[tuple[Any, ...], str] = {}


def _insert_statement(instance: models.Model, using: str, connection: Any, fields: list[Any],
                      returning_fields: list[Any]) -> str:
    """What `SQLInsertCompiler.as_sql` gives for saving `instance` as a new row, values inlined:
    from a cached text when one is known for these columns, else from the compiler (which then
    fills the cache). Each field's `pre_save` (auto_now, ...) runs here, once; only if a field's
    `pre_save` or preparation made an expression does the compiler take over and run it again."""
    model = type(instance)
    key = (model, connection.vendor, tuple(field.column for field in fields),
           tuple(field.column for field in returning_fields))
    text = _insert_texts.get(key)
    values = instance.__dict__
    plain = bool(fields) and not any(hasattr(values.get(field.attname), "resolve_expression") for field in fields)
    if text is not None and plain:
        params = []
        for field in fields:
            value = field.get_db_prep_save(field.pre_save(instance, True), connection=connection)
            if (hasattr(value, "as_sql") or hasattr(value, "resolve_expression")
                    or not _plain_placeholder(field, value, connection)):  # pragma: no cover - a custom
                break  # field's pre_save or preparation made something else: the compiler decides
            params.append(value)
        else:
            return compose(connection, text, params)
    query = sql.InsertQuery(model)
    query.insert_values(fields, [instance], raw=False)
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = returning_fields
    [(text, params)] = compiler.as_sql()  # pre_save (auto_now_add, ...) runs here
    # Kept when every value went in as a bare `%s` (whatever a custom pre_save returned).
    if (plain and len(params) == len(fields) and not compiler.returning_params
            and f"VALUES ({', '.join(['%s'] * len(fields))})" in text
            and all(_plain_placeholder(field, value, connection) for field, value in zip(fields, params, strict=True))):
        _insert_texts[key] = text
    return compose(connection, text, list(params))


def _plain_placeholder(field: Any, value: Any, connection: Any) -> bool:
    """Whether the INSERT compiler puts a bare `%s` for this field's value: every field without a
    placeholder of its own, and a BinaryField where the backend's binary placeholder is `%s`."""
    if isinstance(field, models.BinaryField):
        return bool(connection.ops.binary_placeholder_sql(value) == "%s")
    return not hasattr(field, "get_placeholder")


# --- QuerySet.update(): the rows' before and after in one statement -----------------------------

# Raw values that may hold values of other types (JSON): compared as recorded values, always.
_CONTAINERS = (dict, list, tuple)


def update_returning(queryset: models.QuerySet[Any], kwargs: dict[str, Any]) -> list[tuple[Any, dict[str, Any],
                                                                                        dict[str, Any],
                                                                                        dict[str, Any]]] | None:
    """PostgreSQL, with the ledger head already held: run `queryset.update(**kwargs)` as one statement
    that locks the matching rows, updates them and returns, for each one, (pk, the changed fields
    before, the changed fields after, the whole state after) as `record.changes` gives them.

    `UPDATE t SET ... FROM (SELECT pk, <recorded columns> FROM t WHERE <filter> FOR UPDATE OF t) AS old
    WHERE t.pk = old.pk RETURNING old.*, t.<recorded columns>`: the sub-select reads each row as
    it was, the UPDATE writes exactly the rows it locked. None where this does not apply
    (another database, DISTINCT, a union, a slice, or a field of a parent model among the values).
    """
    model = queryset.model
    using = queryset.db
    connection = connections[using]
    query = queryset.query
    if (connection.vendor != "postgresql" or not connection.features.has_select_for_update_of or query.distinct
            or query.combinator or query.is_sliced):
        return None
    update_query = sql.UpdateQuery(model)
    update_query.add_update_values(kwargs)
    if update_query.related_updates:
        return None
    spec = model_spec(model)
    meta = model._meta
    quote = connection.ops.quote_name
    update_sql, update_params = update_query.get_compiler(using).as_sql()
    inner = queryset.order_by().select_for_update(of=("self",)).values_list("pk", *spec.attnames)
    inner_sql, inner_params = inner.query.get_compiler(using).as_sql()
    table = quote(meta.db_table)
    pk_field = meta.pk
    columns = [quote(field_spec.field.column) for field_spec in spec.fields]
    aliases = ", ".join(['"k"'] + [f'"c{index}"' for index in range(len(columns))])
    returning = ", ".join(['"old"."k"'] + [f'"old"."c{index}"' for index in range(len(columns))]
                          + [f"{table}.{column}" for column in columns])
    text = (f'{update_sql} FROM ({inner_sql}) AS "old" ({aliases}) '
            f'WHERE {table}.{quote(pk_field.column)} = "old"."k" RETURNING {returning}')  # type: ignore[union-attr]
    params = [*update_params, *inner_params]
    if _binary_results(model, connection):
        rows = _fetch_binary(connection, compose(connection, text, params))
    else:
        with connection.cursor() as cursor:
            cursor.execute(text, params)
            rows = cursor.fetchall()
    pk_column = pk_field.get_col(meta.db_table)  # type: ignore[union-attr]
    converters = [connection.ops.get_db_converters(pk_column) + pk_column.get_db_converters(connection)]
    for field_spec in spec.fields:
        column = field_spec.field.get_col(meta.db_table)
        converters.append(connection.ops.get_db_converters(column) + column.get_db_converters(connection))
    columns_objects = [pk_column] + [field_spec.field.get_col(meta.db_table) for field_spec in spec.fields]
    width = len(spec.fields)
    # Only the columns that have converters (the returned after-columns share the before-columns').
    converting = [(index, converters[index if index <= width else index - width],
                   columns_objects[index if index <= width else index - width])
                  for index in range(2 * width + 1) if converters[index if index <= width else index - width]]
    names, convert = spec.names, spec.converters
    result = []
    for row in rows:
        values = list(row)
        for index, functions, column in converting:
            value = values[index]
            for function in functions:
                value = function(value, column, connection)
            values[index] = value
        after = {name: function(value)
                 for name, function, value in zip(names, convert, values[width + 1:], strict=True)}
        changed_before: dict[str, Any] = {}
        changed_after: dict[str, Any] = {}
        for position in range(width):
            old, new = values[position + 1], values[width + 1 + position]
            if type(old) is type(new) and old == new and type(new) not in _CONTAINERS:
                # Equal raw values of one scalar type record equal values: unchanged.
                continue
            name = names[position]
            before_value = convert[position](old)
            if before_value != after[name]:
                changed_before[name] = before_value
                changed_after[name] = after[name]
        result.append((values[0], changed_before, changed_after, after))
    return result


# Column types whose binary result psycopg loads as the very value its text result gives (real is
# not among them: float4 widens to another float in binary; json, jsonb and intervals neither).
_BINARY_EXACT_TYPES = frozenset(("smallint", "integer", "bigint", "boolean", "text", "bytea", "uuid", "date", "time",
                                 "timestamp with time zone", "double precision", "numeric"))
_BINARY_EXACT_PREFIXES = ("varchar(", "numeric(")
_binary_models: dict[tuple[type[models.Model], str], bool] = {}


def _binary_results(model: type[models.Model], connection: Any) -> bool:
    """Whether every column `update_returning` returns for `model` (the key and the recorded
    fields) has a type in `_BINARY_EXACT_TYPES`, so its rows can come in binary."""
    key = (model, connection.alias)
    known = _binary_models.get(key)
    if known is None:
        fields = [model._meta.pk, *(field_spec.field for field_spec in model_spec(model).fields)]
        kinds = [field.db_type(connection) for field in fields]  # type: ignore[union-attr]
        known = _binary_models[key] = all(
            kind is not None and (kind in _BINARY_EXACT_TYPES or kind.startswith(_BINARY_EXACT_PREFIXES))
            for kind in kinds)
    return known


def _fetch_binary(connection: Any, statement: str) -> list[tuple[Any, ...]]:
    """Run `statement` (its values already inlined by `compose`) and fetch its rows in binary: a
    5,000-row update's before and after columns load in about a fifth of the time text takes."""
    import psycopg  # the PostgreSQL backend's driver

    connection.validate_no_broken_transaction()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as raw:
        raw.execute(statement, binary=True)
        rows = raw.fetchall()
    log_raw_query(connection, statement, started)
    return rows

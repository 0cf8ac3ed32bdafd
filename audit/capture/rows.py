"""Which models are governed, and what is recorded of a row: its fields as JSON, secrets redacted."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import connections, models
from django.db.models.expressions import BaseExpression, DatabaseDefault
from django.utils.duration import duration_iso_string

REDACTED = "<redacted>"
MAX_SAFE_INTEGER = 2**53 - 1

_registry: list[type[models.Model]] = []


def governed_models() -> list[type[models.Model]]:
    """Every concrete (non-proxy) governed model."""
    return list(_registry)


def register(model: type[models.Model]) -> None:
    """Called by `audit.capture.models` when a concrete governed model class is prepared."""
    if model not in _registry:
        _registry.append(model)


@dataclass(frozen=True)
class _Secret:
    digest: str


def public(values: dict[str, Any] | None) -> dict[str, Any] | None:
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
    # Per field, in order: its name, and its recorded value of a raw value (`field_value`, with
    # the usual types of the usual fields converted directly).
    names: tuple[str, ...] = ()
    converters: tuple[Callable[[Any], Any], ...] = ()
    # (name, attname, converter) per field, for reading an instance.
    recorders: tuple[tuple[str, str, Callable[[Any], Any]], ...] = ()

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
        converters = tuple(_converter(field_spec) for field_spec in fields)
        spec = ModelSpec(model=model, subject_type=f"{meta.app_label}.{meta.model_name}",
                         model_name=meta.model_name, fields=fields,
                         has_redacted=any(field_spec.redacted for field_spec in fields),
                         names=tuple(field_spec.name for field_spec in fields), converters=converters,
                         recorders=tuple((field_spec.name, field_spec.attname, convert)
                                         for field_spec, convert in zip(fields, converters, strict=True)))
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


def field_value(spec: _FieldSpec, value: Any) -> Any:
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


def _converter(spec: _FieldSpec) -> Callable[[Any], Any]:
    """`field_value` bound to one field, with the common cases spelled out (the same results,
    without the generic dispatch): a large batch converts every field of every row."""
    if spec.redacted:
        return partial(field_value, spec)
    if not spec.normalize:
        def plain(value: Any) -> Any:
            kind = type(value)
            if kind is str or kind is bool or value is None:
                return value
            if kind is int:
                return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
            if kind is float:
                return value if math.isfinite(value) else str(value)
            return json_value(value)
        return plain
    field_class = type(spec.field)
    quantum = spec.quantum
    if quantum is not None and field_class.to_python is models.DecimalField.to_python:
        def decimal(value: Any) -> Any:
            # DecimalField.to_python returns a finite Decimal as it is (and refuses others).
            if type(value) is Decimal and value.is_finite():
                return str(value.quantize(quantum))
            return field_value(spec, value)
        return decimal
    if field_class.to_python is models.DateTimeField.to_python:
        def moment(value: Any) -> Any:
            # DateTimeField.to_python returns a datetime as it is; json_value writes it in UTC.
            if type(value) is datetime:
                return (value if value.tzinfo is None else value.astimezone(UTC)).isoformat()
            return field_value(spec, value)
        return moment
    if field_class.to_python is models.DateField.to_python:
        def day(value: Any) -> Any:
            if type(value) is date:  # returned as it is by DateField.to_python
                return value.isoformat()
            return field_value(spec, value)
        return day
    return partial(field_value, spec)


# Value types that are never expressions (skips the slower checks below for the usual values).
_VALUE_TYPES = frozenset((str, int, bool, float, type(None), Decimal, date, datetime, time, timedelta, uuid.UUID, bytes))


def needs_reread(instance: models.Model, spec: ModelSpec) -> bool:
    for field_spec in spec.fields:
        value = instance.__dict__.get(field_spec.attname)
        if type(value) in _VALUE_TYPES:
            continue
        if isinstance(value, (BaseExpression, DatabaseDefault)) or hasattr(value, "resolve_expression"):
            return True
    return False


def instance_state(instance: models.Model) -> dict[str, Any]:
    """The recorded state of an in-memory instance (as it was written)."""
    spec = model_spec(type(instance))
    values = instance.__dict__
    return {name: convert(values.get(attname)) for name, attname, convert in spec.recorders}


def state_from_row(spec: ModelSpec, row: Sequence[Any]) -> dict[str, Any]:
    return {name: convert(value) for name, convert, value in zip(spec.names, spec.converters, row, strict=True)}


def read_states(model: type[models.Model], using: str, pks: Sequence[Any], *,
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
            states[row[0]] = state_from_row(spec, row[1:])
    return states

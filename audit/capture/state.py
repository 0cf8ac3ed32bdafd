"""The state check: rows and many-to-many sets changed outside the ORM (raw SQL, loaddata, migrations)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import models
from django.db.models import Max

from audit import jcs
from audit.capture.m2m import m2m_by_through, resolve_m2m
from audit.capture.rows import (
    ModelSpec,
    _FieldSpec,
    field_value,
    governed_models,
    json_value,
    model_spec,
    state_from_row,
)


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


def differing_fields(compared: Sequence[_FieldSpec], recorded: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """Names of the fields whose live value differs from the recorded state.

    A field missing from the recorded state was added by a migration after that entry was written:
    it counts as unchanged while the row still holds the field's default (what the migration
    filled in), and as a difference once the row holds anything else.
    """
    differing = []
    for field_spec in compared:
        name = field_spec.name
        if name in recorded:
            expected = recorded[name]
        else:
            expected = field_value(field_spec, field_spec.field.get_default())
        if expected != live[name]:
            differing.append(name)
    return sorted(differing)


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
            differing = differing_fields(compared, state, state_from_row(spec, row[1:]))
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

    resolve_m2m()
    for info in [info for info in m2m_by_through.values() if info.owner is model]:
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

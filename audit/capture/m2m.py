"""Many-to-many sets of governed models: each add/remove/set/clear, and a target's deletion, is an entry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models.signals import pre_delete

from audit.capture.record import NAMED_KEY, draft_change, lock_head, record
from audit.capture.rows import governed_models, json_value, model_spec, read_states
from core.actor import current_actor


@dataclass(frozen=True)
class _M2M:
    owner: type[models.Model]
    field: models.ManyToManyField[Any, Any]
    source: str  # through-table attname pointing at the owner
    target: str  # through-table attname pointing at the other side


m2m_by_through: dict[type[models.Model], _M2M] = {}
_m2m_resolved: set[type[models.Model]] = set()


def resolve_m2m() -> None:
    for model in governed_models():
        if model in _m2m_resolved:
            continue
        for field in model._meta.local_many_to_many:
            through = field.remote_field.through  # type: ignore[union-attr]
            if isinstance(through, str):
                return  # not resolved yet; try again on the next signal
            m2m_by_through[through] = _M2M(owner=model, field=field,
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


def on_m2m_changed(sender: type[models.Model], instance: models.Model, action: str, reverse: bool,
                    model: type[models.Model], pk_set: set[Any] | None, using: str, **kwargs: Any) -> None:
    if sender not in m2m_by_through:
        resolve_m2m()
    info = m2m_by_through.get(sender)
    if info is None:
        return
    stash_key = f"_governed_m2m_{id(sender)}"
    if action.startswith("pre_"):
        current_actor()
        head = lock_head(using)
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
    states = read_states(info.owner, using, changed, lock=False)
    name = info.field.name
    operation = action.removeprefix("post_")
    # Named by `m2m_set_recorded` on the owner (forward side only): that instance's set, that field.
    named = None if reverse else instance.__dict__.get(f"{NAMED_KEY}_m2m_{name}")
    drafts = []
    for owner in changed:
        drafts.append(draft_change(
            actor, spec, owner, "m2m_changed",
            {name: sorted(json_value(pk) for pk in before_sets[owner])},
            {name: sorted(json_value(pk) for pk in after_sets[owner])},
            states.get(owner), named,
            m2m={"field": name, "operation": operation,
                 "pks": sorted(json_value(pk) for pk in before_sets[owner] ^ after_sets[owner])},
        ))
    record(drafts, checkpoint=len(drafts) > 1, head=head)


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
        head = lock_head(using)
        before_sets = _m2m_sets(info, using, owners)
        spec = model_spec(info.owner)
        states = read_states(info.owner, using, owners, lock=False)
        name = info.field.name
        drafts = [draft_change(actor, spec, owner, "m2m_changed",
                         {name: sorted(json_value(pk) for pk in before_sets[owner])},
                         {name: sorted(json_value(pk) for pk in before_sets[owner] - {instance.pk})},
                         states.get(owner),
                         m2m={"field": name, "operation": "target_deleted", "pks": [json_value(instance.pk)]})
                  for owner in owners]
        record(drafts, checkpoint=len(drafts) > 1, head=head)


_m2m_by_target: dict[type[models.Model], list[_M2M]] = {}


def connect_m2m_targets() -> None:
    """Once apps are ready: watch deletions of every model a governed many-to-many points at."""
    resolve_m2m()
    for info in m2m_by_through.values():
        target_model = info.field.remote_field.model  # type: ignore[union-attr]
        infos = _m2m_by_target.setdefault(target_model, [])
        if info not in infos:
            infos.append(info)
            pre_delete.connect(_on_m2m_target_pre_delete, sender=target_model,
                               dispatch_uid=f"governed-m2m-target-{target_model._meta.label}")


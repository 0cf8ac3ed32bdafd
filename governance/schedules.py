"""Governed changes to the beat schedule (django-celery-beat's periodic tasks, intervals, crontabs, ...).

Every create, change and delete made from the admin goes through `schedule_save` /
`schedule_delete`: risk officers only (`schedule_risk_officer_only`; a superuser is not a risk
officer), each one a ledger entry `<model>.created|updated|deleted` with the fields before and
after. The ledger checkpoint and the nightly verification (`PROTECTED_TASKS`) cannot be
disabled, deleted, made one-off, given an expiry or a later start, moved to another task, or
scheduled rarer, neither through their own row nor through the interval or crontab they use
(`schedule_protected`). A refused attempt is kept as `<action>.refused`. Beat's own bookkeeping
(last run, run counts) is not a change of the schedule and is not recorded.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from audit.ledger import ledger_append, lock_for_update
from audit.refusals import refusal_recorded
from core.errors import Conflict, Forbidden
from governance.accounts import is_system_actor
from governance.roles import RISK_OFFICER

PROTECTED_TASKS = frozenset({"audit.tasks.ledger_checkpoint_task", "audit.tasks.ledger_verify_task"})
SCHEDULE_MODELS = (PeriodicTask, IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule)
_SCHEDULE_FIELDS = ("interval", "crontab", "solar", "clocked")
# Crontabs are compared over a fixed window longer than a year (yearly schedules show one gap).
_CRON_WINDOW_START = date(2026, 1, 1)
_CRON_WINDOW_DAYS = 400
_PERIOD_S = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


def _is_risk_officer(by: Any) -> bool:
    if is_system_actor(by):
        return True
    return bool(getattr(by, "is_authenticated", False) and by.is_active
                and by.groups.filter(name=RISK_OFFICER).exists())


def _label(obj: Any) -> str:
    return obj._meta.model_name


def _subject(obj: Any) -> tuple[str, str]:
    return (f"django_celery_beat.{_label(obj)}", str(obj.pk) if obj.pk is not None else "new")


def _fields(obj: Any) -> dict[str, Any]:
    """The schedule-defining fields as JSON (beat's bookkeeping left out)."""
    skip = {"id", "last_run_at", "total_run_count", "date_changed"}
    values: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.name in skip:
            continue
        value = getattr(obj, field.attname)
        if isinstance(value, (datetime, date, timedelta)):
            value = str(value)
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            value = str(value)
        values[field.name] = value
    return values


# --- How rarely a schedule runs: the longest gap between two runs, in seconds ----------------------

def cron_max_gap_s(*, minute: str, hour: str, day_of_week: str, day_of_month: str, month_of_year: str) -> float:
    """The longest gap between runs of a crontab (celery semantics: every field must match)."""
    from celery.schedules import crontab

    parsed = crontab(minute=minute, hour=hour, day_of_week=day_of_week, day_of_month=day_of_month,
                     month_of_year=month_of_year)
    times_of_day = sorted(h * 60 + m for h in parsed.hour for m in parsed.minute)
    runs: list[int] = []
    for offset in range(_CRON_WINDOW_DAYS):
        day = _CRON_WINDOW_START + timedelta(days=offset)
        if (day.month in parsed.month_of_year and day.day in parsed.day_of_month
                and (day.weekday() + 1) % 7 in parsed.day_of_week):
            runs.extend(offset * 1440 + minute_of_day for minute_of_day in times_of_day)
    if len(runs) < 2:
        return math.inf
    return max(later - earlier for earlier, later in zip(runs, runs[1:], strict=False)) * 60.0


def schedule_max_gap_s(schedule: Any) -> float:
    if isinstance(schedule, IntervalSchedule):
        return float(schedule.every) * _PERIOD_S.get(schedule.period, math.inf)
    if isinstance(schedule, CrontabSchedule):
        return cron_max_gap_s(minute=schedule.minute, hour=schedule.hour, day_of_week=schedule.day_of_week,
                              day_of_month=schedule.day_of_month, month_of_year=schedule.month_of_year)
    return math.inf  # solar and clocked schedules are not how the ledger's own jobs run


def task_max_gap_s(task: PeriodicTask, *, schedule: Any = None) -> float:
    """The longest gap of a periodic task (with `schedule` standing in for the one it names, if given)."""
    if task.one_off:
        return math.inf
    if schedule is None:
        schedule = next((getattr(task, name) for name in _SCHEDULE_FIELDS if getattr(task, f"{name}_id")), None)
    return math.inf if schedule is None else schedule_max_gap_s(schedule)


def _protected(why: str, task: PeriodicTask, **extra: Any) -> Conflict:
    return Conflict("The ledger checkpoint and verification tasks cannot be disabled, deleted or made rarer.",
                    code="schedule_protected", extra={"task": task.task, "name": task.name, "why": why, **extra})


def _check_task_change(before: PeriodicTask, after: PeriodicTask) -> None:
    if before.task not in PROTECTED_TASKS:
        return
    if after.task != before.task:
        raise _protected("task_changed", before)
    if before.enabled and not after.enabled:
        raise _protected("disabled", before)
    if after.one_off and not before.one_off:
        raise _protected("one_off", before)
    if after.expires is not None and after.expires != before.expires:
        raise _protected("expires", before)
    if after.start_time is not None and after.start_time != before.start_time and after.start_time > timezone.now():
        raise _protected("start_later", before)
    old_gap, new_gap = task_max_gap_s(before), task_max_gap_s(after)
    if new_gap > old_gap:
        raise _protected("rarer", before, max_gap_s_before=old_gap, max_gap_s_after=new_gap)


def _check_schedule_change(before: Any, after: Any) -> None:
    field = {IntervalSchedule: "interval", CrontabSchedule: "crontab", SolarSchedule: "solar",
             ClockedSchedule: "clocked"}[type(after)]
    for task in PeriodicTask.objects.filter(**{field: before.pk}, task__in=PROTECTED_TASKS, enabled=True):
        old_gap, new_gap = task_max_gap_s(task, schedule=before), task_max_gap_s(task, schedule=after)
        if new_gap > old_gap:
            raise _protected("rarer", task, max_gap_s_before=old_gap, max_gap_s_after=new_gap)


def schedule_save(*, obj: Any, by: Any) -> Any:
    """Create or change a periodic task or schedule (an instance edited in memory, e.g. by an admin form)."""
    created = obj.pk is None or obj._state.adding
    action = f"{_label(obj)}.{'created' if created else 'updated'}"
    after = _fields(obj)
    with refusal_recorded(actor=by, action=action, subject=_subject(obj), attempt=after):
        if not _is_risk_officer(by):
            raise Forbidden("Periodic tasks and their schedules are changed by risk officers only.",
                            code="schedule_risk_officer_only")
        with transaction.atomic():
            before_row = None if created else lock_for_update(type(obj)._default_manager).get(pk=obj.pk)
            if before_row is not None:
                if isinstance(obj, PeriodicTask):
                    _check_task_change(before_row, obj)
                else:
                    _check_schedule_change(before_row, obj)
            before = None if before_row is None else _fields(before_row)
            obj.save()
            changed = [name for name in after if before is None or before.get(name) != after[name]]
            if changed:
                payload: dict[str, Any] = {"name": str(obj)[:200]}
                if before is None:
                    payload["after"] = after
                else:
                    payload["before"] = {name: before.get(name) for name in changed}
                    payload["after"] = {name: after[name] for name in changed}
                ledger_append(actor=by, action=action, subject=_subject(obj), payload=payload)
    return obj


def schedule_delete(*, obj: Any, by: Any) -> None:
    """Delete a periodic task or schedule; never one the ledger's own jobs run on."""
    action = f"{_label(obj)}.deleted"
    with refusal_recorded(actor=by, action=action, subject=_subject(obj), attempt={"name": str(obj)[:200]}):
        if not _is_risk_officer(by):
            raise Forbidden("Periodic tasks and their schedules are changed by risk officers only.",
                            code="schedule_risk_officer_only")
        if isinstance(obj, PeriodicTask):
            if obj.task in PROTECTED_TASKS:
                raise _protected("deleted", obj)
        else:
            field = {IntervalSchedule: "interval", CrontabSchedule: "crontab", SolarSchedule: "solar",
                     ClockedSchedule: "clocked"}[type(obj)]
            used = PeriodicTask.objects.filter(**{field: obj.pk}, task__in=PROTECTED_TASKS).first()
            if used is not None:  # deleting a schedule deletes the tasks that use it
                raise _protected("deleted", used)
        with transaction.atomic():
            pk, fields = obj.pk, _fields(obj)
            subject = _subject(obj)
            obj.delete()
            ledger_append(actor=by, action=action, subject=subject, payload={"name": str(obj)[:200], "before": fields})
            obj.pk = pk if obj.pk is None else obj.pk

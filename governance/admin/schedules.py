"""Admin of the beat schedule (django-celery-beat): the same pages, every write through governance.schedules.

django-celery-beat's own admins save rows directly and bulk-update them from their actions; these
replace them so that each change is a risk officer's, recorded, and never disables or thins out
the ledger's own jobs. The "run now" action is left out: tasks are queued through the outbox.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from core.errors import ServiceError, error_text
from governance import schedules
from governance.admin.base import RefusalShownAdmin


class GovernedScheduleMixin(RefusalShownAdmin):
    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        schedules.schedule_save(obj=obj, by=request.user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        schedules.schedule_delete(obj=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                schedules.schedule_delete(obj=obj, by=request.user)


for _model in schedules.SCHEDULE_MODELS:
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(PeriodicTask)
class GovernedPeriodicTaskAdmin(GovernedScheduleMixin, beat_admin.PeriodicTaskAdmin):
    actions = ("enable_tasks", "disable_tasks")

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[PeriodicTask], enabled: bool) -> None:
        done = 0
        for task in queryset:
            task.enabled = enabled
            try:
                schedules.schedule_save(obj=task, by=request.user)
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{task.name}: {error_text(exc)}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} task(s) {'enabled' if enabled else 'disabled'}.", messages.SUCCESS)

    @admin.action(description="Enable selected tasks")
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected tasks")
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self._set_enabled(request, queryset, False)


@admin.register(IntervalSchedule)
class GovernedIntervalScheduleAdmin(GovernedScheduleMixin, beat_admin.IntervalScheduleAdmin):
    pass


@admin.register(CrontabSchedule)
class GovernedCrontabScheduleAdmin(GovernedScheduleMixin, beat_admin.CrontabScheduleAdmin):
    pass


@admin.register(SolarSchedule)
class GovernedSolarScheduleAdmin(GovernedScheduleMixin, beat_admin.SolarScheduleAdmin):
    pass


@admin.register(ClockedSchedule)
class GovernedClockedScheduleAdmin(GovernedScheduleMixin, beat_admin.ClockedScheduleAdmin):
    pass

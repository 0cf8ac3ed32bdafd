"""Admin: reference profiles, monitors, runs and alerts, read-only (written by `services` with their ledger entries)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import ReadOnlyModelAdmin
from governance.monitoring import selectors
from governance.monitoring.models import Alert, Monitor, MonitorRun, ReferenceProfile


@admin.register(ReferenceProfile)
class ReferenceProfileAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "version", "row_count", "bins", "profile_sha256", "frozen_at", "created_at")
    list_filter = ("engine_version",)
    search_fields = ("version__model__name", "version__label", "profile_sha256", "source_sha256")
    readonly_fields = [field.name for field in ReferenceProfile._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReferenceProfile]:
        return selectors.reference_profile_list(user=request.user)


@admin.register(Monitor)
class MonitorAdmin(ReadOnlyModelAdmin):
    """Read-only: thresholds are policy, changed through the API's two-risk-officer rule."""

    list_display = ("id", "name", "version", "window_days", "task", "created_at")
    search_fields = ("name", "version__model__name")
    readonly_fields = [field.name for field in Monitor._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Monitor]:
        return selectors.monitor_list(user=request.user)


@admin.register(MonitorRun)
class MonitorRunAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "monitor", "window_end", "breached", "result_sha256", "ledger_seq")
    list_filter = ("breached",)
    readonly_fields = [field.name for field in MonitorRun._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[MonitorRun]:
        return selectors.monitor_run_list(user=request.user)


@admin.register(Alert)
class AlertAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "monitor", "kind", "subject", "status", "created_at", "acknowledged_at")
    list_filter = ("status", "kind")
    readonly_fields = [field.name for field in Alert._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        return selectors.alert_list(user=request.user)

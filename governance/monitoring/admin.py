"""Admin: reference profiles, read-only (written by `services.profiles` with their ledger entries)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import ReadOnlyModelAdmin
from governance.monitoring import selectors
from governance.monitoring.models import ReferenceProfile


@admin.register(ReferenceProfile)
class ReferenceProfileAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "version", "row_count", "bins", "profile_sha256", "frozen_at", "created_at")
    list_filter = ("engine_version",)
    search_fields = ("version__model__name", "version__label", "profile_sha256", "source_sha256")
    readonly_fields = [field.name for field in ReferenceProfile._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReferenceProfile]:
        return selectors.reference_profile_list(user=request.user)

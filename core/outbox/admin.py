from django.contrib import admin

from core.outbox.models import OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Read-only: rows are written by the outbox service only."""

    list_display = ("pk", "task_name", "created_at", "dispatched_at", "attempts", "last_error")
    list_filter = ("task_name", ("dispatched_at", admin.EmptyFieldListFilter))

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

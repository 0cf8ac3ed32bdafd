from django.contrib import admin

from core.admin import ReadOnlyModelAdmin
from core.outbox.models import OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyModelAdmin):
    """Rows are written by the outbox service only."""

    list_display = ("pk", "task_name", "created_at", "dispatched_at", "attempts", "last_error")
    list_filter = ("task_name", ("dispatched_at", admin.EmptyFieldListFilter))

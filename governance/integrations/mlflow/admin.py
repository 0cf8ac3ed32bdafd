"""Admin: MLflow connections, set by admins only (each change a ledger entry through the services);
violations and deliveries are read-only here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from governance.admin.base import ServiceBackedAdmin
from governance.integrations.mlflow.models import MlflowConnection, MlflowDelivery, MlflowViolation
from governance.integrations.mlflow.services.connections import (
    EDITABLE,
    mlflow_connection_create,
    mlflow_connection_update,
)
from governance.permissions import is_admin


@admin.register(MlflowConnection)
class MlflowConnectionAdmin(ServiceBackedAdmin):
    list_display = ("name", "tracking_uri", "team", "is_active", "revert_violations", "alias_on_approval")
    fields = ("name", "team", *EDITABLE)
    readonly_fields_on_change = ("name", "team")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self.readonly_fields_on_change if obj else ()

    # Admins, and only admins: the connection decides who registers and deploys for a team.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_admin(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_admin(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_admin(request.user)

    def save_model(self, request: HttpRequest, obj: MlflowConnection, form: Any, change: bool) -> None:
        values = {field: form.cleaned_data[field] for field in EDITABLE if field in form.cleaned_data}
        if change:
            saved = mlflow_connection_update(connection=MlflowConnection.objects.get(pk=obj.pk), by=request.user,
                                             **values)
        else:
            saved = mlflow_connection_create(by=request.user, name=obj.name, team=obj.team, **values)
        self.adopt(obj, saved)


class ReadOnlyAdmin(ServiceBackedAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MlflowViolation)
class MlflowViolationAdmin(ReadOnlyAdmin):
    list_display = ("detected_at", "connection", "model", "mlflow_version", "alias", "environment", "version_status",
                    "reverted_at")
    list_filter = ("connection", "environment")


@admin.register(MlflowDelivery)
class MlflowDeliveryAdmin(admin.ModelAdmin):
    list_display = ("received_at", "connection", "event", "model_name", "version", "is_test", "ledger_seq")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

"""Admin of environments and deployments."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from governance import selectors
from governance.admin.base import RequestFormAdmin, ServiceBackedAdmin, comment_action
from governance.models import (
    Deployment,
    Environment,
)
from governance.registry.services.deployments import (
    deployment_end,
    deployment_record,
    deployment_rollback,
    environment_create,
)


@admin.register(Environment)
class EnvironmentAdmin(ServiceBackedAdmin):
    list_display = ("name", "is_production", "description")
    fields = ("name", "is_production", "description")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self.fields if obj else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Environment, form: Any, change: bool) -> None:
        self.adopt(obj, environment_create(by=request.user, name=obj.name, is_production=obj.is_production,
                                                    description=obj.description))


class DeploymentForm(forms.ModelForm):
    class Meta:
        model = Deployment
        fields = ("version", "environment", "comment")

    def __init__(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The change page shows every field read-only: the form then has no "version" field to limit.
        if request is not None and "version" in self.fields:
            self.fields["version"].queryset = selectors.model_version_list(  # type: ignore[attr-defined]
                user=request.user).select_related("model")


@admin.register(Deployment)
class DeploymentAdmin(RequestFormAdmin):
    form = DeploymentForm
    list_display = ("id", "model", "version", "environment", "is_active", "is_rollback", "deployed_by", "deployed_at")
    list_filter = ("environment", "is_active", "is_rollback")
    actions = ["roll_back", "end"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["version", "environment", "comment"]
        return ["model", "version", "environment", "deployed_by", "deployed_at", "replaced", "is_rollback",
                "is_active", "comment"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj) if obj else []

    def get_queryset(self, request: HttpRequest) -> QuerySet[Deployment]:
        return selectors.deployment_list(user=request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Deployment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        self.adopt(obj, deployment_record(version=data["version"], environment=data["environment"],
                                                   by=request.user, comment=data.get("comment", "")))

    @admin.action(description="Roll back selected deployments…")
    def roll_back(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Roll back", action="roll_back",
                               run=lambda deployment, comment: deployment_rollback(
                                   deployment=deployment, by=request.user, comment=comment))

    @admin.action(description="End selected deployments (undeploy)…")
    def end(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="End", action="end",
                               run=lambda deployment, comment: deployment_end(
                                   deployment=deployment, by=request.user, comment=comment))

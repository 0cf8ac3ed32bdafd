"""Admin of the registry: teams, registered models and their versions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from guardian.admin import GuardedModelAdminMixin

from governance import selectors
from governance.admin.base import RequestFormAdmin, ServiceBackedAdmin, comment_action, visible_models
from governance.models import (
    MODEL_CARD_FIELDS,
    ModelVersion,
    RegisteredModel,
    Team,
)
from governance.permissions import can_write_model
from governance.registry.services.approvals import model_version_submit
from governance.registry.services.registry import (
    model_register,
    model_update,
    model_version_deprecate,
    model_version_register,
    model_version_retire,
    model_version_update_card,
    team_create,
)


@admin.register(Team)
class TeamAdmin(ServiceBackedAdmin):
    list_display = ("name", "display_name", "created_at")
    fields = ("name", "display_name")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name", "display_name") if obj else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        self.adopt(obj, team_create(by=request.user, name=obj.name, display_name=obj.display_name))


class RegisteredModelForm(forms.ModelForm):
    affected_groups = forms.CharField(required=False, help_text="One per line", widget=forms.Textarea({"rows": 3}))
    contacts = forms.CharField(required=False, help_text="E-mail addresses, one per line",
                               widget=forms.Textarea({"rows": 3}))

    class Meta:
        model = RegisteredModel
        fields = ("name", "team", "risk_tier", "description", "intended_purpose", "affected_groups", "contacts")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("affected_groups", "contacts"):
            if self.instance.pk and isinstance(getattr(self.instance, name), list):
                self.initial[name] = "\n".join(getattr(self.instance, name))

    def clean_affected_groups(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["affected_groups"].splitlines() if line.strip()]

    def clean_contacts(self) -> list[str]:
        contacts = [line.strip() for line in self.cleaned_data["contacts"].splitlines() if line.strip()]
        for contact in contacts:
            forms.EmailField().clean(contact)
        return contacts


@admin.register(RegisteredModel)
class RegisteredModelAdmin(GuardedModelAdminMixin, ServiceBackedAdmin):
    """Also offers guardian's "Object permissions" page, to scope approvers or share a model; only
    users who may change groups (admins) can use it, and each grant is a ledger entry."""

    form = RegisteredModelForm

    def _require_grant_right(self, request: HttpRequest) -> None:
        if not (request.user.is_superuser or request.user.has_perm("auth.change_group")):
            raise PermissionDenied

    def obj_perms_manage_view(self, request: HttpRequest, object_pk: str) -> HttpResponse:
        self._require_grant_right(request)
        return super().obj_perms_manage_view(request, object_pk)

    def obj_perms_manage_user_view(self, request: HttpRequest, object_pk: str, user_id: str) -> HttpResponse:
        self._require_grant_right(request)
        return super().obj_perms_manage_user_view(request, object_pk, user_id)

    def obj_perms_manage_group_view(self, request: HttpRequest, object_pk: str, group_id: str) -> HttpResponse:
        self._require_grant_right(request)
        return super().obj_perms_manage_group_view(request, object_pk, group_id)
    list_display = ("name", "team", "risk_tier", "updated_at")
    list_filter = ("risk_tier", "team")
    search_fields = ("name", "description")

    def get_queryset(self, request: HttpRequest) -> QuerySet[RegisteredModel]:
        return visible_models(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name", "team") if obj else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or can_write_model(request.user, obj, "governance.change_registeredmodel")

    def save_model(self, request: HttpRequest, obj: RegisteredModel, form: Any, change: bool) -> None:
        data = form.cleaned_data
        fields = {name: data[name] for name in ("risk_tier", "description", "intended_purpose", "affected_groups",
                                                "contacts")}
        if change:
            saved = model_update(model=RegisteredModel.objects.get(pk=obj.pk), by=request.user, **fields)
        else:
            saved = model_register(by=request.user, name=data["name"], team=data["team"], **fields)
        self.adopt(obj, saved)


class ModelVersionForm(forms.ModelForm):
    manifest = forms.JSONField(help_text='{"path/to/file": "<sha256 hex>", ...}')

    class Meta:
        model = ModelVersion
        fields = ("model", "label", "artifact_uri", "manifest", "framework", "training_metrics", *MODEL_CARD_FIELDS)

    def __init__(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if request is not None and "model" in self.fields:
            self.fields["model"].queryset = visible_models(request)  # type: ignore[attr-defined]



@admin.register(ModelVersion)
class ModelVersionAdmin(RequestFormAdmin):
    form = ModelVersionForm
    list_display = ("model", "label", "status", "framework", "created_by", "created_at")
    list_filter = ("status", "model__risk_tier")
    search_fields = ("label", "model__name")
    actions = ["submit_for_approval", "deprecate", "retire"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return selectors.model_version_list(user=request.user).select_related("created_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        fixed = ("model", "label", "artifact_uri", "manifest", "manifest_digest", "status", "training_metrics",
                 "training_run", "created_by")
        return fixed if obj.status == "draft" else (*fixed, "framework", *MODEL_CARD_FIELDS)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return list(ModelVersionForm.Meta.fields)
        return ["model", "label", "status", "artifact_uri", "manifest", "manifest_digest", "training_run",
                "training_metrics", "created_by", "framework", *MODEL_CARD_FIELDS]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or can_write_model(request.user, obj.model, "governance.change_modelversion")

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            card = {name: data[name] for name in (*MODEL_CARD_FIELDS, "framework") if name in data}
            saved = model_version_update_card(version=ModelVersion.objects.get(pk=obj.pk), by=request.user,
                                                       **card)
        else:
            saved = model_version_register(
                model=data["model"], by=request.user, label=data["label"], artifact_uri=data["artifact_uri"],
                manifest=data["manifest"], framework=data.get("framework", ""),
                training_metrics=data.get("training_metrics") or {},
                **{name: data.get(name, "") for name in MODEL_CARD_FIELDS})
        self.adopt(obj, saved)

    @admin.action(description="Submit selected drafts for approval")
    def submit_for_approval(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Submit for approval", action="submit_for_approval",
                               run=lambda version, comment: model_version_submit(
                                   version=version, by=request.user, comment=comment))

    @admin.action(description="Deprecate selected versions")
    def deprecate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Deprecate", action="deprecate",
                               run=lambda version, comment: model_version_deprecate(
                                   version=version, by=request.user, comment=comment))

    @admin.action(description="Retire selected versions")
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Retire", action="retire",
                               run=lambda version, comment: model_version_retire(
                                   version=version, by=request.user, comment=comment))

"""The governance admin: registry, approval queue and decisions, deployments, service accounts.

Every write goes through `governance.services`, so the admin enforces the same rules as the
API (separation of duties, quorum, evidence, production gate). A refused write shows its
error code and message and leaves nothing behind (the admin view's transaction rolls back).
History pages read the ledger and verify each entry against the latest signed checkpoint.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from guardian.admin import GuardedModelAdminMixin

from core.actor import current_actor
from core.errors import ServiceError
from governance import accounts, selectors, services
from governance.auth import RateLimitedAdminAuthenticationForm
from governance.history import subject_history
from governance.models import (
    MODEL_CARD_FIELDS,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    Decision,
    Deployment,
    Environment,
    ModelVersion,
    RegisteredModel,
    ServiceAccount,
    ServiceToken,
    Team,
    TokenScope,
)
from governance.permissions import can_decide, can_view_model, can_write_model
from governance.roles import ROLE_NAMES

# Sign-ins to the admin are rate limited (see governance.auth.LoginThrottle).
admin.site.login_form = RateLimitedAdminAuthenticationForm
admin.site.site_header = "ML governance"
admin.site.site_title = "ML governance"


def _error_text(exc: ServiceError) -> str:
    return f"{exc.message} [{exc.code}]"


def _model_of(obj: Any) -> RegisteredModel | None:
    if isinstance(obj, RegisteredModel):
        return obj
    if isinstance(obj, (ModelVersion, Deployment)):
        return obj.model
    if isinstance(obj, ApprovalRequest):
        return obj.version.model
    if isinstance(obj, ApprovalDecision):
        return obj.request.version.model
    if isinstance(obj, ApprovalPolicy):
        return obj.model
    return None


class ServiceBackedAdmin(admin.ModelAdmin):
    """Writes go through services; a refused write is shown as an error, never a 500.
    Nothing governed is deleted from the admin: versions are retired, tokens revoked."""

    history_template = "admin/governance/ledger_history.html"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not super().has_view_permission(request, obj):
            return False
        model = _model_of(obj) if obj is not None else None
        return model is None or can_view_model(request.user, model)

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as exc:
            # The admin view's transaction has rolled back: no row, no ledger entry.
            self.message_user(request, _error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def adopt(self, obj: Any, saved: Any) -> None:
        """Make the admin's unsaved instance the row the service wrote (for the redirect and log)."""
        obj.__dict__.update({key: value for key, value in saved.__dict__.items() if key != "_state"})
        obj._state.adding = False
        obj._state.db = saved._state.db

    def history_view(self, request: HttpRequest, object_id: str,
                     extra_context: dict[str, Any] | None = None) -> HttpResponse:
        obj = self.get_object(request, admin.utils.unquote(object_id))
        if obj is None or not self.has_view_or_change_permission(request, obj):
            raise Http404("No such object.")
        meta = obj._meta
        history = subject_history(f"{meta.app_label}.{meta.model_name}", str(obj.pk))
        context = {
            **self.admin_site.each_context(request), "title": f"Ledger history: {obj}", "object": obj,
            "opts": meta, "history": history, "subject": f"{meta.app_label}.{meta.model_name}:{obj.pk}",
            "rows": [{"item": item, "payload": json.dumps(item.payload, indent=2, sort_keys=True)}
                     for item in history.entries],
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.history_template, context)


def _visible_models(request: HttpRequest) -> QuerySet[RegisteredModel]:
    return selectors.registered_model_list(user=request.user)


# --- Teams and models -------------------------------------------------------------------------

@admin.register(Team)
class TeamAdmin(ServiceBackedAdmin):
    list_display = ("name", "display_name", "created_at")
    fields = ("name", "display_name")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name", "display_name") if obj else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        self.adopt(obj, services.team_create(by=request.user, name=obj.name, display_name=obj.display_name))


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
        return _visible_models(request)

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
            saved = services.model_update(model=RegisteredModel.objects.get(pk=obj.pk), by=request.user, **fields)
        else:
            saved = services.model_register(by=request.user, name=data["name"], team=data["team"], **fields)
        self.adopt(obj, saved)


class ModelVersionForm(forms.ModelForm):
    manifest = forms.JSONField(help_text='{"path/to/file": "<sha256 hex>", ...}')

    class Meta:
        model = ModelVersion
        fields = ("model", "label", "artifact_uri", "manifest", "framework", "training_metrics", *MODEL_CARD_FIELDS)

    def __init__(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if request is not None and "model" in self.fields:
            self.fields["model"].queryset = _visible_models(request)  # type: ignore[attr-defined]


class CommentForm(forms.Form):
    comment = forms.CharField(widget=forms.Textarea({"rows": 4, "cols": 80}), required=True,
                              help_text="Recorded in the ledger with your decision.")


def _comment_action(request: HttpRequest, admin_obj: Any, queryset: QuerySet[Any], *, title: str,
                    action: str, run: Any, extra_fields: dict[str, Any] | None = None) -> HttpResponse | None:
    """An admin action that first asks for a comment (intermediate page), then runs a service per object."""
    if "apply" in request.POST:
        form = CommentForm(request.POST)
        if form.is_valid():
            done = 0
            for obj in queryset:
                try:
                    with transaction.atomic():
                        run(obj, form.cleaned_data["comment"])
                    done += 1
                except ServiceError as exc:
                    admin_obj.message_user(request, f"{obj}: {_error_text(exc)}", messages.ERROR)
            if done:
                admin_obj.message_user(request, f"{title}: {done} done.", messages.SUCCESS)
            return None
    else:
        form = CommentForm()
    context = {**admin_obj.admin_site.each_context(request), "title": title, "objects": list(queryset),
               "form": form, "action": action, "opts": admin_obj.model._meta,
               "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
    return TemplateResponse(request, "admin/governance/comment_action.html", context)


@admin.register(ModelVersion)
class ModelVersionAdmin(ServiceBackedAdmin):
    form = ModelVersionForm
    list_display = ("model", "label", "status", "framework", "created_by", "created_at")
    list_filter = ("status", "model__risk_tier")
    search_fields = ("label", "model__name")
    actions = ["submit_for_approval", "deprecate", "retire"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)

        class RequestBound(form_class):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **inner: Any) -> None:
                super().__init__(*args, request=request, **inner)

        return RequestBound

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
            saved = services.model_version_update_card(version=ModelVersion.objects.get(pk=obj.pk), by=request.user,
                                                       **card)
        else:
            saved = services.model_version_register(
                model=data["model"], by=request.user, label=data["label"], artifact_uri=data["artifact_uri"],
                manifest=data["manifest"], framework=data.get("framework", ""),
                training_metrics=data.get("training_metrics") or {},
                **{name: data.get(name, "") for name in MODEL_CARD_FIELDS})
        self.adopt(obj, saved)

    @admin.action(description="Submit selected drafts for approval")
    def submit_for_approval(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return _comment_action(request, self, queryset, title="Submit for approval", action="submit_for_approval",
                               run=lambda version, comment: services.model_version_submit(
                                   version=version, by=request.user, comment=comment))

    @admin.action(description="Deprecate selected versions")
    def deprecate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return _comment_action(request, self, queryset, title="Deprecate", action="deprecate",
                               run=lambda version, comment: services.model_version_deprecate(
                                   version=version, by=request.user, comment=comment))

    @admin.action(description="Retire selected versions")
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
        return _comment_action(request, self, queryset, title="Retire", action="retire",
                               run=lambda version, comment: services.model_version_retire(
                                   version=version, by=request.user, comment=comment))


# --- Approvals -------------------------------------------------------------------------------------

class DecisionInline(admin.TabularInline):
    model = ApprovalDecision
    extra = 0
    can_delete = False
    fields = ("approver", "decision", "comment", "approver_roles", "decided_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DecideForm(forms.Form):
    decision = forms.ChoiceField(choices=Decision.choices, widget=forms.RadioSelect)
    comment = forms.CharField(widget=forms.Textarea({"rows": 4, "cols": 80}), required=True,
                              help_text="Required. Recorded in the ledger with your decision.")


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ServiceBackedAdmin):
    list_display = ("id", "version", "status", "submitted_by", "submitted_at", "expires_at")
    list_filter = ("status",)
    search_fields = ("version__label", "version__model__name")
    inlines = [DecisionInline]
    actions = ["approve_selected", "reject_selected", "withdraw_selected"]
    readonly_fields = ("version", "submitted_by", "submitted_at", "comment", "status", "policy_snapshot",
                       "expires_at", "closed_at", "closing_comment")
    fields = readonly_fields
    change_list_template = "admin/governance/approvalrequest_changelist.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalRequest]:
        return selectors.approval_request_list(user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # requests are made from a version (action "Submit for approval")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # decisions are made in the queue or with the actions, never by editing

    def get_urls(self) -> list[Any]:
        custom = [
            path("queue/", self.admin_site.admin_view(self.queue_view), name="governance_approvalrequest_queue"),
            path("<rowid:request_id>/decide/", self.admin_site.admin_view(self.decide_view),
                 name="governance_approvalrequest_decide"),
        ]
        return custom + super().get_urls()

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        """Pending requests the user may decide now: excludes their own and those they already decided."""
        if not request.user.has_perm("governance.add_approvaldecision"):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "title": "My approval queue",
                   "queue": selectors.approval_queue(user=request.user), "opts": self.model._meta}
        return TemplateResponse(request, "admin/governance/approval_queue.html", context)

    def decide_view(self, request: HttpRequest, request_id: int) -> HttpResponse:
        approval = selectors.approval_request_list(user=request.user).filter(pk=request_id).first()
        if approval is None:
            raise Http404("No such approval request.")
        if not can_decide(request.user, approval.version.model):
            raise PermissionDenied
        initial = {"decision": request.GET.get("decision")} if request.GET.get("decision") in Decision.values else {}
        form = DecideForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                services.approval_decide(request=approval, by=request.user, decision=form.cleaned_data["decision"],
                                         comment=form.cleaned_data["comment"])
            except ServiceError as exc:
                form.add_error(None, _error_text(exc))
            else:
                self.message_user(request, f"Decision recorded on {approval}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:governance_approvalrequest_queue"))
        approval.refresh_from_db()
        context = {**self.admin_site.each_context(request), "title": f"Decide {approval}", "approval": approval,
                   "form": form, "opts": self.model._meta,
                   "progress": services.quorum_state(approval.decisions.all(), approval.policy_snapshot),
                   "decisions": approval.decisions.select_related("approver")}
        return TemplateResponse(request, "admin/governance/decide.html", context)

    def _decide(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest], decision: str,
                title: str, action: str) -> HttpResponse | None:
        return _comment_action(request, self, queryset, title=title, action=action,
                               run=lambda approval, comment: services.approval_decide(
                                   request=approval, by=request.user, decision=decision, comment=comment))

    @admin.action(description="Approve selected requests…")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> HttpResponse | None:
        return self._decide(request, queryset, Decision.APPROVE, "Approve", "approve_selected")

    @admin.action(description="Reject selected requests…")
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> HttpResponse | None:
        return self._decide(request, queryset, Decision.REJECT, "Reject", "reject_selected")

    @admin.action(description="Withdraw selected requests…")
    def withdraw_selected(self, request: HttpRequest, queryset: QuerySet[ApprovalRequest]) -> HttpResponse | None:
        return _comment_action(request, self, queryset, title="Withdraw", action="withdraw_selected",
                               run=lambda approval, comment: services.approval_withdraw(
                                   request=approval, by=request.user, comment=comment))


@admin.register(ApprovalDecision)
class ApprovalDecisionAdmin(ServiceBackedAdmin):
    list_display = ("request", "approver", "decision", "decided_at")
    list_filter = ("decision",)
    readonly_fields = ("request", "approver", "decision", "comment", "approver_roles", "decided_at")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalDecision]:
        return ApprovalDecision.objects.select_related("request__version__model", "approver").filter(
            request__version__model__in=_visible_models(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApprovalPolicyForm(forms.ModelForm):
    required_roles = forms.MultipleChoiceField(choices=[(role, role) for role in ROLE_NAMES], required=False,
                                               widget=forms.CheckboxSelectMultiple)
    required_card_fields = forms.MultipleChoiceField(choices=[(name, name) for name in MODEL_CARD_FIELDS],
                                                     required=False, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApprovalPolicy
        fields = ("model", "risk_tier", "quorum", "required_roles", "fairness_audit_max_age_days",
                  "required_card_fields", "expiry_hours")


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(ServiceBackedAdmin):
    form = ApprovalPolicyForm
    list_display = ("__str__", "quorum", "required_roles", "fairness_audit_max_age_days", "expiry_hours")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("model", "risk_tier") if obj else ()

    def save_model(self, request: HttpRequest, obj: ApprovalPolicy, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved = services.approval_policy_set(
            by=request.user, model=obj.model if change else data.get("model"),
            risk_tier=obj.risk_tier if change else (data.get("risk_tier") or None),
            quorum=data["quorum"], required_roles=list(data["required_roles"]),
            fairness_audit_max_age_days=data["fairness_audit_max_age_days"],
            required_card_fields=list(data["required_card_fields"]), expiry_hours=data["expiry_hours"])
        self.adopt(obj, saved)


# --- Environments and deployments -----------------------------------------------------------------

@admin.register(Environment)
class EnvironmentAdmin(ServiceBackedAdmin):
    list_display = ("name", "is_production", "description")
    fields = ("name", "is_production", "description")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return self.fields if obj else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Environment, form: Any, change: bool) -> None:
        self.adopt(obj, services.environment_create(by=request.user, name=obj.name, is_production=obj.is_production,
                                                    description=obj.description))


class DeploymentForm(forms.ModelForm):
    class Meta:
        model = Deployment
        fields = ("version", "environment", "comment")

    def __init__(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if request is not None:
            self.fields["version"].queryset = selectors.model_version_list(  # type: ignore[attr-defined]
                user=request.user).select_related("model")


@admin.register(Deployment)
class DeploymentAdmin(ServiceBackedAdmin):
    form = DeploymentForm
    list_display = ("id", "model", "version", "environment", "is_active", "is_rollback", "deployed_by", "deployed_at")
    list_filter = ("environment", "is_active", "is_rollback")
    actions = ["roll_back"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)

        class RequestBound(form_class):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **inner: Any) -> None:
                super().__init__(*args, request=request, **inner)

        return RequestBound

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
        self.adopt(obj, services.deployment_record(version=data["version"], environment=data["environment"],
                                                   by=request.user, comment=data.get("comment", "")))

    @admin.action(description="Roll back selected deployments…")
    def roll_back(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> HttpResponse | None:
        return _comment_action(request, self, queryset, title="Roll back", action="roll_back",
                               run=lambda deployment, comment: services.deployment_rollback(
                                   deployment=deployment, by=request.user, comment=comment))


# --- Service accounts and tokens --------------------------------------------------------------------

class ServiceAccountForm(forms.ModelForm):
    role = forms.ChoiceField(choices=[(role, role) for role in ROLE_NAMES])
    models = forms.ModelMultipleChoiceField(queryset=RegisteredModel.objects.all(), required=False)
    scope = forms.ChoiceField(choices=TokenScope.choices, initial=TokenScope.WRITE)

    class Meta:
        model = ServiceAccount
        fields = ("name", "description")


def _token_page(admin_obj: Any, request: HttpRequest, account: ServiceAccount, token: str) -> HttpResponse:
    # Rendered directly (never through messages, which may be stored in a cookie): shown once.
    context = {**admin_obj.admin_site.each_context(request), "title": f"Token for {account.name}",
               "account": account, "token": token, "opts": admin_obj.model._meta}
    response = TemplateResponse(request, "admin/governance/token_once.html", context)
    response["Cache-Control"] = "no-store"
    return response


@admin.register(ServiceAccount)
class ServiceAccountAdmin(ServiceBackedAdmin):
    form = ServiceAccountForm
    list_display = ("name", "user", "created_by", "created_at")
    actions = ["issue_token"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["name", "description", "role", "models", "scope"] if obj is None else [
            "name", "user", "description", "created_by", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj) if obj else []

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["fields"] = []
        return super().get_form(request, obj, change=change, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ServiceAccount, form: Any, change: bool) -> None:
        data = form.cleaned_data
        account, token = services.service_account_create(
            by=request.user, name=data["name"], role=data["role"], models=list(data["models"]),
            description=data.get("description", ""), scope=data["scope"])
        self.adopt(obj, account)
        obj._new_token = token  # type: ignore[attr-defined]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None  # the service wrote everything

    def response_add(self, request: HttpRequest, obj: ServiceAccount, post_url_continue: str | None = None,
                     ) -> HttpResponse:
        token = getattr(obj, "_new_token", None)
        if token:
            return _token_page(self, request, obj, token)
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description="Issue a new write token for the selected account")
    def issue_token(self, request: HttpRequest, queryset: QuerySet[ServiceAccount]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one account.", messages.ERROR)
            return None
        account = queryset.get()
        try:
            with transaction.atomic():
                _, token = services.service_token_create(account=account, by=request.user, scope=TokenScope.WRITE)
        except ServiceError as exc:
            self.message_user(request, _error_text(exc), messages.ERROR)
            return None
        return _token_page(self, request, account, token)


@admin.register(ServiceToken)
class ServiceTokenAdmin(ServiceBackedAdmin):
    list_display = ("prefix", "account", "scope", "created_at", "expires_at", "revoked_at")
    list_filter = ("scope",)
    fields = ("account", "prefix", "scope", "restricted_to", "created_at", "expires_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued from the service account (shown once)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected tokens…", permissions=["view"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServiceToken]) -> HttpResponse | None:
        return _comment_action(request, self, queryset, title="Revoke tokens", action="revoke",
                               run=lambda token, comment: services.service_token_revoke(
                                   token=token, by=request.user, comment=comment))



# --- Accounts: every change goes through governance.accounts, which records it --------------------

class _RecordedPasswordChangeForm(AdminPasswordChangeForm):
    """The admin's set-password form, saved through `accounts.user_password_set`."""

    def save(self, commit: bool = True) -> Any:
        password = self.cleaned_data["password1"] if self.cleaned_data.get("set_usable_password", True) else None
        # The admin view runs inside ActorMiddleware's request: the signed-in admin acts.
        return accounts.user_password_set(user=self.user, by=current_actor(), password=password)


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class AccountAdmin(DjangoUserAdmin):
    """Django's user admin, writing through the account services (one entry per access change)."""

    change_password_form = _RecordedPasswordChangeForm

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        accounts.user_save(user=obj, by=request.user)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        data = form.cleaned_data
        accounts.user_access_set(user=form.instance, by=request.user,
                                 groups=data["groups"] if "groups" in data else None,
                                 permissions=data["user_permissions"] if "user_permissions" in data else None)
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        accounts.user_delete(user=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for user in queryset:
                accounts.user_delete(user=user, by=request.user)

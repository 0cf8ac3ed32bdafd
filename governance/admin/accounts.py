"""Admin of service accounts, their tokens, and users (every change through governance.accounts)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from core.actor import current_actor
from core.errors import ServiceError
from governance import accounts, grants
from governance.admin.base import RefusalShownAdmin, ServiceBackedAdmin, comment_action, error_text
from governance.models import (
    PrivilegeGrantRequest,
    RegisteredModel,
    ServiceAccount,
    ServiceToken,
    TokenScope,
)
from governance.registry.services.access import service_account_create, service_token_create, service_token_revoke
from governance.roles import ROLE_NAMES
from governance.usernames import username_check


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
        account, token = service_account_create(
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
                _, token = service_token_create(account=account, by=request.user, scope=TokenScope.WRITE)
        except ServiceError as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
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
        return comment_action(request, self, queryset, title="Revoke tokens", action="revoke",
                               run=lambda token, comment: service_token_revoke(
                                   token=token, by=request.user, comment=comment))



# --- Accounts: every change goes through governance.accounts, which records it --------------------

def _checked_username(form: Any, username: str) -> str:
    """The username rule of `governance.usernames`, shown on the admin's username field."""
    try:
        username_check(username, exclude_pk=form.instance.pk)
    except ServiceError as exc:
        raise forms.ValidationError(error_text(exc), code=exc.code)
    return username


class _AccountCreationForm(AdminUserCreationForm):
    def clean_username(self) -> str:
        return _checked_username(self, super().clean_username())


class _AccountChangeForm(UserChangeForm):
    def clean_username(self) -> str:
        return _checked_username(self, self.cleaned_data["username"])


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
class AccountAdmin(RefusalShownAdmin, DjangoUserAdmin):
    """Django's user admin, writing through the account services (one entry per access change).

    The services refuse a change of one's own access, a decision role or admin granted without an
    approved grant request, and roles that exclude each other; `is_superuser` is read-only here
    (superusers are made on the command line)."""

    change_password_form = _RecordedPasswordChangeForm
    add_form = _AccountCreationForm
    form = _AccountChangeForm

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*super().get_readonly_fields(request, obj), "is_superuser")

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        try:
            return super().user_change_password(request, id, form_url)
        except ServiceError as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

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


# --- Groups: their permissions through the account services ---------------------------------------

if admin.site.is_registered(Group):
    admin.site.unregister(Group)


@admin.register(Group)
class RecordedGroupAdmin(RefusalShownAdmin, DjangoGroupAdmin):
    """Django's group admin, saving permissions through `accounts.group_permissions_set`: never for a
    group one belongs to, never a decision or admin permission (those come with roles, by request)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        accounts.group_save(group=obj, by=request.user)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if "permissions" in form.cleaned_data:
            accounts.group_permissions_set(group=form.instance, permissions=form.cleaned_data["permissions"],
                                           by=request.user)
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # role and team groups are referenced by name and by teams


# --- Privilege grant requests: one admin asks, another decides ------------------------------------

class PrivilegeGrantRequestForm(forms.ModelForm):
    class Meta:
        model = PrivilegeGrantRequest
        fields = ("grantee", "kind", "role", "risk_tier", "model", "reason")


@admin.register(PrivilegeGrantRequest)
class PrivilegeGrantRequestAdmin(ServiceBackedAdmin):
    form = PrivilegeGrantRequestForm
    list_display = ("id", "grantee", "kind", "role", "risk_tier", "model", "status", "requested_by", "decided_by",
                    "requested_at")
    list_filter = ("status", "kind")
    actions = ["approve", "reject"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["grantee", "kind", "role", "risk_tier", "model", "reason"]
        return ["grantee", "kind", "role", "risk_tier", "model", "reason", "status", "requested_by",
                "requested_at", "decided_by", "decided_at", "decision_comment"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj) if obj else []

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["fields"] = []
        return super().get_form(request, obj, change=change, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: PrivilegeGrantRequest, form: Any, change: bool) -> None:
        data = form.cleaned_data
        self.adopt(obj, grants.privilege_grant_request(
            by=request.user, grantee=data["grantee"], kind=data["kind"], role=data.get("role", ""),
            risk_tier=data.get("risk_tier", ""), model=data.get("model"), reason=data.get("reason", "")))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None  # the service wrote everything

    @admin.action(description="Approve (and grant) selected requests…", permissions=["view"])
    def approve(self, request: HttpRequest, queryset: QuerySet[PrivilegeGrantRequest]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Approve privilege grants", action="approve",
                               run=lambda grant, comment: grants.privilege_grant_decide(
                                   grant=grant, by=request.user, decision="approve", comment=comment))

    @admin.action(description="Reject selected requests…", permissions=["view"])
    def reject(self, request: HttpRequest, queryset: QuerySet[PrivilegeGrantRequest]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Reject privilege grants", action="reject",
                               run=lambda grant, comment: grants.privilege_grant_decide(
                                   grant=grant, by=request.user, decision="reject", comment=comment))

"""What every governance admin shares: the service-backed base, the comment-first action, error text.

Every write goes through `governance.registry.services`, so the admin enforces the same rules as the
API (separation of duties, quorum, evidence, production gate). A refused write shows its
error code and message and leaves nothing behind (the admin view's transaction rolls back).
History pages read the ledger and verify each entry against the latest signed checkpoint.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from core.errors import ServiceError, error_text
from governance import selectors
from governance.history import subject_history
from governance.models import (
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    Deployment,
    ModelVersion,
    RegisteredModel,
)
from governance.permissions import can_view_model


def model_of(obj: Any) -> RegisteredModel | None:
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


class RefusalShownAdmin(admin.ModelAdmin):
    """A service's refusal on the change, delete or list page is shown with its code, never a 500;
    the admin view's transaction has rolled back, so no row and no ledger entry but a refusal's.
    ServiceBackedAdmin builds on it; admins whose base class comes from another app use it alone."""

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, object_id: str,
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as exc:
            self.message_user(request, error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)
        except ServiceError as exc:  # a bulk action (delete selected) refused
            self.message_user(request, error_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class ServiceBackedAdmin(RefusalShownAdmin):
    """Writes go through services; a refused write is shown as an error, never a 500.
    Nothing governed is deleted from the admin: versions are retired, tokens revoked."""

    history_template = "admin/governance/ledger_history.html"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not super().has_view_permission(request, obj):
            return False
        model = model_of(obj) if obj is not None else None
        return model is None or can_view_model(request.user, model)

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


class RequestFormAdmin(ServiceBackedAdmin):
    """A service-backed admin whose form takes the request (it checks what the signed-in user may choose)."""

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, change=change, **kwargs)

        class RequestBound(form_class):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **inner: Any) -> None:
                super().__init__(*args, request=request, **inner)

        return RequestBound


def visible_models(request: HttpRequest) -> QuerySet[RegisteredModel]:
    return selectors.registered_model_list(user=request.user)


class CommentForm(forms.Form):
    # Not required here: whether an action needs a reason is the service's rule (reason_required),
    # the same on every surface; the admin passes the comment through and shows the refusal.
    comment = forms.CharField(widget=forms.Textarea({"rows": 4, "cols": 80}), required=False,
                              help_text="Recorded in the ledger with your decision.")


def comment_action(request: HttpRequest, admin_obj: Any, queryset: QuerySet[Any], *, title: str,
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
                    admin_obj.message_user(request, f"{obj}: {error_text(exc)}", messages.ERROR)
            if done:
                admin_obj.message_user(request, f"{title}: {done} done.", messages.SUCCESS)
            return None
    else:
        form = CommentForm()
    context = {**admin_obj.admin_site.each_context(request), "title": title, "objects": list(queryset),
               "form": form, "action": action, "opts": admin_obj.model._meta,
               "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
    return TemplateResponse(request, "admin/governance/comment_action.html", context)



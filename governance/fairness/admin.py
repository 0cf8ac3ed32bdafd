"""Admin: audit specs (schedule link editable, "Run now"), runs and prediction batches (read-only).

Schedules themselves are django-celery-beat's Periodic tasks (registered by that package), where
risk officers change intervals or crontabs. Every write here goes through `services`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from core.admin import ReadOnlyModelAdmin
from core.errors import ServiceError, error_text
from governance import selectors as governance_selectors
from governance.admin.base import comment_action
from governance.fairness import selectors
from governance.fairness.models import AuditRun, AuditSpec, PredictionBatch, SealedFile
from governance.fairness.services.evidence import audit_spec_confirm, audit_waive
from governance.fairness.services.runs import audit_request
from governance.fairness.services.specs import audit_spec_schedule_set
from governance.fairness.services.vault import sealed_file_erase, sealed_file_erase_rows, sealed_file_retention_set


@admin.register(AuditSpec)
class AuditSpecAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "model", "target", "version", "periodic_task", "created_at")
    list_filter = ("target",)
    search_fields = ("name", "model__name")
    actions = ["run_now", "confirm_selected"]
    fields = ("name", "model", "target", "version", "dataset_version", "dataset_file", "dataset_sha256", "y_true",
              "y_pred", "score", "threshold", "sensitive", "pos_label", "metrics", "thresholds", "min_group_size",
              "include_small_groups", "reference_group", "bootstrap", "seed", "window_days", "periodic_task",
              "created_by", "created_at", "confirmed_by", "confirmed_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Specs are created through the API (they carry an uploaded file); only the schedule link is edited here.
        return [name for name in self.fields if name != "periodic_task"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditSpec]:
        return selectors.audit_spec_list(user=request.user)

    def save_model(self, request: HttpRequest, obj: AuditSpec, form: Any, change: bool) -> None:
        if "periodic_task" in form.changed_data:
            audit_spec_schedule_set(by=request.user, spec=obj, periodic_task=obj.periodic_task)

    @admin.action(description="Run now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[AuditSpec]) -> None:
        for spec in queryset[:20]:
            try:
                run = audit_request(spec=spec, by=request.user)
            except ServiceError as error:
                self.message_user(request, f"{spec}: {error.message} [{error.code}]", messages.ERROR)
            else:
                self.message_user(request, f"Fairness audit #{run.pk} of {spec} queued.", messages.INFO)


    @admin.action(description="Confirm selected specs as evaluation evidence (not their author)")
    def confirm_selected(self, request: HttpRequest, queryset: QuerySet[AuditSpec]) -> None:
        for spec in queryset[:20]:
            try:
                with transaction.atomic():
                    audit_spec_confirm(by=request.user, spec=spec)
            except ServiceError as error:
                self.message_user(request, f"{spec}: {error_text(error)}", messages.ERROR)
            else:
                self.message_user(request, f"{spec} confirmed.", messages.SUCCESS)


@admin.register(AuditRun)
class AuditRunAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "spec", "model_version", "trigger", "status", "progress", "passed", "requested_by_label",
                    "finished_at", "error_code")
    list_filter = ("status", "passed", "trigger")
    search_fields = ("spec__model__name", "input_sha256", "result_sha256")
    readonly_fields = [field.name for field in AuditRun._meta.fields]

    actions = ["waive_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditRun]:
        return selectors.audit_run_list(user=request.user)

    @admin.action(description="Waive selected failing audits (risk officer, with a reason)…")
    def waive_selected(self, request: HttpRequest, queryset: QuerySet[AuditRun]) -> HttpResponse | None:
        return comment_action(request, self, queryset, title="Waive failing audit", action="waive_selected",
                              run=lambda run, reason: audit_waive(by=request.user, run=run, reason=reason))


@admin.register(PredictionBatch)
class PredictionBatchAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "model", "served_version", "file_format", "rows", "size_bytes", "sha256", "uploaded_at")
    search_fields = ("model__name", "sha256")
    readonly_fields = [field.name for field in PredictionBatch._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PredictionBatch]:
        return PredictionBatch.objects.select_related("model", "served_version").filter(
            model__in=governance_selectors.registered_model_list(user=request.user))


# --- Sealed data files (issue 18): retention overrides and erasure requests ---------------------
# The same services as the API; they refuse anyone but a risk officer of the model (403
# `data_officer_required`, recorded as `.refused`), which the admin shows with its code.

class RetentionForm(forms.Form):
    retention_until = forms.DateTimeField(help_text="New end of retention (YYYY-MM-DD HH:MM)")
    reason = forms.CharField(widget=forms.Textarea({"rows": 3, "cols": 80}), required=False,
                             help_text="Why the retention changes; recorded in the ledger.")


class ErasureForm(forms.Form):
    request = forms.CharField(max_length=200, required=False,
                              help_text="The erasure request's reference (no personal data).")
    column = forms.CharField(max_length=200, required=False,
                             help_text="With a value: erase only the rows whose column holds it (a person's rows).")
    value = forms.CharField(max_length=1000, required=False, help_text="The person's identifier; never recorded.")


def _form_action(request: HttpRequest, admin_obj: Any, queryset: QuerySet[Any], *, title: str, action: str,
                 form_class: type[forms.Form], run: Any) -> HttpResponse | None:
    """An admin action that first asks for a small form (intermediate page), then runs a service per row."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        done = 0
        for obj in queryset:
            try:
                run(obj, form.cleaned_data)
                done += 1
            except ServiceError as exc:
                admin_obj.message_user(request, f"{obj}: {error_text(exc)}", messages.ERROR)
        if done:
            admin_obj.message_user(request, f"{title}: {done} done.", messages.SUCCESS)
        return None
    context = {**admin_obj.admin_site.each_context(request), "title": title, "objects": list(queryset),
               "form": form, "action": action, "opts": admin_obj.model._meta,
               "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
    return TemplateResponse(request, "admin/governance/comment_action.html", context)


def _erase(by: Any, record: SealedFile, data: dict[str, Any]) -> Any:
    if data["column"] or data["value"]:
        return sealed_file_erase_rows(by=by, record=record, column=data["column"], value=data["value"],
                                      request_ref=data["request"])
    return sealed_file_erase(by=by, record=record, reason="erasure_request", request_ref=data["request"])


@admin.register(SealedFile)
class SealedFileAdmin(ReadOnlyModelAdmin):
    list_display = ("file_id", "kind", "model", "file_format", "size_bytes", "retention_until", "retention_set_by",
                    "erased_at", "erasure_reason")
    list_filter = ("kind", "erasure_reason")
    search_fields = ("file_id", "model__name", "content_sha256", "source_sha256")
    readonly_fields = [field.name for field in SealedFile._meta.fields if field.name != "wrapped_key"]
    exclude = ("wrapped_key",)
    actions = ["set_retention", "erase_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SealedFile]:
        return selectors.sealed_file_list(user=request.user)

    @admin.action(description="Override the retention of selected files (risk officer, with a reason)…")
    def set_retention(self, request: HttpRequest, queryset: QuerySet[SealedFile]) -> HttpResponse | None:
        return _form_action(request, self, queryset, title="Override retention", action="set_retention",
                            form_class=RetentionForm,
                            run=lambda record, data: sealed_file_retention_set(
                                by=request.user, record=record, retention_until=data["retention_until"],
                                reason=data["reason"]))

    @admin.action(description="Erase selected files, or a person's rows in them (risk officer)…")
    def erase_selected(self, request: HttpRequest, queryset: QuerySet[SealedFile]) -> HttpResponse | None:
        return _form_action(request, self, queryset, title="Erasure request", action="erase_selected",
                            form_class=ErasureForm, run=lambda record, data: _erase(request.user, record, data))

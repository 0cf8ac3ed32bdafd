"""Admin: bundle exports and generated reports (read-only, with downloads), report schedules (edited
through services), and the "Export bundle" / "Generate report" actions on models and versions.

The actions are added to the governance app's model admins from here, so that the reports app
owns its own behaviour; every write goes through `governance.reports.services`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.cache import patch_cache_control
from django.utils.html import format_html

from core.admin import ReadOnlyModelAdmin
from core.errors import ServiceError
from governance.fairness.models import AuditRun
from governance.models import ModelVersion, RegisteredModel
from governance.reports import selectors, services
from governance.reports.models import BundleExport, GeneratedReport, ReportSchedule

MAX_REPORTS_PER_ACTION = 5


@admin.register(BundleExport)
class BundleExportAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "model_name", "version_label", "status", "progress", "actor", "created_at", "size_bytes",
                    "entry_count", "ledger_seq", "download")
    list_filter = ("status",)
    search_fields = ("model_name", "actor", "manifest_sha256")
    readonly_fields = [field.name for field in BundleExport._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BundleExport]:
        return selectors.bundle_export_list(user=request.user)

    @admin.display(description="Download")
    def download(self, export: BundleExport) -> str:
        if export.status != BundleExport.Status.DONE:
            return "—"
        return format_html('<a href="{}">zip</a>', reverse("bundle-download", args=[export.pk]))


@admin.register(GeneratedReport)
class GeneratedReportAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "model_name", "version_label", "created_at", "actor", "schedule", "ledger_seq", "files")
    search_fields = ("model_name", "version_label", "actor")
    readonly_fields = ("version", "model_name", "version_label", "schedule", "actor", "digests", "ledger_seq",
                       "created_at", "files")
    exclude = ("json_file", "html_file", "pdf_file")

    def get_queryset(self, request: HttpRequest) -> QuerySet[GeneratedReport]:
        visible = selectors.governance_selectors.registered_model_list(user=request.user).values("pk")
        return super().get_queryset(request).filter(version__model__in=visible).select_related("schedule")

    @admin.display(description="Files")
    def files(self, report: GeneratedReport) -> str:
        links = [(fmt, reverse("admin:reports_generatedreport_file", args=[report.pk, fmt]))
                 for fmt in ("pdf", "html", "json")]
        return format_html(" · ".join(f'<a href="{{}}">{fmt}</a>' for fmt, _ in links), *[url for _, url in links])

    def get_urls(self) -> list[Any]:
        return [path("<rowid:report_id>/file/<str:fmt>/", self.admin_site.admin_view(self.file_view),
                     name="reports_generatedreport_file"), *super().get_urls()]

    def file_view(self, request: HttpRequest, report_id: int, fmt: str) -> FileResponse:
        field = {"pdf": "pdf_file", "html": "html_file", "json": "json_file"}.get(fmt)
        report = self.get_queryset(request).filter(pk=report_id).first()
        if field is None or report is None or not self.has_view_permission(request, report):
            raise Http404("No such report file.")
        content_type = {"pdf": "application/pdf", "html": "text/html", "json": "application/json"}[fmt]
        name = f"report-{report.model_name}-{report.version_label}-{report.pk}.{fmt}"
        response = FileResponse(getattr(report, field).open("rb"), content_type=content_type,
                                as_attachment=fmt != "pdf", filename=name)
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        patch_cache_control(response, no_store=True, private=True)  # group results of special categories
        return response


@admin.register(ReportSchedule)
class ReportScheduleAdmin(admin.ModelAdmin):
    list_display = ("model", "kind", "cadence", "version_label", "enabled", "last_run_at", "periodic_task")
    list_filter = ("cadence", "kind", "enabled")
    fields = ("model", "version_label", "kind", "cadence", "enabled")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportSchedule]:
        visible = selectors.governance_selectors.registered_model_list(user=request.user).values("pk")
        return super().get_queryset(request).filter(model__in=visible).select_related("model", "periodic_task")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "model":
            kwargs["queryset"] = selectors.governance_selectors.registered_model_list(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ReportSchedule, form: Any, change: bool) -> None:
        services.report_schedule_save(schedule=obj, by=request.user)

    def delete_model(self, request: HttpRequest, obj: ReportSchedule) -> None:
        services.report_schedule_delete(schedule=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ReportSchedule]) -> None:
        for schedule in queryset:
            services.report_schedule_delete(schedule=schedule, by=request.user)


# --- Actions on the governance app's admins -------------------------------------------------

@admin.action(description="Export audit bundle (zip, verifiable offline)")
def export_bundle(model_admin: Any, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> HttpResponse | None:
    queued = []
    for model in queryset:
        try:
            queued.append(services.bundle_export_queue(by=request.user, model_name=model.name))
        except ServiceError as exc:
            model_admin.message_user(request, f"{model.name}: {exc.message}", messages.ERROR)
    if queued:
        url = reverse("admin:reports_bundleexport_changelist")
        model_admin.message_user(request, format_html(
            "Queued {} bundle export(s); follow them under <a href=\"{}\">Bundle exports</a>.", len(queued), url),
            messages.SUCCESS)
    return None


@admin.action(description="Generate report (PDF, HTML, JSON)")
def generate_report(model_admin: Any, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> HttpResponse | None:
    if not selectors.can_export(request.user):
        model_admin.message_user(request, "Generating reports needs the auditor role.", messages.ERROR)
        return None
    versions = list(queryset.select_related("model")[: MAX_REPORTS_PER_ACTION + 1])
    if len(versions) > MAX_REPORTS_PER_ACTION:
        model_admin.message_user(request, f"Select at most {MAX_REPORTS_PER_ACTION} versions.", messages.ERROR)
        return None
    for version in versions:
        try:
            report = services.report_generate(version=version, by=request.user)
        except ServiceError as exc:
            model_admin.message_user(request, f"{version}: {exc.message}", messages.ERROR)
            continue
        url = reverse("admin:reports_generatedreport_file", args=[report.pk, "pdf"])
        model_admin.message_user(request, format_html("Report for {} generated: <a href=\"{}\">PDF</a>.", version, url),
                                 messages.SUCCESS)
    return None


@admin.action(description="Generate audit report (PDF, HTML, JSON)")
def generate_audit_report(model_admin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
    if not selectors.can_export(request.user):
        model_admin.message_user(request, "Generating reports needs the auditor role.", messages.ERROR)
        return None
    runs = list(queryset.select_related("model_version__model")[: MAX_REPORTS_PER_ACTION + 1])
    if len(runs) > MAX_REPORTS_PER_ACTION:
        model_admin.message_user(request, f"Select at most {MAX_REPORTS_PER_ACTION} audits.", messages.ERROR)
        return None
    for run in runs:
        if run.model_version is None or not run.result:
            model_admin.message_user(request, f"Audit #{run.pk} has no result for a model version.", messages.ERROR)
            continue
        report = services.report_generate(version=run.model_version, by=request.user, audit=run)
        url = reverse("admin:reports_generatedreport_file", args=[report.pk, "pdf"])
        model_admin.message_user(request, format_html("Report for audit #{} generated: <a href=\"{}\">PDF</a>.",
                                                      run.pk, url), messages.SUCCESS)
    return None


def _add_action(model: type[Any], action: Any) -> None:
    model_admin = admin.site._registry.get(model)
    if model_admin is None:
        return
    actions = list(model_admin.actions or [])
    if action not in actions:
        model_admin.actions = [*actions, action]


_add_action(RegisteredModel, export_bundle)
_add_action(ModelVersion, generate_report)
_add_action(AuditRun, generate_audit_report)

"""The report document in its three formats, and the report and audit files of a bundle.

JSON; HTML from templates/reports/report.html; PDF from the same template with WeasyPrint. The
content, charts included, comes from governance.reports.sections.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string

from governance.fairness.models import AuditRun
from governance.models import ModelVersion
from governance.reports.sections import audit_view, report_document


def audit_files(audits: list[AuditRun]) -> dict[str, bytes]:
    """audits/<id>.json for the bundle: the recorded result and its metadata, byte-stable."""
    files = {}
    for audit in audits:
        view = audit_view(audit)
        files[f"audit-{view['id']}.json"] = (json.dumps(view, sort_keys=True, indent=1, default=str) + "\n").encode()
    return files


def report_json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=False, default=str, ensure_ascii=False) + "\n").encode("utf-8")


def report_html(document: dict[str, Any], *, for_pdf: bool = False) -> str:
    return render_to_string("reports/report.html", {"doc": document, "for_pdf": for_pdf})


def report_pdf(document: dict[str, Any]) -> bytes:
    from weasyprint import HTML

    return HTML(string=report_html(document, for_pdf=True), base_url=str(settings.BASE_DIR)).write_pdf()


def report_files_for_version(version: ModelVersion, *, audits: list[AuditRun] | None = None,
                             primary_audit: AuditRun | None = None) -> dict[str, bytes]:
    """The report of a version (or, with `primary_audit`, of that audit of it) as JSON, HTML and PDF."""
    document = report_document(version, audits=audits, primary_audit=primary_audit)
    stem = f"report-{version.model.name}-{version.label}" + (f"-audit-{primary_audit.pk}" if primary_audit else "")
    return {f"{stem}.json": report_json(document), f"{stem}.html": report_html(document).encode("utf-8"),
            f"{stem}.pdf": report_pdf(document)}


def report_files(plan: Any, progress: Any = None) -> dict[str, bytes]:
    """The report of every version in the plan, as JSON, HTML and PDF (report/ in the bundle)."""
    files: dict[str, bytes] = {}
    for index, version in enumerate(plan.versions):
        if progress is not None:
            progress(index, len(plan.versions), version.label)
        files.update(report_files_for_version(version, audits=plan.audits))
    return files

"""Render and store the regulator report of a model version (or of one fairness audit of it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceError
from governance.reports import selectors, services


class Command(BaseCommand):
    help = "Generate the report (PDF, HTML, JSON) of a model version; it is stored and recorded in the ledger."

    def add_arguments(self, parser):
        parser.conflict_handler = parser._optionals.conflict_handler = "resolve"
        parser.add_argument("--model", required=True)
        parser.add_argument("--version", dest="version_label", default="", help="default: the newest version")
        parser.add_argument("--audit", type=int, help="id of a fairness audit of that version: a per-audit report")
        parser.add_argument("--out-dir", help="also copy the three files here")
        parser.add_argument("--user", help="username to record as the author (default: system:generate_report)")

    def handle(self, *args, model, version_label="", audit=None, out_dir=None, user=None, **options):
        actor: object = "system:generate_report"
        if user:
            actor = get_user_model().objects.filter(username=user, is_active=True).first()
            if actor is None:
                raise CommandError(f"no active user {user!r}")
        try:
            registered = selectors.model_for(name=model)
            versions = registered.versions.order_by("-created_at", "-pk")
            version = versions.filter(label=version_label).first() if version_label else versions.first()
            if version is None:
                raise CommandError(f"model {model!r} has no version {version_label or '(none at all)'}")
            audit_obj = None
            if audit is not None:
                audit_obj = next((item for item in selectors.fairness_audits_for([version]) if item.pk == audit), None)
                if audit_obj is None:
                    raise CommandError(f"no fairness audit {audit} of {model} {version.label}")
            report = services.report_generate(version=version, by=actor, audit=audit_obj)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        paths = [Path(settings.MEDIA_ROOT) / f.name for f in (report.pdf_file, report.html_file, report.json_file)]
        if out_dir:
            target = Path(out_dir)
            target.mkdir(parents=True, exist_ok=True)
            paths = [Path(shutil.copy(path, target / path.name)) for path in paths]
        self.stdout.write(f"report #{report.pk} of {model} {version.label} (ledger entry {report.ledger_seq}):\n"
                          + "\n".join(f"  {path}" for path in paths))

"""Export an audit bundle (zip) that a regulator verifies offline with the published verify.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceError
from governance.reports import selectors, services


class Command(BaseCommand):
    help = "Export the audit bundle of a model (or of explicit ledger subjects) to a zip file."

    def add_arguments(self, parser):
        # The interface uses --version for the model version; Django's own --version yields.
        parser.conflict_handler = parser._optionals.conflict_handler = "resolve"
        parser.add_argument("--model", help="model name")
        parser.add_argument("--version", dest="version_label", default="", help="model version label")
        parser.add_argument("--subject", action="append", default=[], metavar="TYPE:ID",
                            help="a ledger subject to include (repeatable), e.g. lineage.dataset:3")
        parser.add_argument("--out", required=True, help="where to write the zip")
        parser.add_argument("--user", help="username to record as the exporter (default: system:export_bundle)")

    def handle(self, *args, model=None, version_label="", subject=(), out, user=None, **options):
        actor: object = "system:export_bundle"
        if user:
            found = get_user_model().objects.filter(username=user, is_active=True).first()
            if found is None:
                raise CommandError(f"no active user {user!r}")
            actor = found
        try:
            subjects = [_parse_subject(item) for item in subject]
            if not subjects and not model:
                raise CommandError("give --model NAME or at least one --subject TYPE:ID")
            # The operator running manage.py has shell access already: no role check here.
            export = services.bundle_export_request(by=actor, subjects=subjects, model_name=model or "",
                                                    version_label=version_label, check_access=False)
            export = services.bundle_export_run(export_id=export.pk)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        source = Path(settings.MEDIA_ROOT) / export.file.name
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.stdout.write(
            f"bundle #{export.pk}: {target} ({export.size_bytes} bytes, {export.entry_count} ledger entries, "
            f"manifest sha256 {export.manifest_sha256}, recorded as ledger entry {export.ledger_seq})\n"
            f"verify it: {selectors.verify_command(str(target))}"
        )


def _parse_subject(text: str) -> tuple[str, str]:
    subject_type, sep, subject_id = text.partition(":")
    if not sep or not subject_type or not subject_id:
        raise CommandError(f"--subject must be TYPE:ID, not {text!r}")
    return subject_type, subject_id

"""`manage.py export_bundle`: writes a verifiable zip, stores it, and records the export in the ledger."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.ledger import ledger_append
from audit.models import LedgerEntry
from governance.reports.models import BundleExport
from tests.reports.bundle_helpers import run_verify

pytestmark = pytest.mark.django_db


def test_export_command_writes_a_verifiable_bundle_and_a_ledger_entry(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    for index in range(5):
        ledger_append(actor="system:test", action="test.changed", subject=("test.model", "m1"), payload={"i": index})
    before = LedgerEntry.objects.count()
    out = tmp_path / "out" / "bundle.zip"
    stdout = io.StringIO()
    call_command("export_bundle", "--subject", "test.model:m1", "--out", str(out), stdout=stdout)

    export = BundleExport.objects.get()
    assert export.status == BundleExport.Status.DONE and export.progress == 100
    stored = Path(settings.MEDIA_ROOT) / export.file.name
    assert stored.read_bytes() == out.read_bytes()
    with zipfile.ZipFile(out) as archive:
        manifest = archive.read("manifest.json")
    assert hashlib.sha256(manifest).hexdigest() == export.manifest_sha256
    assert export.entry_count == 5

    recorded = LedgerEntry.objects.filter(action="bundle.exported").get()
    assert LedgerEntry.objects.count() == before + 1
    assert recorded.seq == export.ledger_seq
    assert (recorded.subject_type, recorded.subject_id) == ("reports.bundleexport", str(export.pk))
    assert recorded.actor == "system:export_bundle"
    assert recorded.payload["manifest_sha256"] == export.manifest_sha256
    assert recorded.payload["subjects"] == [["test.model", "m1"]]
    assert str(export.ledger_seq) in stdout.getvalue()

    result = run_verify(tmp_path, out.read_bytes())
    assert result.returncode == 0, result.stdout


def test_export_command_refuses_a_malformed_subject_and_records_nothing(tmp_path):
    before = LedgerEntry.objects.count()
    with pytest.raises(CommandError, match="TYPE:ID"):
        call_command("export_bundle", "--subject", "no-colon", "--out", str(tmp_path / "b.zip"))
    with pytest.raises(CommandError, match="--model NAME or at least one --subject"):
        call_command("export_bundle", "--out", str(tmp_path / "b.zip"))
    assert LedgerEntry.objects.count() == before
    assert not BundleExport.objects.exists()


def test_a_failed_export_leaves_no_ledger_entry_and_no_file(tmp_path, settings, monkeypatch):
    from governance.reports import services

    settings.MEDIA_ROOT = tmp_path / "media"
    ledger_append(actor="system:test", action="test.changed", subject=("test.model", "m1"))

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "build_bundle", broken)
    export = services.bundle_export_request(by="system:test", subjects=[("test.model", "m1")])
    before = LedgerEntry.objects.count()
    with pytest.raises(RuntimeError):
        services.bundle_export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == BundleExport.Status.FAILED and export.error_code == "RuntimeError"
    assert LedgerEntry.objects.count() == before
    assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]


def test_running_a_done_export_again_changes_nothing(tmp_path, settings):
    from governance.reports import services

    settings.MEDIA_ROOT = tmp_path / "media"
    ledger_append(actor="system:test", action="test.changed", subject=("test.model", "m1"))
    export = services.bundle_export_request(by="system:test", subjects=[("test.model", "m1")])
    first = services.bundle_export_run(export_id=export.pk)
    count = LedgerEntry.objects.count()
    again = services.bundle_export_run(export_id=export.pk)
    assert again.manifest_sha256 == first.manifest_sha256 and again.file.name == first.file.name
    assert LedgerEntry.objects.count() == count

"""The reports demo: after the governance and lineage demos it stores a report, exports a bundle that
verifies and adds a quarterly schedule; a second run writes nothing."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest

from audit.models import LedgerEntry
from governance import demo as governance_demo
from governance.fairness import demo as fairness_demo
from governance.reports import demo
from governance.reports.models import BundleExport, GeneratedReport, ReportSchedule
from lineage import demo as lineage_demo
from tests.reports.bundle_helpers import run_verify

pytestmark = pytest.mark.django_db


def test_reports_demo_is_complete_verifiable_and_idempotent(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    governance_demo.seed(stdout=StringIO())
    lineage_demo.seed(stdout=StringIO())
    fairness_demo.seed(stdout=StringIO())
    out = StringIO()
    summary = demo.seed(stdout=out)
    assert "quarterly bundle schedule" in summary and "audit bundle" in summary
    assert ReportSchedule.objects.get().periodic_task is not None
    assert GeneratedReport.objects.count() == 1
    export = BundleExport.objects.get(status=BundleExport.Status.DONE)
    assert str(export.pk) in out.getvalue() and "verify.py" in out.getvalue()
    bundle = (Path(settings.MEDIA_ROOT) / export.file.name).read_bytes()
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout
    assert "attestation envelope(s)" in result.stdout
    import io
    import json
    import re
    import zipfile

    audits = int(re.search(r"(\d+) audit result\(s\)", result.stdout).group(1))
    assert audits == 6  # the fairness demo's runs of the model: versions 1.0.0 and 1.2.0, four weekly monitoring runs
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        report_json = next(name for name in archive.namelist() if name.startswith("report/") and "1.0.0" in name
                           and name.endswith(".json"))
        document = json.loads(archive.read(report_json))
    groups = next(section for section in document["sections"] if section["id"] == "groups")
    assert groups["content"]["tables"], "the report's group tables come from the recorded fairness audit"

    entries = LedgerEntry.objects.count()
    assert demo.seed(stdout=StringIO()) == "already seeded"
    assert LedgerEntry.objects.count() == entries

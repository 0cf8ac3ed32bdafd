"""The model-version report: 16 sections from recorded data, missing data said out loud, three formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from governance.reports import render, sections
from tests.reports.report_fixtures import fake_audit, german_credit_result

pytestmark = pytest.mark.django_db


@pytest.fixture
def audits(version):
    start = datetime(2026, 1, 15, tzinfo=UTC)
    return [fake_audit(index + 1, version, german_credit_result(seed=index, female_rate=0.45 + 0.08 * index,
                                                                 bootstrap=50), start + timedelta(days=30 * index))
            for index in range(3)]


def _section(document, key):
    return next(section for section in document["sections"] if section["id"] == key)


def test_report_has_the_sixteen_sections_in_order_each_naming_its_provisions(version, audits):
    document = sections.report_document(version, audits=audits)
    assert [section["number"] for section in document["sections"]] == list(range(1, 17))
    assert document["sections"][-1]["id"] == "processing"  # records of processing (issue 18)
    assert [section["id"] for section in document["sections"]] == [key for key, _, _ in sections.SECTIONS]
    for section in document["sections"]:
        assert section["provisions"], section["id"]
    provisions = " ".join(p for section in document["sections"] for p in section["provisions"])
    for needle in ("Art. 9", "Art. 10", "Art. 11", "Art. 12", "Art. 13", "Art. 14", "Art. 15", "Art. 19",
                   "Art. 72", "Annex IV", "SR 11-7", "LL144", "NIST AI RMF", "Art. 30(1)"):
        assert needle in provisions, needle


def test_report_content_comes_from_the_recorded_version_and_audit(version, audits):
    document = sections.report_document(version, audits=audits)
    identification = _section(document, "identification")["content"]
    assert identification["model"] == version.model.name and identification["version"] == version.label
    assert identification["manifest_sha256"] == version.manifest_digest
    groups = _section(document, "groups")["content"]
    assert groups["audit"] == 3  # the newest audit of this version
    sex = next(table for table in groups["tables"] if table["attribute"] == "sex")
    female = next(row for row in sex["rows"] if row["group"] == "sex=female")
    recorded = next(g for g in audits[-1].result["groups"] if g["attributes"] == {"sex": "female"})
    assert female["count"] == recorded["count"] and female["selection_rate"] == recorded["selection_rate"]
    assert female["selection_rate_ci"] == recorded["ci"]["selection_rate"]
    assert groups["unknown_count"] == next(g["count"] for g in audits[-1].result["groups"]
                                           if g["attributes"] == {"sex": "Unknown"})
    assert any(table["intersection"] for table in groups["tables"])
    trend = _section(document, "monitoring")["content"]["trend"]
    assert [item["audit"] for item in trend] == [1, 2, 3]


def test_findings_compare_each_impact_ratio_with_the_threshold(version, audits):
    document = sections.report_document(version, audits=audits[:1])  # female rate 0.45 vs 0.72: below 0.8
    findings = _section(document, "findings")["content"]
    failing = [f for f in findings["findings"] if not f["passed"]]
    assert findings["failed"] == len(failing) > 0
    assert any(f["group"] == "sex=female" and f["value"] < 0.8 for f in failing)


def test_missing_data_is_said_explicitly(version):
    document = sections.report_document(version, audits=[])
    assert "fairness audit of this version" in _section(document, "fairness_method")["missing"]
    assert any("no fairness audit" in item for item in _section(document, "groups")["missing"])
    assert any("approval request" in item for item in _section(document, "signoff")["missing"])
    assert any("deployments" in item for item in _section(document, "deployments")["missing"])
    assert any("scheduled reporting" in item for item in _section(document, "monitoring")["missing"])
    assert any("fairness monitoring" in item for item in _section(document, "monitoring")["missing"])
    html = render.report_html(document)
    incomplete = [section for section in document["sections"] if section["missing"]]
    assert any("purpose of processing" in item for item in _section(document, "processing")["missing"])
    assert html.count("Not recorded:") == len(incomplete) == 12  # one line per section that lacks something


def test_html_has_inline_svg_charts_and_json_has_the_same_sections(version, audits):
    document = sections.report_document(version, audits=audits)
    html = render.report_html(document)
    assert html.count("<svg") == 5  # rates + impact for each of the two attributes, and the trend
    assert "threshold 0.8" in html
    parsed = json.loads(render.report_json(document))
    assert [s["title"] for s in parsed["sections"]] == [s["title"] for s in document["sections"]]
    for section in parsed["sections"]:
        assert f"{section['number']}. {section['title']}" in html


def test_pdf_renders_from_the_same_template(version, audits):
    from weasyprint import HTML

    document = sections.report_document(version, audits=audits)
    assert render.report_pdf(document).startswith(b"%PDF-")
    rendered = HTML(string=render.report_html(document, for_pdf=True)).render()
    assert len(rendered.pages) >= 4
    # Nothing is wider than the page: tables and charts must not overflow.
    page_width = rendered.pages[0].width

    def boxes(box):
        yield box
        for child in getattr(box, "children", []) or []:
            yield from boxes(child)

    checked = set()  # a table split across pages has a box on each: count elements, not boxes
    for page in rendered.pages:
        for box in boxes(page._page_box):
            tag = (getattr(box, "element_tag", None) or "").rsplit("}", 1)[-1]  # inline SVG's tag is namespaced
            if tag in ("table", "svg", "img"):
                checked.add(id(box.element))
                assert box.position_x + box.margin_width() <= page_width + 0.5, tag
    html = render.report_html(document, for_pdf=True)
    assert (html.count("<table"), html.count("<svg"), html.count("<img")) == (18, 5, 0)
    assert len(checked) == 18 + 5, "every table and chart was laid out and checked"


def test_report_generate_stores_files_and_records_a_ledger_entry(version, auditor, settings, tmp_path):
    import hashlib
    from pathlib import Path

    from audit.models import LedgerEntry
    from governance.reports import services

    settings.MEDIA_ROOT = tmp_path / "media"
    generated = services.report_generate(version=version, by=auditor)
    entry = LedgerEntry.objects.get(action="report.generated")
    assert entry.seq == generated.ledger_seq and entry.actor == f"user:{auditor.username}"
    for field in ("json_file", "html_file", "pdf_file"):
        data = (Path(settings.MEDIA_ROOT) / getattr(generated, field).name).read_bytes()
        assert hashlib.sha256(data).hexdigest() in entry.payload["files"].values()


def test_a_per_audit_report_is_about_that_audit(version, audits):
    document = sections.report_document(version, audits=audits, primary_audit=audits[0])
    assert document["audit"] == 1 and "(audit #1)" in document["title"]
    assert _section(document, "groups")["content"]["audit"] == 1
    assert _section(document, "fairness_method")["content"]["audit"] == 1
    # The trend still shows every audit of the model.
    assert len(_section(document, "monitoring")["content"]["trend"]) == 3


def test_generate_report_command_stores_and_copies_the_files(version, settings, tmp_path):
    import io

    from django.core.management import call_command

    from audit.models import LedgerEntry
    from governance.reports.models import GeneratedReport

    settings.MEDIA_ROOT = tmp_path / "media"
    out = io.StringIO()
    call_command("generate_report", "--model", version.model.name, "--version", version.label,
                 "--out-dir", str(tmp_path / "out"), stdout=out)
    generated = GeneratedReport.objects.get()
    assert generated.actor == "system:generate_report"
    assert LedgerEntry.objects.filter(action="report.generated", seq=generated.ledger_seq).exists()
    copied = sorted(path.suffix for path in (tmp_path / "out").iterdir())
    assert copied == [".html", ".json", ".pdf"]

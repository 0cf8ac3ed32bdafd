"""Audit bundle benchmarks on the real PostgreSQL: export of a model with 100,000 ledger entries,
verify.py on that bundle, and a report PDF for a typical model.

Anchors, measured in the same run: a plain zip of the same entries' bytes read the same way
(no proofs, no signatures, no manifest), and one SHA-256 pass over the bundle's members (the
least any verifier must do).

    python -m bench.bench_bundles [--quick]
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench.common import ROOT, django_setup, recreate_database

BENCH_DB = "governance_bench_bundles"
# Ids far from the demo's, so the typical-model report below does not see these 100k entries.
MODEL_SUBJECTS = [("governance.registeredmodel", "900001")] + [("governance.modelversion", str(900000 + v)) for v in range(1, 6)]


def _fill_ledger(model_entries: int, other_entries: int) -> None:
    from audit.ledger import checkpoint_create, draft, ledger_append_many

    batch = 5000
    others_per_batch = max(1, other_entries * batch // max(model_entries, 1))
    written = 0
    while written < model_entries:
        size = min(batch, model_entries - written)
        drafts = []
        for index in range(written, written + size):
            subject = MODEL_SUBJECTS[index % len(MODEL_SUBJECTS)]
            drafts.append(draft(actor="service:pipeline", action="model_version.metric_recorded", subject=subject,
                                payload={"index": index, "metric": "auc", "value": 0.8 + (index % 100) / 1000}))
        drafts.extend(draft(actor="service:other", action="other.changed", subject=("other.thing", f"{written}-{k}"),
                            payload={"k": k}) for k in range(others_per_batch))
        ledger_append_many(drafts, checkpoint=False)
        written += size
    checkpoint_create()


def _anchor_plain_zip(out: Path) -> float:
    from audit.models import LedgerEntry
    from governance.reports.bundle import _subject_query

    started = time.perf_counter()
    rows = LedgerEntry.objects.filter(_subject_query(MODEL_SUBJECTS)).order_by("seq").values_list("seq", "canonical")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("entries.jsonl", "w") as handle:
            for _, canonical in rows.iterator(5000):
                handle.write(bytes(canonical) + b"\n")
    return time.perf_counter() - started


def _anchor_hash_members(path: Path) -> float:
    started = time.perf_counter()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            hashlib.sha256(archive.read(info)).hexdigest()
    return time.perf_counter() - started


def run(quick: bool = False) -> list[dict]:
    model_entries = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-bundles-") as tmp:
        work = Path(tmp)
        recreate_database(BENCH_DB)
        django_setup(BENCH_DB, work, media_root=work / "media")
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from audit.models import SigningKey
        from audit.services import signing_key_ensure

        for purpose in SigningKey.Purpose.values:
            signing_key_ensure(purpose=purpose)
        _fill_ledger(model_entries, model_entries // 5)

        from governance.reports.bundle import build_bundle

        bundle_path = work / "bundle.zip"
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = build_bundle(subjects=MODEL_SUBJECTS, out=bundle_path)
        export_s, export_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        assert summary.entry_count == model_entries, summary
        anchor_export_s = _anchor_plain_zip(work / "plain.zip")

        from audit.models import SigningKey

        verify_py = ROOT / "governance" / "reports" / "verifier" / "verify.py"
        # The keys pinned, as a regulator runs it (without, the best exit code is 3).
        pins = [arg for vkey in SigningKey.objects.values_list("vkey", flat=True) for arg in ("--trusted-key", vkey)]
        started, children_before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        completed = subprocess.run([sys.executable, "-I", str(verify_py), str(bundle_path), *pins],
                                   capture_output=True, text=True)
        verify_s = time.perf_counter() - started
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        verify_cpu_s = (children_after.ru_utime + children_after.ru_stime
                        - children_before.ru_utime - children_before.ru_stime)
        if completed.returncode != 0:
            raise RuntimeError(f"verify.py failed on the bench bundle: {completed.stdout}{completed.stderr}")
        anchor_verify_s = _anchor_hash_members(bundle_path)
        size_mb = bundle_path.stat().st_size / 1e6

        rows = [
            {"what": f"export bundle, model with {model_entries:,} entries ({size_mb:.0f} MB zip)",
             "ours": round(export_s, 3), "anchor": round(anchor_export_s, 3),
             "anchor_name": "plain zip of the entry bytes", "unit": "s", "goal": "<= 10 s",
             "cpu_s": round(export_cpu_s, 3)},
            {"what": f"verify.py on that bundle ({model_entries:,} proofs)",
             "ours": round(verify_s, 3), "anchor": round(anchor_verify_s, 3),
             "anchor_name": "SHA-256 of every member", "unit": "s", "goal": "<= 5 s",
             "cpu_s": round(verify_cpu_s, 3)},
        ]
        rows.extend(_report_rows(work))
        from django.db import connections

        connections.close_all()
    return rows


def _report_rows(work: Path) -> list[dict]:
    """The report (JSON + HTML + PDF) of the demo's production model version: a typical model."""
    from django.core.management import call_command
    from weasyprint import HTML

    from governance.models import Deployment
    from governance.reports import render

    call_command("seed_demo", stdout=io.StringIO())
    deployment = Deployment.objects.filter(is_active=True, environment__is_production=True).select_related(
        "version__model").first()
    version = deployment.version
    timings, cpu_timings = [], []
    for _ in range(3):
        started, cpu_started = time.perf_counter(), time.process_time()
        files = render.report_files_for_version(version)
        timings.append(time.perf_counter() - started)
        cpu_timings.append(time.process_time() - cpu_started)
    started = time.perf_counter()
    HTML(string="<html><body><h1>Report</h1><p>One page of text.</p></body></html>").write_pdf()
    anchor_s = time.perf_counter() - started
    pdf_kb = len(next(data for name, data in files.items() if name.endswith(".pdf"))) / 1024
    return [
        {"what": f"report PDF+HTML+JSON, {version.model.name} {version.label} ({pdf_kb:.0f} KiB PDF), warm",
         "ours": round(min(timings[1:]), 3), "anchor": round(anchor_s, 3),
         "anchor_name": "WeasyPrint, one-page plain HTML", "unit": "s", "goal": "<= 5 s",
         "cpu_s": round(min(cpu_timings[1:]), 3)},
        {"what": "same report, first in a fresh process (fonts, imports)", "ours": round(timings[0], 3),
         "anchor": None, "anchor_name": "", "unit": "s", "goal": "<= 5 s", "cpu_s": round(cpu_timings[0], 3)},
    ]


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for row in run(quick=quick):
        print(row)

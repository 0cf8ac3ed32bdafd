"""Monitoring in the audit bundle: the entries of profiles, monitors, runs, alerts and their
acknowledgements, and each run's result as a file recorded by its digest; verify.py recomputes
PSI, Jensen-Shannon and chi-square from the stored counts, offline, and fails on any that does not
follow from them."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import pytest
from django.core.management import call_command

from audit.ledger import checkpoint_create
from governance.monitoring.evidence import result_digest_matches, run_result_bytes
from governance.monitoring.models import Alert, MonitorRun
from governance.monitoring.services.monitors import alert_acknowledge
from tests.monitoring.test_model_page import watched  # noqa: F401 (fixture)
from tests.reports.bundle_helpers import load_verifier, members, run_verify, tamper_and_resign, verdict

pytestmark = pytest.mark.django_db


def _export(tmp_path: Any, name: str) -> bytes:
    out = tmp_path / "bundle.zip"
    call_command("export_bundle", "--model", name, "--out", str(out), stdout=io.StringIO())
    return out.read_bytes()


def _actions(files: dict[str, bytes]) -> list[str]:
    return [json.loads(base64.b64decode(json.loads(line)["canonical"]))["action"]
            for line in files["ledger/entries.jsonl"].splitlines() if line.strip()]


def test_the_bundle_carries_monitoring_and_verify_recomputes_it(watched, scientist, version, tmp_path):  # noqa: F811
    alert_acknowledge(alert=Alert.objects.get(monitor=watched, kind="drift"), by=scientist, comment="fixed upstream")
    checkpoint_create()
    assert all(result_digest_matches(run) for run in MonitorRun.objects.all())
    bundle = _export(tmp_path, version.model.name)
    files = members(bundle)
    runs = sorted(name for name in files if name.startswith("monitoring/"))
    assert runs == [f"monitoring/run-{run.pk:06d}.json" for run in MonitorRun.objects.order_by("pk")]
    actions = _actions(files)
    for action, count in (("reference_profile.created", 1), ("monitor.created", 1), ("monitor.thresholds_set", 1),
                          ("monitor_run.completed", 3), ("alert.raised", 2), ("alert.acknowledged", 1)):
        assert actions.count(action) == count, action
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("ok  3 monitoring run(s): each result recorded by its SHA-256 in a monitor_run.completed entry; "
            "PSI, Jensen-Shannon and chi-square of 6 column(s) recomputed from the stored counts") in verdict(result)

    # An insider who edits a stored count and signs the manifest again: the result no longer is
    # the one the ledger recorded.
    first = runs[0]

    def edit(files: dict[str, bytes]) -> None:
        document = json.loads(files[first])
        document["drift"]["columns"][0]["bins"]["current"][0] += 1
        files[first] = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    tampered = run_verify(tmp_path, tamper_and_resign(bundle, edit))
    assert tampered.returncode == 1
    assert f"{first} is not recorded (as result_sha256) in any monitor_run.completed entry" in tampered.stdout


def _contents(result: dict[str, Any]) -> dict[str, bytes]:
    raw = json.dumps(result, sort_keys=True, separators=(",", ":")).encode()
    entry = {"action": "monitor_run.completed", "payload": {"result_sha256": hashlib.sha256(raw).hexdigest()}}
    line = json.dumps({"seq": 1, "canonical": base64.b64encode(json.dumps(entry).encode()).decode()})
    return {"ledger/entries.jsonl": line.encode() + b"\n", "monitoring/run-000001.json": raw}


def test_a_recorded_result_whose_statistics_do_not_follow_from_its_counts_fails(watched):  # noqa: F811
    verifier = load_verifier()
    run = MonitorRun.objects.order_by("pk").first()
    result = json.loads(run_result_bytes(run))
    report = verifier.Report()
    verifier.verify_monitoring(_contents(result), report)  # as recorded: every statistic follows
    assert report.lines and "2 column(s) recomputed" in report.lines[0]
    for column_index, key, change in ((0, "psi", 0.01), (0, "js", 0.01), (1, "chi2", 1.0)):
        wrong = json.loads(run_result_bytes(run))
        column = wrong["drift"]["columns"][column_index]
        if key == "chi2":
            column["chi2"]["statistic"] += change
        else:
            column[key] += change
        with pytest.raises(verifier.VerificationError, match="does not follow from the counts"):
            verifier.verify_monitoring(_contents(wrong), verifier.Report())


def test_recomputed_chi2_equals_scipy():
    from scipy.stats import chi2_contingency

    verifier = load_verifier()
    for reference, current in (([120, 30], [100, 55]), ([50, 40, 30, 0], [45, 52, 20, 7]), ([3, 1000, 7], [9, 990, 2])):
        want = chi2_contingency([reference, current])
        statistic, dof, pvalue = verifier.monitoring_chi2(reference, current, len(reference) == 2)
        assert dof == want.dof and abs(statistic - want.statistic) <= 1e-9 and abs(pvalue - want.pvalue) <= 1e-12


def test_the_report_carries_the_post_market_monitoring_plan(watched, scientist, version, settings):  # noqa: F811
    from governance.reports.render import report_html
    from governance.reports.sections import report_document

    settings.MONITORING_WEBHOOK_URL = "https://hooks.example.org/x"
    settings.MONITORING_WEBHOOK_FORMAT = "slack"
    alert = Alert.objects.get(monitor=watched, kind="drift")
    alert_acknowledge(alert=alert, by=scientist, comment="Retrained on the new age field")
    document = report_document(version)
    section = next(s for s in document["sections"] if s["id"] == "monitoring")
    (plan,) = section["content"]["post_market_plan"]
    assert plan["version"] == version.label and plan["columns"] == ["age (numeric)", "region (categorical)"]
    assert plan["performance"] == ["accuracy ≥ 0.8"] and plan["runs"] == 3
    assert plan["alerts_raised"] == 2 and plan["alerts_open"] == 1
    assert plan["corrective_actions"] == [{"alert": alert.pk, "kind": "drift", "subject": "age", "by": "dana",
                                           "at": Alert.objects.get(pk=alert.pk).acknowledged_at.isoformat(),
                                           "comment": "Retrained on the new age field"}]
    assert "a signed webhook (Slack format)" in plan["escalation"]
    html = report_html(document)
    assert "Post-market monitoring plan (EU AI Act Art. 72)" in html and "Retrained on the new age field" in html

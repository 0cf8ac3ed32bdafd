"""GET /metrics: denied by default, open to the bearer token or an allowed network, and the series
(latest drift and performance, open alerts, ledger health, outbox, approvals) in Prometheus text."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from audit.models import LedgerEntry
from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.services.monitors import monitor_create, monitor_run
from governance.monitoring.services.profiles import reference_profile_create
from tests.conftest import REPO_ROOT
from tests.monitoring.test_monitors import _csv

pytestmark = pytest.mark.django_db


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_denied_by_default(settings):
    settings.METRICS_BEARER_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    response = Client().get("/metrics")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_a_wrong_token_or_another_network_is_denied(settings):
    settings.METRICS_BEARER_TOKEN = "s3cret-scrape-token"
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert Client(REMOTE_ADDR="192.168.1.5").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200


def test_series_after_a_drifting_run(settings, scientist, version, pending):
    settings.METRICS_BEARER_TOKEN = "s3cret-scrape-token"
    settings.METRICS_ALLOWED_NETWORKS = []
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv(2_000)),
                             columns=["age"], categorical=["region"])
    monitor = monitor_create(by=scientist, version=version, y_true="label", y_pred="predicted")
    prediction_batch_upload(by=scientist, model=version.model, uploaded=SimpleUploadedFile("b.csv", _csv(600, shift=9.0, seed=3)),
                            served_version=version)
    monitor_run(monitor=monitor, by=scientist)
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = _samples(response.content.decode())
    model, label = version.model.name, version.label
    assert samples[("governance_drift_detected", (("column", "age"), ("model", model), ("version", label)))] == 1.0
    assert samples[("governance_drift_detected", (("column", "region"), ("model", model), ("version", label)))] == 0.0
    assert 0.7 < samples[("governance_drift_effect_size", (("column", "age"), ("model", model), ("version", label)))] < 1.2
    assert 0.8 < samples[("governance_performance", (("metric", "accuracy"), ("model", model), ("version", label)))] < 1.0
    assert samples[("governance_alerts_open", (("model", model),))] == 1.0
    assert samples[("governance_ledger_entries", ())] == LedgerEntry.objects.count()
    assert samples[("governance_approvals_pending", ())] == 1.0
    assert samples[("governance_outbox_backlog", ())] >= 0


def test_the_grafana_dashboard_reads_series_the_endpoint_serves():
    dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "governance.json").read_text())
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    for series in ("governance_drift_effect_size", "governance_drift_detected", "governance_performance",
                   "governance_alerts_open", "governance_ledger_entries", "governance_checkpoint_age_seconds",
                   "governance_last_verification_ok", "governance_outbox_backlog", "governance_approvals_pending"):
        assert series in expressions, series

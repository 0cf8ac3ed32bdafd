"""The model page's monitoring section: drift per column over time (heatmap), performance over time
with its threshold lines, and the open alerts with an Acknowledge form that goes through the
service (its ledger entry, its permission checks); team scoping of the page and the form."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from audit.models import LedgerEntry
from governance.fairness.models import PredictionBatch
from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.models import Alert
from governance.monitoring.services.monitors import monitor_create, monitor_run, monitor_thresholds_set
from governance.monitoring.services.profiles import reference_profile_create
from tests.monitoring.test_monitors import _csv

pytestmark = pytest.mark.django_db


def _week(scientist: Any, version: Any, monitor: Any, content: bytes, end: Any, name: str) -> None:
    batch, _ = prediction_batch_upload(by=scientist, model=version.model, served_version=version,
                                       uploaded=SimpleUploadedFile(name, content))
    PredictionBatch.objects.filter(pk=batch.pk).update(uploaded_at=end - timedelta(hours=1))
    monitor_run(monitor=monitor, by=scientist, now=end)


@pytest.fixture
def watched(scientist, version, risk_officer):  # type: ignore[no-untyped-def]
    """Three weekly runs: steady; age drifted by 9 years; accuracy down to 0.6 (threshold 0.8)."""
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("ref.csv", _csv(3_000)),
                             columns=["age"], categorical=["region"])
    monitor = monitor_create(by=scientist, version=version, y_true="label", y_pred="predicted", window_days=7)
    monitor_thresholds_set(monitor=monitor, by=risk_officer,
                           thresholds={**monitor.thresholds, "performance": {"accuracy": 0.8}})
    monitor.refresh_from_db()
    start = timezone.now() - timedelta(weeks=3)
    _week(scientist, version, monitor, _csv(800, seed=2), start + timedelta(weeks=1), "w1.csv")
    _week(scientist, version, monitor, _csv(800, shift=9.0, seed=3), start + timedelta(weeks=2), "w2.csv")
    _week(scientist, version, monitor, _csv(800, accuracy=0.6, seed=4), start + timedelta(weeks=3), "w3.csv")
    return monitor


def _page(user: Any, version: Any) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(f"/models/{version.model.name}/")
    assert response.status_code == 200
    return response.content.decode()


def test_section_draws_drift_heatmap_performance_with_threshold_and_open_alerts(watched, scientist, version):
    alerts = {(a.kind, a.subject) for a in Alert.objects.filter(monitor=watched)}
    assert alerts == {("drift", "age"), ("performance", "accuracy")}
    page = _page(scientist, version)
    section = page[page.index('<section id="monitoring"'):]
    section = section[:section.index("</section>")]
    heatmap = re.search(r'<svg[^>]*class="drift-heatmap".*?</svg>', section, re.S).group(0)
    # One row per profiled column, one cell per run; the drifted cell (age, week 2) outlined in red.
    assert ">age</text>" in heatmap and ">region</text>" in heatmap
    assert heatmap.count("<rect x=") - 6 == 2 * 3  # 6 legend swatches
    drifted = re.findall(r'stroke="#c0392b" stroke-width="2"><title>([^<]*)</title>', heatmap)
    assert len(drifted) == 1 and drifted[0].startswith("age, ") and drifted[0].endswith(" drift")
    performance = re.search(r'<svg[^>]*class="metric-lines".*?</svg>', section, re.S).group(0)
    assert performance.count('class="threshold"') == 1 and "accuracy (min 0.8)" in performance
    assert performance.count('fill="#c0392b"><title>accuracy') == 1  # the breaching week
    # Both open alerts, each with an Acknowledge form posting to this page's endpoint.
    for alert in Alert.objects.filter(monitor=watched):
        assert f'id="alert-{alert.pk}"' in section
        assert f'action="/models/{version.model.name}/alerts/{alert.pk}/acknowledge/"' in section


def test_acknowledge_from_the_page_goes_through_the_service(watched, scientist, version):
    alert = Alert.objects.get(monitor=watched, kind="drift")
    client = Client()
    client.force_login(scientist)
    url = f"/models/{version.model.name}/alerts/{alert.pk}/acknowledge/"
    response = client.post(url, {"comment": "Upstream age field fixed"})
    assert response.status_code == 302 and response["Location"].endswith("#monitoring")
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by == scientist
    entry = LedgerEntry.objects.get(action="alert.acknowledged")
    assert entry.subject_id == str(alert.pk) and entry.payload["comment"] == "Upstream age field fixed"
    page = _page(scientist, version)
    assert f'id="alert-{alert.pk}"' not in page
    # Twice: refused with its code, nothing written.
    response = client.post(url, {"comment": "again"}, follow=True)
    assert "monitoring_alert_closed" in response.content.decode()
    assert LedgerEntry.objects.filter(action="alert.acknowledged").count() == 1


def test_acknowledge_needs_a_comment(watched, scientist, version):
    alert = Alert.objects.get(monitor=watched, kind="performance")
    client = Client()
    client.force_login(scientist)
    response = client.post(f"/models/{version.model.name}/alerts/{alert.pk}/acknowledge/", {"comment": "  "},
                           follow=True)
    assert response.status_code == 200 and "monitoring_bad_arguments" in response.content.decode()
    alert.refresh_from_db()
    assert alert.status == "open" and not LedgerEntry.objects.filter(action="alert.acknowledged").exists()


def test_a_viewer_sees_the_alerts_but_cannot_acknowledge(watched, make_user, team, version):
    viewer = make_user("victor", "viewer", teams=(team,))
    page = _page(viewer, version)
    alert = Alert.objects.get(monitor=watched, kind="drift")
    assert f'id="alert-{alert.pk}"' in page and "/acknowledge/" not in page
    client = Client()
    client.force_login(viewer)
    response = client.post(f"/models/{version.model.name}/alerts/{alert.pk}/acknowledge/", {"comment": "mine now"},
                           follow=True)
    assert "permission_denied" in response.content.decode()
    alert.refresh_from_db()
    assert alert.status == "open"


def test_another_team_gets_404_for_the_page_and_the_form(watched, make_user, other_team, version):
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    client = Client()
    client.force_login(outsider)
    alert = Alert.objects.get(monitor=watched, kind="drift")
    assert client.get(f"/models/{version.model.name}/").status_code == 404
    assert client.post(f"/models/{version.model.name}/alerts/{alert.pk}/acknowledge/",
                       {"comment": "x"}).status_code == 404
    alert.refresh_from_db()
    assert alert.status == "open"


def test_an_alert_is_acknowledged_only_under_its_own_model(watched, scientist, version, make_version):
    from governance.registry.services.registry import model_register

    other = model_register(by=scientist, name="other-model", team=version.model.team, risk_tier="minimal")
    alert = Alert.objects.get(monitor=watched, kind="drift")
    client = Client()
    client.force_login(scientist)
    assert client.post(f"/models/{other.name}/alerts/{alert.pk}/acknowledge/", {"comment": "x"}).status_code == 404
    alert.refresh_from_db()
    assert alert.status == "open"


def test_no_monitor_no_runs(scientist, version):
    page = _page(scientist, version)
    assert 'id="no-open-alerts"' in page and "No monitor watches this model" in page

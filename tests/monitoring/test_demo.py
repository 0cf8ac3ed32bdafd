"""seed_demo's monitoring part: a frozen reference profile of the production version, six weekly
runs, one feature (debt_ratio) drifting from week 4, performance below its thresholds in the last
weeks, so open alerts show on the dashboard and the model page; idempotent."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command
from django.test import Client

from audit.models import LedgerEntry
from governance.monitoring.models import Alert, Comparison, MonitorRun, ReferenceProfile

pytestmark = pytest.mark.django_db


def test_seed_demo_monitoring(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    started = time.monotonic()
    call_command("seed_demo", stdout=io.StringIO())
    print(f"seed_demo took {time.monotonic() - started:.1f} s")
    profile = ReferenceProfile.objects.get(version__model__name="credit-default-scorer", version__label="1.0.0")
    assert profile.frozen_at is not None
    runs = list(MonitorRun.objects.order_by("window_end"))
    assert len(runs) == 6
    drifted = [run.result["drift"]["drifted"] for run in runs]
    assert drifted[:3] == [[], [], []] and all(d == ["debt_ratio"] for d in drifted[3:])
    breached_metrics = [sorted(a.subject for a in run.alerts.filter(kind="performance")) for run in runs]
    assert breached_metrics[:4] == [[], [], [], []] and all(m for m in breached_metrics[4:])
    assert Alert.objects.filter(status="acknowledged").count() == 1
    assert LedgerEntry.objects.filter(action="monitor_run.completed").count() == 6
    open_alerts = Alert.objects.filter(status="open").count()
    assert open_alerts >= 4
    client = Client()
    client.force_login(profile.version.model.team.group.user_set.get(username="dana"))
    page = client.get("/models/credit-default-scorer/").content.decode()
    assert page.count('ack-form"') == open_alerts and 'class="drift-heatmap"' in page
    assert 'class="threshold"' in page
    dashboard = client.get("/").content.decode()
    assert dashboard.count("— debt_ratio (") == 2  # the acknowledged one is gone
    # 1.1.0 scored the last week's requests in shadow: one comparison, every row paired, and the
    # challenger separates repayers from defaulters better than the degraded champion.
    comparison = Comparison.objects.get()
    assert (comparison.champion.label, comparison.challenger.label) == ("1.0.0", "1.1.0")
    assert comparison.result["rows"] == {"champion": 1200, "challenger": 1200, "paired": 1200, "with_outcome": 1200}
    roc_auc = comparison.result["metrics"]["roc_auc"]
    assert roc_auc["challenger"] > roc_auc["champion"] and roc_auc["difference"] > 0
    assert LedgerEntry.objects.filter(action="comparison.completed").count() == 1
    page = client.get(f"/models/credit-default-scorer/comparisons/{comparison.pk}/")
    assert page.status_code == 200 and "1.1.0" in page.content.decode()
    call_command("seed_demo", stdout=io.StringIO())
    assert MonitorRun.objects.count() == 6 and Comparison.objects.count() == 1

"""The dashboard lists the open monitoring alerts the user may see, and only those."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from governance.fairness.services.batches import prediction_batch_upload
from governance.monitoring.models import Alert
from governance.monitoring.services.monitors import alert_acknowledge, monitor_create, monitor_run
from governance.monitoring.services.profiles import reference_profile_create
from tests.monitoring.test_monitors import _csv

pytestmark = pytest.mark.django_db


def test_dashboard_lists_open_alerts_of_visible_models_only(scientist, version, make_user, other_team):
    reference_profile_create(by=scientist, version=version, file=SimpleUploadedFile("r.csv", _csv(2_000)), columns=["age"])
    monitor = monitor_create(by=scientist, version=version)
    prediction_batch_upload(by=scientist, model=version.model, uploaded=SimpleUploadedFile("b.csv", _csv(500, shift=9.0)),
                            served_version=version)
    monitor_run(monitor=monitor, by=scientist)
    mine = Client()
    mine.force_login(scientist)
    page = mine.get("/").content.decode()
    assert 'id="open-alerts"' in page and "— age (" in page
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    theirs = Client()
    theirs.force_login(outsider)
    assert "No open monitoring alerts." in theirs.get("/").content.decode()
    alert_acknowledge(alert=Alert.objects.get(), by=scientist, comment="retraining")
    assert "No open monitoring alerts." in mine.get("/").content.decode()

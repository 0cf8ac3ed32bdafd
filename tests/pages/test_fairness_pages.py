"""The fairness part of the pages: run an audit from the model page, see its result with charts,
failing and overdue audits on the dashboard."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.test import Client

from governance.registry.services.approvals import approval_policy_set, model_version_submit

pytestmark = pytest.mark.django_db


def write_dataset(path: Path, *, biased: bool) -> Path:
    """400 rows, two groups; with `biased`, women are selected at a quarter of men's rate."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["y_true", "y_pred", "sex"])
        for index in range(400):
            sex = "female" if index % 2 else "male"
            selected = (index % 8 == 1) if (biased and sex == "female") else (index % 4 in (0, 1))
            writer.writerow([int(index % 3 == 0), int(selected), sex])
    return path


@pytest.fixture
def spec(model, version, scientist, tmp_path, settings):
    from governance.fairness.services import specs

    settings.MEDIA_ROOT = tmp_path / "media"
    return specs.audit_spec_create(
        by=scientist, model=model, name="sex parity", version=version, y_true="y_true", y_pred="y_pred",
        sensitive=["sex"], dataset_path=write_dataset(tmp_path / "eval.csv", biased=True),
        thresholds={"impact_ratio": 0.8}, bootstrap=50, seed=1, min_group_size=10)


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_running_an_audit_from_the_model_page_shows_its_result_with_charts(model, spec, scientist,
                                                                          django_capture_on_commit_callbacks):
    from governance.fairness.models import AuditRun

    client = client_for(scientist)
    page = client.get(f"/models/{model.name}/").content.decode()
    assert 'id="run-audit"' in page and f'value="{spec.pk}"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/models/{model.name}/audit/", {"spec": str(spec.pk)})
    run = AuditRun.objects.get()
    assert response.status_code == 302 and f"audit={run.pk}" in response["Location"]
    html = client.get(response["Location"]).content.decode()
    assert f'data-status-url="/api/fairness/audits/{run.pk}/status/"' in html
    run.refresh_from_db()
    assert run.status == AuditRun.Status.SUCCEEDED and run.passed is False, (run.error_code, run.error_message)
    assert f"Audit #{run.pk} of version {run.model_version.label}" in html
    assert "failed thresholds" in html
    fairness = html[html.index('<section id="fairness"'):]
    fairness = fairness[:fairness.index("</section>")]
    assert fairness.count("<svg") == 3  # rates with CIs, impact ratio with the 0.8 line, trend
    assert "Selection rate by sex (95% CI)" in html and "Impact ratio by sex" in html


def test_failing_audit_is_on_the_dashboard(model, spec, scientist, django_capture_on_commit_callbacks):
    from governance.fairness.services import runs

    with django_capture_on_commit_callbacks(execute=True):
        runs.audit_request(spec=spec, by=scientist)
    html = client_for(scientist).get("/").content.decode()
    assert 'id="audit-problems"' in html and "below a threshold" in html and "sex parity" in html


def test_overdue_audit_is_on_the_dashboard(model, version, scientist, policy):
    approval_policy_set(by="system:test", risk_tier="high", quorum=2, required_roles=["risk_officer"],
                                 fairness_audit_max_age_days=30)
    model_version_submit(version=version, by=scientist, comment="")
    html = client_for(scientist).get("/").content.decode()
    assert "never audited; policy wants one within 30 days" in html


def test_running_an_unknown_spec_is_refused_with_its_code(model, version, scientist):
    html = client_for(scientist).post(f"/models/{model.name}/audit/", {"spec": "999"}, follow=True).content.decode()
    assert "[fairness_spec_not_found]" in html


def test_viewer_cannot_run_audits(model, spec, make_user, team):
    viewer = make_user("vera", "viewer", teams=(team,))
    client = client_for(viewer)
    assert 'id="run-audit"' not in client.get(f"/models/{model.name}/").content.decode()
    html = client.post(f"/models/{model.name}/audit/", {"spec": str(spec.pk)}, follow=True).content.decode()
    assert "[permission_denied]" in html or "may not run fairness audits" in html

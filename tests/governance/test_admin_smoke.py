"""Every admin page opens for every role with the status that role should get, and never a 5xx.

On the demo's data (`seed_demo`) plus one object of each registered model the demo does not
create, each role signs in and opens every changelist, add page and change page of the admin
(the first object of each model). The expected status of each page for each role is the table
below: 200 where the role may use the page, 403 where it may not, 302 where the admin sends the
role back (an object it may not see). One test walks the whole table, so the demo is seeded once.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

pytestmark = pytest.mark.django_db

ROLES = ("admin", "risk_officer", "approver", "data_scientist", "auditor", "superuser")
USERNAMES = {"admin": "ada", "risk_officer": "rita", "approver": "alice", "data_scientist": "dana",
             "auditor": "audrey", "superuser": "root"}
PAGES = ("changelist", "add", "change")
PROJECT_APPS = ("audit", "lineage", "governance", "auth", "django_celery_beat", "fairness", "monitoring", "reports",
                "outbox", "mlflow_integration")

# model label -> (changelist, add, change): the roles that get 200; every other role gets 403,
# except the statuses listed in OTHER.
_ALL = frozenset(ROLES)
_NONE: frozenset[str] = frozenset()
_ADMINS = frozenset({"admin", "superuser"})
_READERS = _ADMINS | {"auditor"}  # read everything
_RISK = frozenset({"risk_officer", "superuser"})
# Admins do not do a data scientist's work (roles.ADMIN_WITHHELD); a superuser holds every
# permission, so the add page opens, and the services refuse the save (refuse_admin).
_SCIENTISTS = frozenset({"data_scientist", "superuser"})
_FAIRNESS_READERS = _READERS | {"risk_officer", "approver"}  # confirm specs, waive failing audits
_LINEAGE = _READERS | {"data_scientist"}
_REPORTS = _READERS | {"risk_officer"}
_BEAT = (_RISK, _RISK, _RISK)  # the beat schedule belongs to risk officers (admins: 403)
_READ_ONLY = (_READERS, _NONE, _READERS)
OK: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    "audit.Checkpoint": _READ_ONLY,
    "audit.LedgerEntry": _READ_ONLY,
    "audit.SigningKey": _READ_ONLY,
    "audit.WitnessCosignature": _READ_ONLY,
    "auth.Group": (_ADMINS, frozenset({"superuser"}), _ADMINS),
    "auth.User": (_ADMINS, _ADMINS, _ADMINS),
    "django_celery_beat.ClockedSchedule": _BEAT,
    "django_celery_beat.CrontabSchedule": _BEAT,
    "django_celery_beat.IntervalSchedule": _BEAT,
    "django_celery_beat.PeriodicTask": _BEAT,
    "django_celery_beat.SolarSchedule": _BEAT,
    "fairness.AuditRun": (_FAIRNESS_READERS, _NONE, _FAIRNESS_READERS),
    "fairness.AuditSpec": (_FAIRNESS_READERS, _NONE, _FAIRNESS_READERS),
    "fairness.PredictionBatch": _READ_ONLY,
    # Sealed data files: risk officers override retention and erase here (issue 18).
    "fairness.SealedFile": (_READERS | {"risk_officer"}, _NONE, _READERS | {"risk_officer"}),
    "governance.ApprovalDecision": (_ALL, _NONE, _ALL),
    "governance.ApprovalPolicy": (_ALL, _RISK, _ALL),  # policies belong to risk officers
    "governance.ApprovalPolicyChange": (_READERS | {"risk_officer"}, _NONE, _READERS | {"risk_officer"}),
    "governance.ApprovalRequest": (_ALL, _NONE, _ALL),
    "governance.Deployment": (_ALL, _SCIENTISTS, _ALL),
    "governance.Environment": (_ALL, _ADMINS, _ALL),
    "governance.ModelVersion": (_ALL, _SCIENTISTS, _ALL),
    "governance.PrivilegeGrantRequest": (_READERS, _ADMINS, _READERS),
    "governance.RegisteredModel": (_ALL, _SCIENTISTS, _ALL),
    "governance.RiskTierChange": (_READERS | {"risk_officer", "approver"}, _RISK,
                                  _READERS | {"risk_officer", "approver"}),
    "governance.ServiceAccount": (_READERS, _ADMINS, _READERS),
    "governance.ServiceToken": _READ_ONLY,
    "governance.Team": (_ALL, _ADMINS, _ALL),
    "lineage.Attestation": (_LINEAGE, _NONE, _LINEAGE),
    "lineage.Dataset": (_LINEAGE, _NONE, _LINEAGE),
    "lineage.DatasetVersion": (_LINEAGE, _NONE, _LINEAGE),
    "lineage.LineageEdge": (_LINEAGE, _NONE, _LINEAGE),
    "lineage.LineageNode": (_LINEAGE, _NONE, _LINEAGE),
    "lineage.PipelineKey": (_LINEAGE, _NONE, _LINEAGE),
    "lineage.TrainingRun": (_LINEAGE, _NONE, _LINEAGE),
    "mlflow_integration.MlflowConnection": (_ADMINS, _ADMINS, _ADMINS),
    "mlflow_integration.MlflowDelivery": _READ_ONLY,
    "mlflow_integration.MlflowViolation": _READ_ONLY,
    "monitoring.Alert": _READ_ONLY,  # alerts are acknowledged through the API and pages, with a comment
    "monitoring.Monitor": _READ_ONLY,
    "monitoring.MonitorRun": _READ_ONLY,
    "monitoring.ReferenceProfile": _READ_ONLY,
    "outbox.OutboxMessage": (frozenset({"superuser"}), _NONE, frozenset({"superuser"})),
    "reports.BundleExport": (_REPORTS, _NONE, _READERS),
    "reports.GeneratedReport": (_REPORTS, _NONE, _REPORTS),
    "reports.ReportSchedule": (_REPORTS, _ADMINS | {"risk_officer"}, _REPORTS),
}
# (label, page, role) -> a status other than 200/403: the admin redirects away from an object the
# role may not see (the demo's bundle export was asked for by the auditor).
OTHER: dict[tuple[str, str, str], int] = {("reports.BundleExport", "change", "risk_officer"): 302}


def _expected(label: str, page: str, role: str) -> int:
    if (label, page, role) in OTHER:
        return OTHER[(label, page, role)]
    return 200 if role in OK[label][PAGES.index(page)] else 403


def _extra_objects() -> None:
    """One object of each registered model the demo leaves empty."""
    from django_celery_beat.models import ClockedSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

    from core.outbox.models import OutboxMessage
    from governance import grants
    from governance.demo import demo_password

    users = {user.username: user for user in get_user_model().objects.all()}
    second_admin = get_user_model().objects.create_user("adam", password=demo_password("adam"), is_staff=True)
    from governance import accounts

    accounts.user_groups_add(user=second_admin, groups=[users["ada"].groups.get(name="admin")],
                             by="system:test_setup")
    grants.privilege_grant_request(by=users["ada"], grantee=users["victor"], kind="tier_scope", risk_tier="limited",
                                   reason="covers limited-tier reviews")
    interval = IntervalSchedule.objects.create(every=300, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="ledger-checkpoint", task="audit.tasks.ledger_checkpoint_task", interval=interval)
    SolarSchedule.objects.create(event="sunrise", latitude=52.5, longitude=13.4)
    ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(days=1))
    OutboxMessage.objects.create(task_name="audit.tasks.ledger_checkpoint_task")
    _monitoring_and_tier_objects(users)
    _ledger_and_mlflow_objects(users)


def _ledger_and_mlflow_objects(users: dict[str, Any]) -> None:
    """A witness cosignature row, and an MLflow connection with a delivery and a violation."""
    from audit import ledger
    from audit.models import Checkpoint, WitnessCosignature
    from governance.integrations.mlflow.models import MlflowDelivery, MlflowViolation
    from governance.integrations.mlflow.services.connections import mlflow_connection_create
    from governance.models import ModelVersion, Team

    checkpoint = Checkpoint.objects.order_by("pk").first() or ledger.checkpoint_create()
    now = timezone.now()
    WitnessCosignature.objects.create(checkpoint=checkpoint, witness_name="smoke.example/w", witness_vkey="smoke",
                                      cosigned_at=now, line="— smoke.example/w AAAA", received_at=now)
    connection = mlflow_connection_create(by=users["ada"], name="smoke", team=Team.objects.order_by("pk").first(),
                                          tracking_uri="https://mlflow.example.org")
    MlflowDelivery.objects.create(delivery_id="smoke", connection=connection, event="model_version.created",
                                  body_sha256="0" * 64, received_at=now, ledger_seq=1)
    version = ModelVersion.objects.order_by("pk").first()
    MlflowViolation(connection=connection, model=version.model, version=version, mlflow_name="smoke",
                    mlflow_version="1", alias="champion", environment="production", version_status="draft",
                    code="mlflow_policy_violation", detected_at=now).save_recorded(action="mlflow.policy_violation",
                                                                                   by="system:test_setup")


def _monitoring_and_tier_objects(users: dict[str, Any]) -> None:
    """A decided risk-tier change and a profile, monitor, run and alert (rows only: the pages open them)."""
    from governance.models import ChangeStatus, ModelVersion, RegisteredModel, RiskTierChange
    from governance.monitoring.models import Alert, Monitor, MonitorRun, ReferenceProfile

    setup = "system:test_setup"
    model = RegisteredModel.objects.order_by("pk").first()
    RiskTierChange(model=model, from_tier=model.risk_tier, to_tier="minimal", reason="smoke test row",
                   requested_by=users["rita"], requested_at=timezone.now(),
                   status=ChangeStatus.REJECTED).save_recorded(action="risk_tier_change.requested", by=setup)
    version = ModelVersion.objects.filter(model=model).order_by("pk").first()
    profile = ReferenceProfile(version=version, source_sha256="0" * 64, profile_file="smoke.json",
                               profile_sha256="0" * 64, columns=[], summary={}, engine_version="smoke",
                               row_count=0)
    profile.save_recorded(action="reference_profile.created", by=setup)
    monitor = Monitor(name="smoke", version=version, thresholds={})
    monitor.save_recorded(action="monitor.created", by=setup)
    now = timezone.now()
    run = MonitorRun.objects.create(monitor=monitor, profile=profile, window_start=now - timedelta(days=7),
                                    window_end=now, batches=[], result={}, result_sha256="0" * 64, breached=True)
    Alert.objects.create(run=run, monitor=monitor, kind="drift", subject="age", detail={})


@pytest.fixture
def smoke_data(settings, tmp_path, monkeypatch) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = tmp_path
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-root-password-42")
    call_command("create_superuser", "root", stdout=open(os.devnull, "w"))  # noqa: SIM115
    _extra_objects()
    return {role: get_user_model().objects.get(username=USERNAMES[role]) for role in ROLES}


def _models() -> list[Any]:
    return sorted((model for model in admin.site._registry if model._meta.app_label in PROJECT_APPS),
                  key=lambda model: model._meta.label)


def _url(model: Any, page: str) -> str:
    meta = model._meta
    name = f"admin:{meta.app_label}_{meta.model_name}_{page}"
    if page != "change":
        return reverse(name)
    first = model._default_manager.order_by("pk").first()
    assert first is not None, f"no {meta.label} to open"
    return reverse(name, args=[first.pk])


def test_every_admin_page_answers_each_role_with_its_status(client, smoke_data):
    actual: dict[tuple[str, str, str], int] = {}
    for role in ROLES:
        client.force_login(smoke_data[role])
        for model in _models():
            for page in PAGES:
                actual[(model._meta.label, page, role)] = client.get(_url(model, page)).status_code
        client.logout()
    assert sorted(OK) == sorted({label for label, _, _ in actual}), "a registered model is missing from the table"
    assert [key for key, status in actual.items() if status >= 500] == []
    expected = {key: _expected(*key) for key in actual}
    wrong = {key: (status, expected[key]) for key, status in actual.items() if status != expected[key]}
    assert wrong == {}, "\n".join(f"{key}: got {got}, expected {want}" for key, (got, want) in sorted(wrong.items()))

"""Unit tests of the privilege rules: the role matrix, what a permission amounts to, grant requests'
cover, and how rarely a schedule runs."""

from __future__ import annotations

import math

import pytest
from django.contrib.auth import get_user_model
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from audit.models import LedgerEntry
from core.errors import Forbidden, InvalidInput
from governance import accounts, grants, schedules
from governance.models import GrantStatus, PrivilegeGrantRequest
from governance.roles import EXCLUDES, ROLE_NAMES, excluded_pairs, permission_role, sod_matrix_markdown


def test_the_matrix_is_symmetric_and_names_every_role():
    assert set(EXCLUDES) == set(ROLE_NAMES)
    assert all(role in EXCLUDES[other] for role, others in EXCLUDES.items() for other in others)


def test_excluded_pairs_sees_roles_added_together():
    assert excluded_pairs(set(), {"admin", "approver"}) == [("admin", "approver"), ("approver", "admin")]
    assert excluded_pairs({"admin"}, {"auditor"}) == []
    assert excluded_pairs({"approver"}, {"admin"}) == [("admin", "approver")]


@pytest.mark.parametrize(("permission", "role"), [
    ("governance.approve_tier_high", "approver"), ("governance.add_approvaldecision", "approver"),
    ("governance.approve_registeredmodel", "approver"), ("auth.change_user", "admin"),
    ("governance.manage_all_registeredmodels", "admin"), ("governance.view_registeredmodel", None),
    ("lineage.add_dataset", None),
])
def test_what_a_directly_granted_permission_amounts_to(permission, role):
    assert permission_role(permission) == role


def test_the_matrix_in_the_docs_is_the_one_in_code():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## What insiders cannot do"):]
    assert sod_matrix_markdown() in section


@pytest.mark.parametrize(("cron", "gap_s"), [
    ({"minute": "0", "hour": "2"}, 86400),
    ({"minute": "*/15", "hour": "*"}, 900),
    ({"minute": "0", "hour": "2,14"}, 43200),
    ({"minute": "0", "hour": "2", "day_of_week": "1"}, 7 * 86400),
    ({"minute": "0", "hour": "0", "day_of_month": "1"}, 31 * 86400),
    ({"minute": "0", "hour": "0", "day_of_month": "1", "month_of_year": "1"}, 365 * 86400),
])
def test_the_longest_gap_of_a_crontab(cron, gap_s):
    fields = {"day_of_week": "*", "day_of_month": "*", "month_of_year": "*", **cron}
    assert schedules.cron_max_gap_s(**fields) == gap_s


def test_a_one_off_or_unscheduled_task_never_runs_again():
    every_minute = IntervalSchedule(every=1, period=IntervalSchedule.MINUTES)
    assert schedules.task_max_gap_s(PeriodicTask(one_off=True), schedule=every_minute) == math.inf
    assert schedules.task_max_gap_s(PeriodicTask(), schedule=every_minute) == 60


needs_db = pytest.mark.django_db


@needs_db
def test_an_unsaved_or_unapproved_request_covers_nothing(make_user):
    ada, adam, vic = make_user("ada", "admin"), make_user("adam", "admin"), make_user("vic", "viewer")
    forged = PrivilegeGrantRequest(grantee=vic, kind="role", role="risk_officer", status=GrantStatus.APPROVED,
                                   requested_by=ada, decided_by=adam)
    assert not forged.covers(user=vic, roles={"risk_officer"})
    grant = grants.privilege_grant_request(by=ada, grantee=vic, kind="role", role="risk_officer", reason="reviews")
    grant.status = GrantStatus.APPROVED  # in memory only: the stored request is still pending
    assert not grant.covers(user=vic, roles={"risk_officer"})
    with pytest.raises(Forbidden) as refused:
        accounts.user_groups_add(user=vic, groups=[grant.grantee.groups.model.objects.get(name="risk_officer")],
                                 by=ada, grant_request=grant)
    assert refused.value.code == "privilege_request_required"


@needs_db
@pytest.mark.parametrize(("fields", "code"), [
    ({"kind": "role", "role": "viewer"}, "privilege_grant_invalid"),
    ({"kind": "role", "role": "approver", "risk_tier": "high"}, "privilege_grant_invalid"),
    ({"kind": "tier_scope", "risk_tier": "extreme"}, "privilege_grant_invalid"),
    ({"kind": "root"}, "privilege_grant_invalid"),
    ({"kind": "role", "role": "approver", "reason": " "}, "reason_required"),
])
def test_a_malformed_grant_request_is_invalid_input_and_writes_nothing(make_user, fields, code):
    ada, vic = make_user("ada", "admin"), make_user("vic", "viewer")
    size = LedgerEntry.objects.count()
    with pytest.raises(InvalidInput) as refused:
        grants.privilege_grant_request(by=ada, grantee=vic, **{"reason": "reviews", **fields})
    assert refused.value.code == code
    assert (PrivilegeGrantRequest.objects.count(), LedgerEntry.objects.count()) == (0, size)


@needs_db
def test_only_admins_request_or_decide_grants(make_user, risk_officer):
    vic = make_user("vic", "viewer")
    with pytest.raises(Forbidden) as refused:
        grants.privilege_grant_request(by=risk_officer, grantee=vic, kind="role", role="approver", reason="reviews")
    assert refused.value.code == "permission_denied"
    assert not PrivilegeGrantRequest.objects.exists()


@needs_db
def test_a_schedule_created_by_a_risk_officer_is_recorded(risk_officer):
    interval = schedules.schedule_save(obj=IntervalSchedule(every=10, period=IntervalSchedule.MINUTES),
                                       by=risk_officer)
    entry = LedgerEntry.objects.get(action="intervalschedule.created")
    assert entry.actor == "user:rita" and entry.subject_id == str(interval.pk)
    assert entry.payload["after"] == {"every": 10, "period": "minutes"}
    schedules.schedule_delete(obj=interval, by=risk_officer)
    assert LedgerEntry.objects.filter(action="intervalschedule.deleted", actor="user:rita").count() == 1
    assert not IntervalSchedule.objects.exists()


@needs_db
def test_createsuperuser_on_the_command_line_is_recorded_too(monkeypatch):
    from io import StringIO

    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-root-password-42")
    call_command("createsuperuser", "--noinput", "--username", "rooty", "--email", "r@example.org", stdout=StringIO())
    root = get_user_model().objects.get(username="rooty")
    entry = LedgerEntry.objects.get(action="user.created", subject_id=str(root.pk))
    assert entry.payload["is_superuser"] is True

"""Insiders cannot grant themselves privileges (issue 14, class 3), attacked through the admin as the
attacking user with the permissions of their role, and through the services the admin calls.

- nobody changes their own groups, permissions, staff or superuser flags;
- a decision role, an approver scope or admin is granted to a person only by a grant request that a
  second admin approved (never the requester, never the grantee);
- admin and the decision roles exclude each other (governance.roles.EXCLUDES);
- superusers are made on the command line only, and that is recorded;
- the beat schedule is changed by risk officers only, recorded, and the ledger's own jobs cannot be
  disabled, deleted or made rarer.

Each refusal answers with its code and is kept in the ledger as `<action>.refused`. There is no API
for accounts, grants or schedules: the admin and the services are the surfaces.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from audit.models import LedgerEntry
from core.errors import Conflict, Forbidden
from governance import accounts, grants, schedules
from governance.models import GrantStatus, PrivilegeGrantRequest
from governance.registry.services.access import approver_scope_grant, role_grant
from tests.fixtures import SEED

pytestmark = pytest.mark.django_db


def refusals(action: str) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(action=f"{action}.refused").order_by("seq"))


def refused_codes(action: str) -> list[tuple[str, str]]:
    return [(entry.actor, entry.payload["code"]) for entry in refusals(action)]


def roles_of(user: Any) -> set[str]:
    return set(get_user_model().objects.get(pk=user.pk).groups.values_list("name", flat=True))


def perm(name: str) -> Permission:
    app, codename = name.split(".", 1)
    return Permission.objects.get(content_type__app_label=app, codename=codename)


def group(name: str) -> Group:
    return Group.objects.get(name=name)


@pytest.fixture
def ada(make_user) -> Any:  # type: ignore[no-untyped-def]
    return make_user("ada", "admin")


@pytest.fixture
def adam(make_user) -> Any:  # type: ignore[no-untyped-def]
    return make_user("adam", "admin")


@pytest.fixture
def victor(make_user) -> Any:  # type: ignore[no-untyped-def]
    return make_user("victor", "viewer")


def user_change_post(target: Any, **fields: Any) -> dict[str, Any]:
    """What the admin's user change form posts, with the target's current groups unless given."""
    target = get_user_model().objects.get(pk=target.pk)
    data: dict[str, Any] = {
        "username": target.username, "is_active": "on",
        "date_joined_0": target.date_joined.strftime("%Y-%m-%d"), "date_joined_1": target.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": target.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": target.date_joined.strftime("%H:%M:%S"),
        "groups": [str(pk) for pk in target.groups.values_list("pk", flat=True)],
        "user_permissions": [str(pk) for pk in target.user_permissions.values_list("pk", flat=True)],
    }
    if target.is_staff:
        data["is_staff"] = "on"
    data.update(fields)
    return data


def change_user(client: Any, target: Any, **fields: Any) -> Any:
    url = reverse("admin:auth_user_change", args=[target.pk])
    return client.post(url, user_change_post(target, **fields))


# --- Nobody changes their own access -----------------------------------------------------------

def test_an_admin_cannot_add_herself_to_risk_officer_in_the_user_admin(client, ada):
    client.force_login(ada)
    response = change_user(client, ada, groups=[str(group("admin").pk), str(group("risk_officer").pk)])
    assert response.status_code == 302 and response["Location"] == reverse("admin:auth_user_change", args=[ada.pk])
    assert roles_of(ada) == {"admin"}
    assert refused_codes("user.access_set") == [("user:ada", "privilege_self_change")]
    assert [entry.payload for entry in LedgerEntry.objects.filter(action="role.granted", subject_id=str(ada.pk))
            if entry.payload["role"] == "risk_officer"] == []


def test_an_admin_cannot_tick_her_own_decision_permission(client, ada):
    client.force_login(ada)
    response = change_user(client, ada, user_permissions=[str(perm("governance.approve_tier_high").pk)])
    assert response.status_code == 302
    assert not get_user_model().objects.get(pk=ada.pk).has_perm("governance.approve_tier_high")
    assert refused_codes("user.access_set") == [("user:ada", "privilege_self_change")]


def test_nobody_changes_their_own_staff_flag(client, ada):
    client.force_login(ada)
    data = user_change_post(ada)
    del data["is_staff"]
    response = client.post(reverse("admin:auth_user_change", args=[ada.pk]), data)
    assert response.status_code == 302
    assert get_user_model().objects.get(pk=ada.pk).is_staff
    assert refused_codes("user.updated") == [("user:ada", "privilege_self_change")]


def test_an_admin_cannot_give_a_group_she_is_in_a_decision_permission(client, ada):
    admin_group = group("admin")
    client.force_login(ada)
    wanted = [*admin_group.permissions.values_list("pk", flat=True), perm("governance.approve_tier_high").pk]
    response = client.post(reverse("admin:auth_group_change", args=[admin_group.pk]),
                           {"name": "admin", "permissions": [str(pk) for pk in wanted]})
    assert response.status_code == 302
    assert not admin_group.permissions.filter(codename="approve_tier_high").exists()
    assert refused_codes("permission.granted") == [("user:ada", "privilege_self_change")]


def test_an_admin_cannot_give_any_group_a_decision_permission(client, ada, victor):
    viewer = group("viewer")
    client.force_login(ada)
    wanted = [*viewer.permissions.values_list("pk", flat=True), perm("governance.add_approvaldecision").pk]
    response = client.post(reverse("admin:auth_group_change", args=[viewer.pk]),
                           {"name": "viewer", "permissions": [str(pk) for pk in wanted]})
    assert response.status_code == 302
    assert not viewer.permissions.filter(codename="add_approvaldecision").exists()
    assert refused_codes("permission.granted") == [("user:ada", "privilege_request_required")]


def test_an_admin_cannot_set_a_risk_officers_password_to_sign_in_as_her(client, ada, risk_officer):
    client.force_login(ada)
    response = client.post(reverse("admin:auth_user_password_change", args=[risk_officer.pk]),
                           {"password1": "ada-knows-this-now-42", "password2": "ada-knows-this-now-42",
                            "usable_password": "true"})
    assert response.status_code == 302
    assert not get_user_model().objects.get(pk=risk_officer.pk).check_password("ada-knows-this-now-42")
    assert refused_codes("auth.password_set") == [("user:ada", "privilege_password_reset")]
    accounts.user_password_set(user=risk_officer, by=risk_officer, password="rita-chose-this-42")  # her own: fine
    assert get_user_model().objects.get(pk=risk_officer.pk).check_password("rita-chose-this-42")


# --- Decision roles, approver scopes and admin take two people ------------------------------------

def test_granting_a_decision_role_directly_in_the_user_admin_is_refused(client, ada, victor):
    client.force_login(ada)
    response = change_user(client, victor, groups=[str(group("viewer").pk), str(group("risk_officer").pk)])
    assert response.status_code == 302
    assert roles_of(victor) == {"viewer"}
    assert refused_codes("user.access_set") == [("user:ada", "privilege_request_required")]


@pytest.mark.parametrize("grant", [
    lambda by, to: role_grant(user=to, role="approver", by=by),
    lambda by, to: role_grant(user=to, role="admin", by=by),
    lambda by, to: approver_scope_grant(by=by, to=to, risk_tier="high"),
    lambda by, to: accounts.user_groups_add(user=to, groups=[group("risk_officer")], by=by),
    lambda by, to: accounts.user_access_set(user=to, by=by, permissions=[perm("auth.change_user")]),
], ids=["approver", "admin", "tier-scope", "groups-add", "admin-permission"])
def test_a_direct_grant_by_a_person_is_refused_in_the_services(ada, victor, grant):
    with pytest.raises(Forbidden) as refused:
        grant(ada, victor)
    assert refused.value.code == "privilege_request_required"
    assert roles_of(victor) == {"viewer"}
    assert not get_user_model().objects.get(pk=victor.pk).user_permissions.exists()
    assert [entry.payload["code"] for entry in LedgerEntry.objects.filter(action__endswith=".refused",
                                                                          actor="user:ada")] == [
        "privilege_request_required"]


def _request_in_admin(client: Any, by: Any, **fields: Any) -> Any:
    client.force_login(by)
    data = {"grantee": "", "kind": "role", "role": "", "risk_tier": "", "model": "", "reason": "covers reviews"}
    data.update(fields)
    return client.post(reverse("admin:governance_privilegegrantrequest_add"), data)


def _decide_in_admin(client: Any, by: Any, grant: PrivilegeGrantRequest, action: str, comment: str) -> Any:
    client.force_login(by)
    return client.post(reverse("admin:governance_privilegegrantrequest_changelist"),
                       {"action": action, "_selected_action": [str(grant.pk)], "apply": "1", "comment": comment})


def test_a_decision_role_is_granted_by_a_request_and_a_second_admins_approval(client, ada, adam, victor):
    response = _request_in_admin(client, ada, grantee=str(victor.pk), role="risk_officer")
    assert response.status_code == 302
    grant = PrivilegeGrantRequest.objects.get()
    assert (grant.status, grant.requested_by, grant.grantee) == (GrantStatus.PENDING, ada, victor)
    assert roles_of(victor) == {"viewer"}

    # The requester cannot approve her own request.
    assert _decide_in_admin(client, ada, grant, "approve", "fine by me").status_code == 302
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING and roles_of(victor) == {"viewer"}
    assert refused_codes("privilege_grant.approved") == [("user:ada", "privilege_grant_own_request")]

    # A second admin does, and the grant is executed with it.
    assert _decide_in_admin(client, adam, grant, "approve", "victor leads the model risk unit").status_code == 302
    grant.refresh_from_db()
    assert (grant.status, grant.decided_by) == (GrantStatus.GRANTED, adam)
    assert roles_of(victor) == {"viewer", "risk_officer"}
    steps = [(entry.action, entry.actor) for entry in LedgerEntry.objects.filter(
        action__in=["privilege_grant.requested", "privilege_grant.approved", "role.granted", "privilege_grant.granted"],
        seq__gt=0).order_by("seq") if entry.payload.get("grantee", entry.payload.get("user")) == "victor"]
    assert steps[-4:] == [("privilege_grant.requested", "user:ada"), ("privilege_grant.approved", "user:adam"),
                          ("role.granted", "user:adam"), ("privilege_grant.granted", "user:adam")]


def test_an_approver_scope_takes_a_request_too(ada, adam, victor):
    grant = grants.privilege_grant_request(by=ada, grantee=victor, kind="tier_scope", risk_tier="high",
                                           reason="second reviewer for high risk")
    assert not get_user_model().objects.get(pk=victor.pk).has_perm("governance.approve_tier_high")
    grants.privilege_grant_decide(grant=grant, by=adam, decision="approve", comment="agreed")
    assert get_user_model().objects.get(pk=victor.pk).has_perm("governance.approve_tier_high")


def test_the_grantee_cannot_approve_a_grant_to_themselves(client, ada, adam):
    grant = grants.privilege_grant_request(by=adam, grantee=ada, kind="superuser", reason="on-call break glass")
    assert _decide_in_admin(client, ada, grant, "approve", "yes please").status_code == 302
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING
    assert refused_codes("privilege_grant.approved") == [("user:ada", "privilege_self_change")]


def test_nobody_requests_a_privilege_for_themselves(client, ada):
    response = _request_in_admin(client, ada, grantee=str(ada.pk), kind="superuser")
    assert response.status_code == 302
    assert not PrivilegeGrantRequest.objects.exists()
    assert refused_codes("privilege_grant.requested") == [("user:ada", "privilege_self_change")]


def test_a_rejection_needs_a_reason_and_grants_nothing(ada, adam, victor):
    grant = grants.privilege_grant_request(by=ada, grantee=victor, kind="role", role="approver", reason="reviews")
    grant = grants.privilege_grant_decide(grant=grant, by=adam, decision="reject", comment="not on this team")
    assert grant.status == GrantStatus.REJECTED and roles_of(victor) == {"viewer"}
    with pytest.raises(Conflict) as closed:
        grants.privilege_grant_decide(grant=grant, by=adam, decision="approve", comment="changed my mind")
    assert closed.value.code == "privilege_grant_not_pending"
    assert roles_of(victor) == {"viewer"}


# --- Admin and the decision roles exclude each other ----------------------------------------------

@pytest.mark.parametrize(("grantee", "role"), [("adam", "approver"), ("adam", "risk_officer"), ("rita", "admin"),
                                              ("alice", "admin")])
def test_admin_and_decision_roles_exclude_each_other(client, ada, adam, risk_officer, approver, grantee, role):
    target = get_user_model().objects.get(username=grantee)
    response = _request_in_admin(client, ada, grantee=str(target.pk), role=role)
    assert response.status_code == 302
    assert not PrivilegeGrantRequest.objects.exists()
    assert refused_codes("privilege_grant.requested") == [("user:ada", "privilege_separation_of_duties")]
    assert role not in roles_of(target)


def test_separation_of_duties_holds_for_the_bootstrap_path_too(adam):
    with pytest.raises(Conflict) as refused:
        role_grant(user=adam, role="risk_officer", by=SEED)
    assert refused.value.code == "privilege_separation_of_duties"
    assert roles_of(adam) == {"admin"}


def test_separation_of_duties_is_checked_again_when_a_grant_is_executed(make_user, ada, adam, victor):
    eve = make_user("eve", "admin")
    as_approver = grants.privilege_grant_request(by=ada, grantee=victor, kind="role", role="approver",
                                                 reason="reviews")
    as_admin = grants.privilege_grant_request(by=adam, grantee=victor, kind="role", role="admin", reason="ops")
    grants.privilege_grant_decide(grant=as_admin, by=eve, decision="approve", comment="ok")
    with pytest.raises(Conflict) as refused:
        grants.privilege_grant_decide(grant=as_approver, by=adam, decision="approve", comment="ok")
    assert refused.value.code == "privilege_separation_of_duties"
    assert roles_of(victor) == {"viewer", "admin"}


# --- Superusers: the command line only, recorded --------------------------------------------------

def test_the_admin_cannot_tick_superuser_and_the_service_refuses_it(client, ada, victor):
    client.force_login(ada)
    response = change_user(client, victor, is_superuser="on")
    assert response.status_code == 302
    assert not get_user_model().objects.get(pk=victor.pk).is_superuser  # read-only: ignored
    with pytest.raises(Forbidden) as refused:
        accounts.user_flags_set(user=victor, by=ada, is_superuser=True)
    assert refused.value.code == "superuser_command_line_only"
    assert not get_user_model().objects.get(pk=victor.pk).is_superuser
    assert refused_codes("user.updated") == [("user:ada", "superuser_command_line_only")]


def test_superusers_are_created_on_the_command_line_and_recorded(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-root-password-42")
    call_command("create_superuser", "root", stdout=StringIO())
    root = get_user_model().objects.get(username="root")
    assert root.is_superuser and root.is_staff
    entry = LedgerEntry.objects.get(action="user.created", subject_id=str(root.pk))
    assert entry.actor == "system:create_superuser"
    assert (entry.payload["is_superuser"], entry.payload["is_staff"]) == (True, True)


def test_a_superuser_grant_is_approved_by_a_second_admin_and_executed_on_the_command_line(ada, adam, victor):
    grant = grants.privilege_grant_request(by=ada, grantee=victor, kind="superuser", reason="break-glass account")
    with pytest.raises(CommandError, match="privilege_grant_not_pending"):
        call_command("superuser_grant", str(grant.pk), stdout=StringIO())
    grants.privilege_grant_decide(grant=grant, by=adam, decision="approve", comment="for the incident")
    assert not get_user_model().objects.get(pk=victor.pk).is_superuser  # approval alone does not execute it
    with pytest.raises(Forbidden) as refused:
        grants.superuser_grant_execute(grant=grant, by=adam)  # a person, not the command line
    assert refused.value.code == "superuser_command_line_only"
    call_command("superuser_grant", str(grant.pk), stdout=StringIO())
    assert get_user_model().objects.get(pk=victor.pk).is_superuser
    entry = LedgerEntry.objects.filter(action="user.updated", subject_id=str(victor.pk)).last()
    assert entry is not None and entry.actor == "system:superuser_grant"
    assert entry.payload["after"]["is_superuser"] is True


# --- The beat schedule: risk officers, recorded, the ledger's jobs protected ----------------------

@pytest.fixture
def beat(db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    every_5_min = IntervalSchedule.objects.create(every=300, period=IntervalSchedule.SECONDS)
    nightly = CrontabSchedule.objects.create(minute="0", hour="2", day_of_week="*", day_of_month="*",
                                             month_of_year="*", timezone="UTC")
    return {
        "interval": every_5_min, "crontab": nightly,
        "checkpoint": PeriodicTask.objects.create(name="ledger-checkpoint", task="audit.tasks.ledger_checkpoint_task",
                                                  interval=every_5_min),
        "verify": PeriodicTask.objects.create(name="ledger-verify-nightly", task="audit.tasks.ledger_verify_task",
                                              crontab=nightly),
        "purge": PeriodicTask.objects.create(name="idempotency-records-purge",
                                             task="governance.tasks.idempotency_records_purge_task",
                                             crontab=nightly),
    }


def _disable(client: Any, by: Any, task: PeriodicTask) -> Any:
    client.force_login(by)
    return client.post(reverse("admin:django_celery_beat_periodictask_changelist"),
                       {"action": "disable_tasks", "_selected_action": [str(task.pk)]})


def test_a_risk_officer_cannot_disable_the_nightly_verification(client, risk_officer, beat):
    assert _disable(client, risk_officer, beat["verify"]).status_code == 302
    beat["verify"].refresh_from_db()
    assert beat["verify"].enabled
    [entry] = refusals("periodictask.updated")
    assert (entry.actor, entry.payload["code"]) == ("user:rita", "schedule_protected")


def test_a_risk_officers_change_of_another_task_is_recorded(client, risk_officer, beat):
    assert _disable(client, risk_officer, beat["purge"]).status_code == 302
    beat["purge"].refresh_from_db()
    assert not beat["purge"].enabled
    entry = LedgerEntry.objects.get(action="periodictask.updated")
    assert entry.actor == "user:rita"
    assert (entry.payload["before"], entry.payload["after"]) == ({"enabled": True}, {"enabled": False})


def test_a_superuser_is_not_a_risk_officer_for_the_schedule(client, beat):
    root = get_user_model().objects.create_superuser(username="root", password="x" * 20, email="")
    assert _disable(client, root, beat["purge"]).status_code == 302
    beat["purge"].refresh_from_db()
    assert beat["purge"].enabled
    assert refused_codes("periodictask.updated") == [("user:root", "schedule_risk_officer_only")]


def test_admins_do_not_reach_the_schedule(client, ada, beat):
    client.force_login(ada)
    response = client.get(reverse("admin:django_celery_beat_periodictask_change", args=[beat["verify"].pk]))
    assert response.status_code == 403


def test_the_checkpoint_task_cannot_be_deleted(client, risk_officer, beat):
    client.force_login(risk_officer)
    response = client.post(reverse("admin:django_celery_beat_periodictask_delete", args=[beat["checkpoint"].pk]),
                           {"post": "yes"})
    assert response.status_code == 302
    assert PeriodicTask.objects.filter(pk=beat["checkpoint"].pk).exists()
    assert refused_codes("periodictask.deleted") == [("user:rita", "schedule_protected")]


def test_the_checkpoints_interval_cannot_be_made_rarer(client, risk_officer, beat):
    client.force_login(risk_officer)
    response = client.post(reverse("admin:django_celery_beat_intervalschedule_change", args=[beat["interval"].pk]),
                           {"every": "1", "period": "days", **_no_inline_tasks()})
    assert response.status_code == 302
    beat["interval"].refresh_from_db()
    assert (beat["interval"].every, beat["interval"].period) == (300, "seconds")
    [entry] = refusals("intervalschedule.updated")
    assert entry.payload["code"] == "schedule_protected"


def test_the_nightly_crontab_cannot_be_made_weekly_but_can_run_more_often(client, risk_officer, beat):
    client.force_login(risk_officer)
    url = reverse("admin:django_celery_beat_crontabschedule_change", args=[beat["crontab"].pk])
    fields = {"minute": "0", "hour": "2", "day_of_month": "*", "month_of_year": "*", "timezone": "UTC",
              **_no_inline_tasks()}
    assert client.post(url, {**fields, "day_of_week": "0"}).status_code == 302
    beat["crontab"].refresh_from_db()
    assert beat["crontab"].day_of_week == "*"
    assert refused_codes("crontabschedule.updated") == [("user:rita", "schedule_protected")]
    assert client.post(url, {**fields, "day_of_week": "*", "hour": "2,14"}).status_code == 302
    beat["crontab"].refresh_from_db()
    assert beat["crontab"].hour == "2,14"
    assert LedgerEntry.objects.get(action="crontabschedule.updated").payload["after"] == {"hour": "2,14"}


def _no_inline_tasks() -> dict[str, str]:
    # The schedule pages show the tasks that use them as a read-only inline formset.
    return {"periodictask_set-TOTAL_FORMS": "0", "periodictask_set-INITIAL_FORMS": "0",
            "periodictask_set-MIN_NUM_FORMS": "0", "periodictask_set-MAX_NUM_FORMS": "0"}


def test_schedule_service_refuses_a_rarer_interval_for_the_checkpoint(risk_officer, beat):
    task = PeriodicTask.objects.get(pk=beat["checkpoint"].pk)
    task.interval = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.HOURS)
    with pytest.raises(Conflict) as refused:
        schedules.schedule_save(obj=task, by=risk_officer)
    assert refused.value.code == "schedule_protected" and refused.value.extra["why"] == "rarer"
    assert PeriodicTask.objects.get(pk=task.pk).interval_id == beat["interval"].pk


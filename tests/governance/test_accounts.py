"""Account changes that decide access are ledger entries: creation, flags, passwords, deletion."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from audit.models import LedgerEntry
from audit.verify import verify_ledger
from core.actor import acting_as

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple-9"


def _entries(user, action: str | None = None) -> list[LedgerEntry]:  # type: ignore[no-untyped-def]
    entries = LedgerEntry.objects.filter(subject_type="auth.user", subject_id=str(user.pk)).order_by("seq")
    return list(entries.filter(action=action) if action else entries)


def test_creation_records_the_access_flags_and_never_the_password():
    with acting_as("system:test"):
        user = get_user_model().objects.create_user(username="ivy", password=PASSWORD, email="ivy@example.org",
                                                    is_staff=True)
    [entry] = _entries(user, "user.created")
    assert entry.actor == "system:test"
    assert entry.payload == {"username": "ivy", "is_active": True, "is_staff": True, "is_superuser": False,
                             "password": {"usable": True, "hasher": user.password.split("$")[0]}}
    canonical = bytes(entry.canonical).decode()
    assert PASSWORD not in canonical and user.password not in canonical and "ivy@example.org" not in canonical


def test_flag_changes_record_before_and_after_with_the_actor():
    user = get_user_model().objects.create_user(username="jo", password=PASSWORD)
    with acting_as("user:root"):
        user.is_superuser = True
        user.is_staff = True
        user.first_name = "Jo"  # personal data, not access: not recorded
        user.save()
        user.is_active = False
        user.save(update_fields=["is_active"])
    first, second = _entries(user, "user.updated")
    assert (first.actor, first.payload) == ("user:root", {
        "user": "jo", "before": {"is_staff": False, "is_superuser": False}, "after": {"is_staff": True, "is_superuser": True}})
    assert second.payload == {"user": "jo", "before": {"is_active": True}, "after": {"is_active": False}}
    assert verify_ledger().ok


def test_saving_without_an_access_change_records_nothing():
    user = get_user_model().objects.create_user(username="kim", password=PASSWORD)
    count = len(_entries(user))
    user.email = "kim@example.org"
    user.save()
    user.save(update_fields=["last_login"])
    assert len(_entries(user)) == count


def test_password_changes_are_recorded_without_the_hash():
    user = get_user_model().objects.create_user(username="lee", password=PASSWORD)
    old_hash = user.password
    with acting_as("user:lee"):
        user.set_password("another-long-password-42")
        user.save()
        user.set_unusable_password()
        user.save()
    first, second = _entries(user, "auth.password_set")
    assert first.payload == {"user": "lee", "usable": True, "hasher": old_hash.split("$")[0]}
    assert second.payload == {"user": "lee", "usable": False, "hasher": None}
    for entry in (first, second):
        canonical = bytes(entry.canonical).decode()
        assert "another-long-password-42" not in canonical and old_hash not in canonical


def test_sign_in_records_the_sign_in_but_no_account_change(client):
    user = get_user_model().objects.create_user(username="max", password=PASSWORD, is_staff=True)
    before = [entry.action for entry in _entries(user)]
    # Through the sign-in page: django-axes' backend needs the request (a sign-in without one is refused).
    assert client.post("/accounts/login/", {"username": "max", "password": PASSWORD}).status_code == 302
    assert [entry.action for entry in _entries(user)] == [*before, "auth.signed_in"]


def test_deletion_is_recorded():
    user = get_user_model().objects.create_user(username="ned", password=PASSWORD)
    pk = user.pk
    with acting_as("user:root"):
        user.delete()
    entry = LedgerEntry.objects.filter(subject_type="auth.user", subject_id=str(pk), action="user.deleted").get()
    assert (entry.actor, entry.payload) == ("user:root", {"user": "ned"})


def test_the_admin_cannot_tick_superuser_and_its_staff_change_is_recorded_against_the_admin(client):
    root = get_user_model().objects.create_superuser(username="root", password=PASSWORD, email="")
    target = get_user_model().objects.create_user(username="oli", password=PASSWORD)
    client.force_login(root)
    url = reverse("admin:auth_user_change", args=[target.pk])
    response = client.post(url, {
        "username": "oli", "is_active": "on", "is_staff": "on", "is_superuser": "on",
        "date_joined_0": target.date_joined.strftime("%Y-%m-%d"), "date_joined_1": target.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": target.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": target.date_joined.strftime("%H:%M:%S"),
    })
    assert response.status_code == 302, response.content[:2000]
    target.refresh_from_db()
    assert (target.is_staff, target.is_superuser) == (True, False)  # is_superuser is read-only in the admin
    [entry] = _entries(target, "user.updated")
    assert entry.actor == "user:root"
    assert entry.payload["after"] == {"is_staff": True}


# --- The services record account changes themselves; the signal handlers are only the fallback ---

@pytest.fixture
def without_fallback_signals():  # type: ignore[no-untyped-def]
    """Disconnect the signal fallback, so an entry that still appears was written by a service."""
    from django.contrib.auth.models import Group
    from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

    from governance import signals

    user_model = get_user_model()
    wiring = [
        (pre_save, signals._account_before, user_model, "gov-account-before"),
        (post_save, signals._account_saved, user_model, "gov-account-saved"),
        (post_delete, signals._account_deleted, user_model, "gov-account-deleted"),
        (m2m_changed, signals._membership_changed, user_model.groups.through, "gov-membership"),
        (m2m_changed, signals._model_permissions_changed, user_model.user_permissions.through, "gov-user-perms"),
    ]
    for signal, _, sender, uid in wiring:
        assert signal.disconnect(sender=sender, dispatch_uid=uid)
    yield Group
    for signal, handler, sender, uid in wiring:
        signal.connect(handler, sender=sender, dispatch_uid=uid)


def _admin_change_post(target, **fields):  # type: ignore[no-untyped-def]
    data = {
        "username": target.username, "is_active": "on",
        "date_joined_0": target.date_joined.strftime("%Y-%m-%d"), "date_joined_1": target.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": target.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": target.date_joined.strftime("%H:%M:%S"),
    }
    data.update(fields)
    return data


def test_the_admin_user_change_writes_its_entries_through_the_service(client, without_fallback_signals):
    group_model = without_fallback_signals
    root = get_user_model().objects.create_superuser(username="root", password=PASSWORD, email="")
    target = get_user_model().objects.create_user(username="pia", password=PASSWORD)
    auditor = group_model.objects.get(name="auditor")
    client.force_login(root)
    response = client.post(reverse("admin:auth_user_change", args=[target.pk]),
                           _admin_change_post(target, is_staff="on", groups=[str(auditor.pk)]))
    assert response.status_code == 302, response.content[:2000]
    assert [(entry.action, entry.actor, entry.payload) for entry in _entries(target)[-2:]] == [
        ("user.updated", "user:root", {"user": "pia", "before": {"is_staff": False}, "after": {"is_staff": True}}),
        ("role.granted", "user:root", {"role": "auditor", "user": "pia"}),
    ]


def test_the_admin_password_change_and_delete_write_through_the_service(client, without_fallback_signals):
    root = get_user_model().objects.create_superuser(username="root", password=PASSWORD, email="")
    target = get_user_model().objects.create_user(username="quin", password=PASSWORD)
    pk = target.pk
    client.force_login(root)
    response = client.post(reverse("admin:auth_user_password_change", args=[pk]),
                           {"password1": "a-new-long-password-77", "password2": "a-new-long-password-77",
                            "usable_password": "true"})
    assert response.status_code == 302, response.content[:2000]
    [entry] = _entries(target, "auth.password_set")
    assert (entry.actor, entry.payload["usable"]) == ("user:root", True)
    response = client.post(reverse("admin:auth_user_delete", args=[pk]), {"post": "yes"})
    assert response.status_code == 302, response.content[:2000]
    entry = LedgerEntry.objects.get(subject_type="auth.user", subject_id=str(pk), action="user.deleted")
    assert (entry.actor, entry.payload) == ("user:root", {"user": "quin"})


def test_account_services_record_each_change_once_with_the_named_actor():
    from django.contrib.auth.models import Group

    from governance import accounts

    user = accounts.user_create(by="system:test", username="rae", email="rae@example.org")
    accounts.user_password_set(user=user, by="system:test", password=PASSWORD)
    accounts.user_flags_set(user=user, by="user:root", is_staff=True)
    accounts.user_groups_add(user=user, groups=[Group.objects.get(name="auditor")], by="user:root")
    accounts.user_groups_add(user=user, groups=[Group.objects.get(name="auditor")], by="user:root")  # no change
    assert [(entry.action, entry.actor) for entry in _entries(user)] == [
        ("user.created", "system:test"), ("auth.password_set", "system:test"), ("user.updated", "user:root"),
        ("role.granted", "user:root")]
    assert _entries(user)[0].payload["password"] == {"usable": False, "hasher": None}
    pk = user.pk
    accounts.user_delete(user=user, by="user:root")
    assert LedgerEntry.objects.filter(subject_type="auth.user", subject_id=str(pk), action="user.deleted").count() == 1

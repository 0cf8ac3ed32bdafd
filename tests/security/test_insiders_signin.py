"""Insiders and anonymous callers at sign-in (issue 14, class 7) and with look-alike names (class 8).

Sign-in: django-axes counts failures in the database (every worker sees them), limits per username
at one address, per address and per username across addresses, with a cool-off that doubles; an
attacker at one address never locks the user out at another, and the genuine password works again
once the cool-off is over. Failures reach the ledger once per username and window, with a count.

Look-alike names: no username mixing scripts or sharing a TR39 skeleton with another, through the
admin's user forms, the account services, service accounts and the ORM; ledger pages show actors
with escapes, and the actor filter matches exactly.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessAttemptExpiration
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from audit.ledger import ledger_append
from audit.models import LedgerEntry
from core.errors import Conflict, InvalidInput
from governance import accounts
from governance.signin import sign_in_failure_record, sign_in_failures_close, window_start
from tests.conftest import uses_postgres

pytestmark = pytest.mark.django_db

PASSWORD = "test-pass-123456"
CYRILLIC_ALICE = "\u0430lice"  # Cyrillic а, then Latin "lice": looks exactly like "alice"
SURFACES = ("/accounts/login/", "/admin/login/")


def sign_in(path: str, username: str, password: str, address: str, **extra: Any) -> Any:
    return Client(raise_request_exception=False).post(path, {"username": username, "password": password},
                                                      REMOTE_ADDR=address, **extra)


def signed_in(response: Any) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.wsgi_request.session


def age_attempts(seconds: float) -> None:
    """Let `seconds` pass for the stored attempts (their expiry moves back by that much)."""
    for row in AccessAttemptExpiration.objects.all():
        row.expires_at -= timedelta(seconds=seconds)
        row.save(update_fields=["expires_at"])


@pytest.fixture
def victim(make_user, team):  # type: ignore[no-untyped-def]
    return make_user("dana", "data_scientist", teams=(team,), staff=True)


# --- Class 7: limits, shared counters, backoff ---------------------------------------------------

@pytest.mark.parametrize("path", SURFACES)
def test_hammering_from_one_address_does_not_lock_the_user_out_at_another(victim, path):
    statuses = [sign_in(path, "dana", f"guess-{n}", "203.0.113.66").status_code for n in range(40)]
    assert statuses == [200] * 4 + [429] * 36
    # The attacker's address is refused even with the right password ...
    refused = sign_in(path, "dana", PASSWORD, "203.0.113.66")
    assert refused.status_code == 429 and not signed_in(refused)
    # ... but the user, at her own address, signs in.
    assert signed_in(sign_in(path, "dana", PASSWORD, "198.51.100.7"))


def test_the_counters_live_in_the_database_not_in_a_worker(victim):
    """Each gunicorn worker has its own cache; clearing it between tries (another worker) changes nothing."""
    for n in range(4):
        assert sign_in("/accounts/login/", "dana", f"guess-{n}", "203.0.113.66").status_code == 200
        cache.clear()
    assert AccessAttempt.objects.get(username="dana", ip_address="203.0.113.66").failures_since_start == 4
    assert sign_in("/admin/login/", "dana", "guess-5", "203.0.113.66").status_code == 429


def test_an_address_is_limited_across_usernames(victim):
    for n in range(19):
        assert sign_in("/accounts/login/", f"nobody-{n}", "x", "203.0.113.66").status_code == 200
    assert sign_in("/accounts/login/", "nobody-19", "x", "203.0.113.66").status_code == 429  # the 20th
    assert sign_in("/accounts/login/", "dana", PASSWORD, "203.0.113.66").status_code == 429
    assert signed_in(sign_in("/accounts/login/", "dana", PASSWORD, "198.51.100.7"))


def test_a_username_is_limited_across_addresses_each_counting_at_most_the_per_address_limit(victim):
    # Each address counts at most 5 towards the username's 30: one address alone never reaches it.
    for address in range(6):
        for n in range(5):
            sign_in("/accounts/login/", "dana", f"guess-{n}", f"203.0.113.{address}")
    # Six addresses together did: the username cools off everywhere (a distributed attack).
    refused = sign_in("/accounts/login/", "dana", PASSWORD, "198.51.100.7")
    assert refused.status_code == 429 and refused["Retry-After"] == "600"  # the refused try doubled it
    age_attempts(601)
    assert signed_in(sign_in("/accounts/login/", "dana", PASSWORD, "198.51.100.7"))


def test_the_cool_off_doubles_with_each_refused_try_and_then_the_password_works(victim):
    for n in range(4):
        sign_in("/accounts/login/", "dana", f"guess-{n}", "203.0.113.66")
    first = sign_in("/accounts/login/", "dana", "guess-5", "203.0.113.66")
    assert first.status_code == 429 and first["Retry-After"] == "300"
    second = sign_in("/accounts/login/", "dana", "guess-6", "203.0.113.66")
    assert second.status_code == 429 and second["Retry-After"] == "600"
    third = sign_in("/accounts/login/", "dana", "guess-7", "203.0.113.66")
    assert third.status_code == 429 and third["Retry-After"] == "1200"
    age_attempts(1190)
    # Ten seconds left: even the right password is refused unchecked, and the try doubles the wait again.
    early = sign_in("/accounts/login/", "dana", PASSWORD, "203.0.113.66")
    assert early.status_code == 429 and early["Retry-After"] == "2400"
    age_attempts(2401)
    assert signed_in(sign_in("/accounts/login/", "dana", PASSWORD, "203.0.113.66"))
    # A successful sign-in forgets that username's failures at that address only.
    assert not AccessAttempt.objects.filter(username="dana", ip_address="203.0.113.66").exists()


def test_a_forged_forwarded_for_header_does_not_make_a_new_address(victim):
    for n in range(4):
        sign_in("/accounts/login/", "dana", f"guess-{n}", "203.0.113.66", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    response = sign_in("/accounts/login/", "dana", "guess-5", "203.0.113.66", HTTP_X_FORWARDED_FOR="10.0.0.99")
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.66"}


def test_a_json_caller_gets_the_api_error_format_with_retry_after(victim):
    for n in range(5):
        sign_in("/accounts/login/", "dana", f"guess-{n}", "203.0.113.66")
    response = sign_in("/accounts/login/", "dana", PASSWORD, "203.0.113.66", HTTP_ACCEPT="application/json")
    assert response.status_code == 429 and response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "600"  # the refused try counts too: the cool-off doubled
    body = response.json()
    assert body["code"] == "rate_limited" and body["extra"] == {"retry_after_s": 600}
    assert "Too many failed sign-ins" in body["message"]


# --- Class 7: failures aggregated in the ledger ---------------------------------------------------

def test_fifty_failures_in_a_window_are_one_entry_then_one_count(victim, settings):
    settings.SIGN_IN_FAILURE_WINDOW_S = 10**9  # one window for the whole test (none ends while it runs)
    before = LedgerEntry.objects.count()
    for n in range(50):  # from several addresses, through both surfaces, refused or checked alike
        sign_in(SURFACES[n % 2], "dana", f"guess-{n}", f"203.0.113.{n % 7}")
    opened = LedgerEntry.objects.filter(seq__gte=before)
    assert [(entry.action, entry.actor) for entry in opened] == [("auth.sign_in_failed", "system:auth")]
    assert opened[0].payload["username"] == "dana" and opened[0].subject_id == str(victim.pk)
    start = window_start(timezone.now())
    assert sign_in_failures_close(now=start + timedelta(seconds=10**9)) == 1
    closed = LedgerEntry.objects.filter(seq__gte=before).exclude(action="auth.sign_in_failed")
    assert [(entry.action, entry.payload["failures"], entry.payload["window_start"]) for entry in closed] == [
        ("auth.sign_in_failures", 50, start.isoformat())]
    assert sign_in_failures_close(now=start + timedelta(seconds=2 * 10**9)) == 0  # written once


def test_unknown_usernames_share_one_window_and_are_never_written_down(db, settings):
    settings.SIGN_IN_FAILURE_WINDOW_S = 10**9
    before = LedgerEntry.objects.count()
    for n in range(30):
        sign_in("/accounts/login/", f"my-secret-password-{n}", "x", f"203.0.113.{n}")
    entries = list(LedgerEntry.objects.filter(seq__gte=before))
    assert [entry.action for entry in entries] == ["auth.sign_in_failed"]
    assert entries[0].payload["username"] is None and entries[0].subject_id == "unknown"
    assert b"my-secret-password" not in bytes(entries[0].canonical)


def test_the_next_window_s_first_failure_writes_the_closed_window_s_count(victim):
    now = timezone.now()
    for _ in range(3):
        sign_in_failure_record("dana", path="/accounts/login/", now=now)
    later = now + timedelta(hours=1)
    before = LedgerEntry.objects.count()
    sign_in_failure_record("dana", path="/accounts/login/", now=later)
    entries = [(entry.action, entry.payload.get("failures"), entry.payload["window_start"])
               for entry in LedgerEntry.objects.filter(seq__gte=before)]
    assert entries == [("auth.sign_in_failures", 3, window_start(now).isoformat()),
                       ("auth.sign_in_failed", None, window_start(later).isoformat())]


# --- Class 8: look-alike usernames ----------------------------------------------------------------

@pytest.fixture
def admin_client(make_user):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(make_user("ada", "admin"))
    return client


def _add_user(client: Client, username: str) -> Any:
    return client.post("/admin/auth/user/add/", {"username": username, "password1": "a-long-pass-phrase-9",
                                                 "password2": "a-long-pass-phrase-9", "usable_password": "true"})


def test_the_admin_add_form_refuses_a_mixed_script_look_alike(admin_client, approver):
    before = LedgerEntry.objects.count()
    response = _add_user(admin_client, CYRILLIC_ALICE)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors.as_data()["username"]
    assert [error.code for error in errors] == ["username_mixed_script"]
    assert "[username_mixed_script]" in errors[0].message and "\\u0430lice" in errors[0].message
    assert not get_user_model().objects.filter(username=CYRILLIC_ALICE).exists()
    assert LedgerEntry.objects.count() == before


@pytest.mark.parametrize("look_alike", ["\u0430\u0440\u0435", "ape"])
def test_the_admin_add_form_refuses_a_whole_script_look_alike(admin_client, make_user, look_alike):
    # "аре" is all Cyrillic (no mixing) yet looks like "ape"; either exists first, the other is refused.
    make_user("ape" if look_alike != "ape" else "\u0430\u0440\u0435")
    response = _add_user(admin_client, look_alike)
    assert response.status_code == 200
    assert [error.code for error in response.context["adminform"].form.errors.as_data()["username"]] == [
        "username_confusable"]
    assert not get_user_model().objects.filter(username=look_alike).exists()


def test_the_admin_change_form_refuses_a_rename_to_a_look_alike(admin_client, approver, make_user):
    mallory = make_user("mallory")
    response = admin_client.post(f"/admin/auth/user/{mallory.pk}/change/", {
        "username": "a1ice", "is_active": "on", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    assert response.status_code == 200
    assert [error.code for error in response.context["adminform"].form.errors.as_data()["username"]] == [
        "username_confusable"]
    mallory.refresh_from_db()
    assert mallory.username == "mallory"


def test_the_account_services_refuse_look_alikes_and_write_nothing(approver):
    before = LedgerEntry.objects.count()
    with pytest.raises(InvalidInput) as mixed:
        accounts.user_create(by="user:ada", username=CYRILLIC_ALICE, password=PASSWORD)
    assert mixed.value.code == "username_mixed_script" and mixed.value.status_code == 400
    with pytest.raises(Conflict) as confusable:
        accounts.user_create(by="user:ada", username="a1ice", password=PASSWORD)
    assert confusable.value.code == "username_confusable" and confusable.value.status_code == 409
    assert confusable.value.extra == {"field": "username", "username": "a1ice", "looks_like": "alice"}
    other = accounts.user_create(by="user:ada", username="mallory", password=PASSWORD)
    other.username = "aIice"  # capital I for l
    with pytest.raises(Conflict):
        accounts.user_save(user=other, by="user:ada")
    assert list(get_user_model().objects.filter(username__in=[CYRILLIC_ALICE, "a1ice", "aIice"])) == []
    assert [entry.action for entry in LedgerEntry.objects.filter(seq__gte=before)] == ["user.created"]


def test_orm_paths_outside_the_services_refuse_look_alikes_too(approver):
    with pytest.raises(InvalidInput):
        get_user_model().objects.create_user(CYRILLIC_ALICE, password=PASSWORD)
    with pytest.raises(Conflict):
        get_user_model().objects.create_superuser("a1ice", "x@example.org", PASSWORD)


def test_a_service_account_cannot_take_a_look_alike_name(admin_client):
    first = admin_client.post("/admin/governance/serviceaccount/add/", {
        "name": "nightly-m", "description": "", "role": "data_scientist", "scope": "write"})
    assert first.status_code == 200 and get_user_model().objects.filter(username="svc-nightly-m").exists()
    second = admin_client.post("/admin/governance/serviceaccount/add/", {
        "name": "nightly-rn", "description": "", "role": "data_scientist", "scope": "write"}, follow=True)
    assert "[username_confusable]" in [str(message) for message in second.context["messages"]][0]
    assert not get_user_model().objects.filter(username="svc-nightly-rn").exists()


def test_plain_distinct_names_are_still_accepted(approver):
    for name in ("alicia", "Alice", "bob.smith@example.org", "\u0430\u043b\u0438\u0441\u0430"):  # "алиса"
        accounts.user_create(by="user:ada", username=name)


# --- Class 8: ledger pages show escapes; the actor filter matches exactly --------------------------

@pytest.fixture
def look_alike_entries(approver):  # type: ignore[no-untyped-def]
    """An entry by `alice` and one by an older `аlice` account (from before the rule)."""
    latin = ledger_append(actor="user:alice", action="test.latin", subject=("tests.thing", "1"), payload={})
    cyrillic = ledger_append(actor=f"user:{CYRILLIC_ALICE}", action="test.cyrillic", subject=("tests.thing", "1"),
                             payload={"by": CYRILLIC_ALICE})
    return latin, cyrillic


def test_the_ledger_pages_show_a_non_ascii_actor_with_escapes(auditor, look_alike_entries):
    latin, cyrillic = look_alike_entries
    client = Client()
    client.force_login(auditor)
    listing = client.get("/ledger/?subject_type=tests.thing").content.decode()
    assert "user:\\u0430lice" in listing and f"user:{CYRILLIC_ALICE}" not in listing
    detail = client.get(f"/ledger/{cyrillic.seq}/").content.decode()
    assert "user:\\u0430lice" in detail and CYRILLIC_ALICE not in detail.replace(
        "actor=user%3A%D0%B0lice", "")  # only the (percent-encoded) filter link holds the raw actor
    assert "actor=user%3A%D0%B0lice" in detail


def test_the_actor_filter_matches_exactly(auditor, look_alike_entries):
    client = Client()
    client.force_login(auditor)
    latin_only = client.get("/ledger/", {"actor": "user:alice"}).content.decode()
    assert "test.latin" in latin_only and "test.cyrillic" not in latin_only
    cyrillic_only = client.get("/ledger/", {"actor": f"user:{CYRILLIC_ALICE}"}).content.decode()
    assert "test.cyrillic" in cyrillic_only and "test.latin" not in cyrillic_only
    typed_escape = client.get("/ledger/", {"actor": "user:\\u0430lice"}).content.decode()  # copied from the page
    assert "test.cyrillic" in typed_escape and "test.latin" not in typed_escape


def test_the_admin_ledger_history_shows_escapes(admin_client, look_alike_entries, model):
    ledger_append(actor=f"user:{CYRILLIC_ALICE}", action="test.cyrillic",
                  subject=("governance.registeredmodel", str(model.pk)), payload={})
    page = admin_client.get(f"/admin/governance/registeredmodel/{model.pk}/history/").content.decode()
    assert "user:\\u0430lice" in page and f"user:{CYRILLIC_ALICE}" not in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not uses_postgres(), reason="two writers at once need the real PostgreSQL")
def test_two_look_alikes_created_at_once_cannot_both_pass():
    """The check runs under the ledger's head lock: the second creation waits and sees the first."""
    first_written, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                accounts.user_create(by="user:ada", username="ape")
                first_written.set()
                release.wait(30)
        finally:
            connection.close()

    def second() -> None:
        try:
            accounts.user_create(by="user:ada", username="\u0430\u0440\u0435")  # all-Cyrillic "аре"
            outcome["second"] = "created"
        except Conflict as exc:
            outcome["second"] = exc.code
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_written.wait(30)
    two = threading.Thread(target=second)
    two.start()
    two.join(1.0)
    assert two.is_alive(), "the second creation should wait for the first transaction"
    release.set()
    one.join(30)
    two.join(30)
    assert outcome == {"second": "username_confusable"}
    assert list(get_user_model().objects.filter(username__in=["ape", "\u0430\u0440\u0435"]).values_list(
        "username", flat=True)) == ["ape"]

"""Every user (not only staff) signs in at /accounts/login/; failures are recorded and rate limited."""

from __future__ import annotations

import pytest

from audit.models import LedgerEntry

pytestmark = pytest.mark.django_db

PASSWORD = "test-pass-123456"


@pytest.fixture
def scientist(make_user, team):  # type: ignore[no-untyped-def]
    return make_user("dora-nonstaff", "data_scientist", teams=(team,), staff=False)


def test_a_non_staff_data_scientist_signs_in_and_reaches_the_dashboard(client, scientist):
    assert not scientist.is_staff
    assert client.post("/admin/login/", {"username": scientist.username, "password": PASSWORD}).status_code == 200
    response = client.post("/accounts/login/", {"username": scientist.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert LedgerEntry.objects.filter(action="auth.signed_in", actor=f"user:{scientist.username}").exists()


def test_failed_sign_ins_are_recorded_once_per_window_and_then_refused(client, scientist):
    before = LedgerEntry.objects.filter(action="auth.sign_in_failed").count()
    for _ in range(4):
        response = client.post("/accounts/login/", {"username": scientist.username, "password": "wrong"})
        assert response.status_code == 200
    # The fifth failure at this address reaches the limit: refused for the cool-off, with Retry-After.
    response = client.post("/accounts/login/", {"username": scientist.username, "password": "wrong"})
    assert response.status_code == 429 and int(response["Retry-After"]) == 300
    assert LedgerEntry.objects.filter(action="auth.sign_in_failed").count() == before + 1
    # Even the right password is refused while the cool-off holds (it is not checked at all).
    response = client.post("/accounts/login/", {"username": scientist.username, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed sign-ins" in response.content and b"rate_limited" in response.content
    assert "_auth_user_id" not in client.session

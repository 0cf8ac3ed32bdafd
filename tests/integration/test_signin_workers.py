"""The sign-in limit holds across gunicorn workers (issue 14, class 7): the counts live in the database.

The hand-written throttle it replaced counted in each worker's own cache, so three workers allowed
three times the tries. Here every request opens a new connection (gunicorn's sync workers close
each one), so the tries are spread over the workers, and the fifth failure is refused all the same.
"""

from __future__ import annotations

import re

import httpx
import pytest
from django.contrib.auth import get_user_model

from audit.models import LedgerEntry
from tests.faults.helpers import gunicorn, gunicorn_worker_pids, service_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

PASSWORD = "test-pass-123456"


def _try(client: httpx.Client, path: str, password: str) -> int:
    page = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None, page.text[:300]
    return client.post(path, data={"username": "dana", "password": password,
                                   "csrfmiddlewaretoken": token.group(1)}).status_code


def test_the_sign_in_limit_holds_across_three_gunicorn_workers():
    get_user_model().objects.create_user("dana", password=PASSWORD, is_staff=True)
    with gunicorn(service_env(), workers=3) as (base, process):
        assert len(gunicorn_worker_pids(process.pid)) == 3
        with httpx.Client(base_url=base, timeout=30) as client:
            statuses = [_try(client, ("/accounts/login/", "/admin/login/")[n % 2], f"guess-{n}") for n in range(8)]
            genuine = _try(client, "/accounts/login/", PASSWORD)
    assert statuses == [200] * 4 + [429] * 4
    assert genuine == 429
    failed = [entry for entry in LedgerEntry.objects.filter(action="auth.sign_in_failed")]
    assert [entry.payload["username"] for entry in failed] == ["dana"]  # one entry for all nine failures

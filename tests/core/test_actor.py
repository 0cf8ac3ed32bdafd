"""The actor context: an explicit actor wins, else the request's signed-in user, read when asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.actor import acting_as, current_actor, request_actor
from core.errors import InvalidInput


def test_no_actor_is_refused():
    with pytest.raises(InvalidInput) as excinfo:
        current_actor()
    assert excinfo.value.code == "ledger_actor_missing"


def test_explicit_actor_wins_over_the_request_user_and_is_restored_after_the_block():
    request = SimpleNamespace(user=SimpleNamespace(is_authenticated=True, name="alice"))
    with request_actor(request):
        with acting_as("system:job"):
            assert current_actor() == "system:job"
        assert current_actor() is request.user


def test_request_user_is_read_when_asked_not_when_stored():
    request = SimpleNamespace(user=SimpleNamespace(is_authenticated=False))
    with request_actor(request):
        with pytest.raises(InvalidInput):
            current_actor()
        request.user = SimpleNamespace(is_authenticated=True)  # as DRF does after token authentication
        assert current_actor() is request.user

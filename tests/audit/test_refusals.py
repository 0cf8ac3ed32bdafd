"""Refusals worth keeping reach the ledger once, and nothing of the refused work does."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit.models import LedgerEntry
from audit.refusals import refusal_ensure, refusal_recorded
from core.errors import Conflict, Forbidden, InvalidInput, error_text

pytestmark = pytest.mark.django_db


def refused() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(action="thing.change.refused"))


def attempt(exc: Exception) -> Exception:
    with pytest.raises(type(exc)) as caught:
        with refusal_recorded(actor="user:mallory", action="thing.change", subject=("thing", "7"),
                              attempt={"quorum": 1}):
            with transaction.atomic():
                LedgerEntry.objects.none()  # the refused work would run here
                raise exc
    return caught.value


@pytest.mark.parametrize("exc", [Forbidden("no", code="permission_denied"), Conflict("no", code="conflict")])
def test_a_rule_refusal_is_one_entry_with_its_code(exc: Exception) -> None:
    attempt(exc)
    [entry] = refused()
    assert entry.actor == "user:mallory"
    assert (entry.subject_type, entry.subject_id) == ("thing", "7")
    assert entry.payload == {"code": exc.code, "message": "no", "attempt": {"quorum": 1}}


def test_invalid_input_is_not_recorded() -> None:
    attempt(InvalidInput("typo"))
    assert refused() == []


def test_the_surface_does_not_write_it_twice() -> None:
    exc = attempt(Forbidden("no"))
    assert error_text(exc) == "no [permission_denied]"  # error_text calls the surfaced hooks
    refusal_ensure(exc)
    assert len(refused()) == 1


@pytest.mark.django_db(transaction=True)
def test_a_refusal_rolled_back_with_its_caller_is_written_by_the_surface() -> None:
    with pytest.raises(Forbidden) as caught:
        with transaction.atomic():  # the caller's transaction, as an API view's
            with refusal_recorded(actor="user:mallory", action="thing.change", subject=("thing", "7")):
                raise Forbidden("no")
    assert refused() == []  # the first write was rolled back with the caller
    error_text(caught.value)
    error_text(caught.value)
    assert len(refused()) == 1

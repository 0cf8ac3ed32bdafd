"""The one lock order: the ledger head before any row.

Two writers touch the same row and the ledger head: one locks the row first and then appends, the
other appends first and then locks the row. Through the ledger's entry point (`lock_for_update`,
which takes the head first) both commit. With a plain `select_for_update()` the same two writers
deadlock, and PostgreSQL aborts one of them: that is what the entry point is for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import OperationalError, connection, transaction

from audit.ledger import ledger_append, lock_for_update
from audit.models import LedgerEntry
from tests.conftest import uses_postgres

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration,
              pytest.mark.skipif(not uses_postgres(), reason="SQLite serializes whole transactions (IMMEDIATE)")]


def _race(lock_row: Callable[[Any], Any]) -> list[BaseException]:
    """Run the row-first and the head-first writer against each other; return what they raised."""
    group = Group.objects.create(name=f"lock-order-probe-{lock_row.__name__}")
    row_locked = threading.Event()
    head_locked = threading.Event()
    errors: list[BaseException] = []

    def row_then_head() -> None:
        try:
            with transaction.atomic():
                lock_row(Group.objects).get(pk=group.pk)
                row_locked.set()
                head_locked.wait(2)
                ledger_append(actor="system:test", action="probe.row_first", subject=("auth.group", group.pk))
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    def head_then_row() -> None:
        try:
            with transaction.atomic():
                row_locked.wait(2)
                ledger_append(actor="system:test", action="probe.head_first", subject=("auth.group", group.pk))
                head_locked.set()
                lock_row(Group.objects).get(pk=group.pk)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=row_then_head), threading.Thread(target=head_then_row)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_writers_locking_rows_through_the_ledger_entry_point_do_not_deadlock():
    assert _race(lock_for_update) == []
    assert sorted(LedgerEntry.objects.filter(action__startswith="probe.").values_list("action", flat=True)) == [
        "probe.head_first", "probe.row_first"]


def test_a_plain_row_lock_before_an_append_deadlocks():
    def plain_select_for_update(queryset: Any) -> Any:
        return queryset.select_for_update()

    errors = _race(plain_select_for_update)
    assert len(errors) == 1 and isinstance(errors[0], OperationalError), errors
    assert "deadlock detected" in str(errors[0])
    assert LedgerEntry.objects.filter(action__startswith="probe.").count() == 1  # the aborted writer left nothing

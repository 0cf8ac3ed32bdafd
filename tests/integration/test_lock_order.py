"""Two writers locking a row and the chain head in opposite orders must not deadlock."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from audit.ledger import ledger_append
from audit.models import LedgerEntry
from tests.conftest import uses_postgres

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration,
              pytest.mark.skipif(not uses_postgres(), reason="SQLite serializes whole transactions (IMMEDIATE)")]


def test_row_lock_first_and_head_first_writers_do_not_deadlock():
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="lock-order-probe")
    row_locked = threading.Event()
    head_locked = threading.Event()
    errors: list[BaseException] = []

    def row_then_head() -> None:
        try:
            with transaction.atomic():
                Group.objects.select_for_update().get(pk=group.pk)
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
                Group.objects.select_for_update().get(pk=group.pk)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=row_then_head), threading.Thread(target=head_then_row)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert set(LedgerEntry.objects.filter(action__startswith="probe.").values_list("action", flat=True)) == {
        "probe.row_first", "probe.head_first"}

"""PostgreSQL: a governed save or create is one statement (audit.capture.guarded), and its "before" stays true.

The row's write and its ledger entry are one call of `audit_governed_write`; an UPDATE is guarded
by the values the instance was loaded with, and retried with a fresh read when the row changed.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.capture import guarded
from audit.models import LedgerEntry
from audit.verify import verify_ledger
from core.actor import acting_as
from tests.conftest import uses_postgres
from tests.govtestapp.models import Part, Project, Widget

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(not uses_postgres(), reason="the one-statement save is PostgreSQL's; SQLite keeps "
                                 "the locked path")]

ACTOR = "system:test"


def payloads(subject: Widget, after_seq: int = -1) -> list[dict[str, Any]]:
    rows = (LedgerEntry.objects.filter(subject_type="govtestapp.widget", subject_id=str(subject.pk), seq__gt=after_seq)
            .order_by("seq").values_list("canonical", flat=True))
    return [json.loads(bytes(canonical))["payload"] for canonical in rows]


def last_seq() -> int:
    seq = LedgerEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    return -1 if seq is None else seq


@pytest.mark.django_db(transaction=True)
def test_an_audited_save_and_create_in_autocommit_are_one_statement() -> None:
    with acting_as(ACTOR):
        project = Project.objects.create(name="p")
        with CaptureQueriesContext(connection) as created:
            widget = Widget.objects.create(project=project, name="w", size=1)
        widget.size = 2
        with CaptureQueriesContext(connection) as saved:
            widget.save()
    for captured in (created, saved):
        assert [query["sql"].split("(")[0] for query in captured.captured_queries] == ["SELECT audit_governed_write"]
    assert connection.get_autocommit()
    assert [p["after"] for p in payloads(widget)][-1] == {"size": 2, "updated_at": widget.updated_at.isoformat()}
    assert LedgerEntry.objects.filter(subject_id=str(widget.pk), action="widget.created").count() == 1
    assert verify_ledger().ok


def test_inside_an_outer_transaction_the_save_is_one_statement_too(db: Any) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w", size=1)
        widget.size = 5
        with transaction.atomic(), CaptureQueriesContext(connection) as saved:
            widget.save()
    assert len(saved.captured_queries) == 1
    assert payloads(widget)[-1]["before"]["size"] == 1


def test_a_stale_instance_records_the_true_before_and_overwrites_what_it_holds(db: Any) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w", size=1, description="one")
        stale = Widget.objects.get(pk=widget.pk)
        other = Widget.objects.get(pk=widget.pk)
        other.size = 7
        other.description = "changed elsewhere"
        other.save()
        start = last_seq()
        stale.name = "renamed"
        with CaptureQueriesContext(connection) as captured:
            stale.save()  # writes every field: puts size and description back, a change to record
    # The guard failed once (the row had changed), the row was read again, the retry wrote it.
    assert len(captured.captured_queries) == 3
    [payload] = payloads(widget, start)
    assert payload["before"] == {"name": "w", "size": 7, "description": "changed elsewhere",
                                 "updated_at": payload["before"]["updated_at"]}
    assert {k: payload["after"][k] for k in ("name", "size", "description")} == {
        "name": "renamed", "size": 1, "description": "one"}
    assert verify_ledger(check_state=True).state_problems == []


def test_a_row_changed_by_raw_sql_is_detected_by_the_guard(db: Any) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w", size=1)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE govtestapp_widget SET size = 40 WHERE id = %s", [widget.pk])
        start = last_seq()
        widget.name = "x"
        widget.save()
    [payload] = payloads(widget, start)
    assert payload["before"]["size"] == 40 and payload["after"]["size"] == 1


def test_a_save_of_a_deleted_row_creates_it_again_with_a_created_entry(db: Any) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w", size=1)
        pk = widget.pk
        Widget.objects.filter(pk=pk).delete()
        start = last_seq()
        widget.save()
    assert Widget.objects.filter(pk=pk).exists()
    assert [e.action for e in LedgerEntry.objects.filter(seq__gt=start)] == ["widget.created"]


def test_the_pessimistic_fallback_records_the_true_before(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guarded, "OPTIMISTIC_TRIES", 0)
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w", size=1)
        Widget.objects.filter(pk=widget.pk).update(size=3)
        start = last_seq()
        widget.name = "y"
        widget.save()
    [payload] = payloads(widget, start)
    assert payload["before"]["size"] == 3 and payload["after"]["size"] == 1 and payload["after"]["name"] == "y"


def test_a_failed_append_on_the_server_leaves_the_row_unchanged(db: Any) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w", size=1)
    start = last_seq()
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("ALTER TABLE audit_ledgerentry ADD CONSTRAINT test_refuse CHECK (action <> 'widget.updated')")
    widget.size = 2
    with acting_as(ACTOR), pytest.raises(IntegrityError), transaction.atomic():
        widget.save()
    assert Widget.objects.get(pk=widget.pk).size == 1
    assert last_seq() == start


@pytest.mark.django_db(transaction=True)
def test_a_delete_that_cascades_to_nothing_is_one_statement_with_the_true_before() -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w")
        part = Part.objects.create(widget=widget, label="old")
        Part.objects.filter(pk=part.pk).update(label="changed elsewhere")  # the instance is stale
        pk = part.pk
        start = last_seq()
        with CaptureQueriesContext(connection) as captured:
            assert part.delete() == (1, {"govtestapp.Part": 1})
    assert part.pk is None and not Part.objects.filter(pk=pk).exists()
    # First try refused by the guard, the row read again, the second try deleted it.
    assert [query["sql"].split("(")[0] for query in captured.captured_queries][-1] == "SELECT audit_governed_write"
    assert len(captured.captured_queries) == 3
    [entry] = LedgerEntry.objects.filter(seq__gt=start)
    payload = json.loads(bytes(entry.canonical))["payload"]
    assert (entry.action, entry.subject_id, payload["before"]["label"], payload["after"], payload["state"]) == (
        "part.deleted", str(pk), "changed elsewhere", None, None)
    assert verify_ledger(check_state=True).ok


def test_a_delete_with_cascades_keeps_one_batch(db: Any) -> None:
    with acting_as(ACTOR):
        project = Project.objects.create(name="p")
        widget = Widget.objects.create(project=project, name="w")
        Part.objects.create(widget=widget, label="a")
        start = last_seq()
        project.delete()
    assert sorted(e.action for e in LedgerEntry.objects.filter(seq__gt=start)) == [
        "part.deleted", "project.deleted", "widget.deleted"]
    assert verify_ledger().ok


def test_a_delete_of_a_row_already_gone_records_nothing(db: Any) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w")
        part = Part.objects.create(widget=widget, label="a")
        Part.objects.filter(pk=part.pk).delete()
        start = last_seq()
        assert part.delete() == (0, {})
    assert last_seq() == start


def test_queryset_update_locks_updates_and_returns_before_and_after_in_one_statement(db: Any) -> None:
    from django.db.models import F

    with acting_as(ACTOR):
        widgets = [Widget.objects.create(name=f"w{index}", size=index) for index in range(3)]
        Widget.objects.filter(pk=widgets[0].pk).update(description="x")
        start = last_seq()
        with CaptureQueriesContext(connection) as captured:
            count = Widget.objects.filter(size__lt=2).update(size=F("size") + 10, description="bumped")
    assert count == 2
    statements = [query["sql"] for query in captured.captured_queries]
    assert [sql for sql in statements if "govtestapp_widget" in sql] == [
        next(sql for sql in statements if sql.startswith('UPDATE "govtestapp_widget"'))]
    assert "FOR UPDATE" in statements[-1] and " RETURNING " in statements[-1]
    changes = {entry.subject_id: json.loads(bytes(entry.canonical))["payload"]
               for entry in LedgerEntry.objects.filter(seq__gt=start)}
    assert {pk: (p["before"], {k: v for k, v in p["after"].items() if k != "updated_at"})
            for pk, p in changes.items()} == {
        str(widgets[0].pk): ({"size": 0, "description": "x"}, {"size": 10, "description": "bumped"}),
        str(widgets[1].pk): ({"size": 1, "description": ""}, {"size": 11, "description": "bumped"}),
    }
    assert verify_ledger(check_state=True).ok


def test_update_rows_come_in_binary_only_where_every_column_loads_alike() -> None:
    from governance.models import RegisteredModel

    assert guarded._binary_results(Widget, connection)  # integers, text, numeric, float8, date, uuid, bytea, time
    assert not guarded._binary_results(RegisteredModel, connection)  # a jsonb column: its text is what Django parses


def test_an_update_records_the_same_values_from_binary_rows_as_from_text_rows(db: Any, monkeypatch: Any) -> None:
    import uuid
    from datetime import date
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.db.models import F

    owner = get_user_model().objects.create(username="owner")
    with acting_as(ACTOR):
        project = Project.objects.create(name="p")
        widget = Widget.objects.create(project=project, name="w'\\né", description="line\nnext", size=-3,
                                       price=Decimal("12.50"), ratio=0.1, active=False, released_on=date(2024, 2, 29),
                                       uid=uuid.UUID("12345678-1234-5678-1234-567812345678"), blob=b"\x00\xff",
                                       owner=owner, secret_hash="s")
        start = last_seq()
        rows = Widget.objects.filter(pk=widget.pk)
        fetched: list[int] = []
        fetch = guarded._fetch_binary
        monkeypatch.setattr(guarded, "_fetch_binary", lambda *args: fetched.append(1) or fetch(*args))
        with CaptureQueriesContext(connection) as captured:
            rows.update(size=F("size") + 1, description="binary")
        assert fetched == [1]
        assert any(query["sql"].startswith('UPDATE "govtestapp_widget"') for query in captured.captured_queries)
        monkeypatch.setattr(guarded, "_binary_results", lambda model, connection: False)
        rows.update(size=F("size") + 1, description="text")
        assert fetched == [1]
    binary, text = payloads(widget, start)
    assert binary["after"] == {"size": -2, "description": "binary"}
    assert text["before"] == {"size": -2, "description": "binary"}
    assert text["after"] == {"size": -1, "description": "text"}
    assert {**binary["state"], "size": -1, "description": "text"} == text["state"]
    assert text["state"]["price"] == "12.50" and text["state"]["ratio"] == 0.1 and text["state"]["blob"] == "00ff"
    assert verify_ledger(check_state=True).ok


def test_a_pickled_or_copied_instance_saves_with_the_true_before(db: Any) -> None:
    import copy
    import pickle

    with acting_as(ACTOR):
        Widget.objects.create(name="w", size=1, blob=b"\x00\x01")
        loaded = Widget.objects.get(name="w")
        restored = pickle.loads(pickle.dumps(loaded))  # noqa: S301 - our own bytes
        duplicate = copy.deepcopy(loaded)
        start = last_seq()
        restored.size = 2
        restored.save()
        duplicate.size = 3
        duplicate.save()
    assert [p["before"]["size"] for p in payloads(loaded, start)] == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_two_connections_updating_the_same_row_both_chain_with_true_before_states() -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w", size=0, description="")
    start = last_seq()
    rounds = 25
    failures: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer(name: str, field: str) -> None:
        try:
            with acting_as(f"system:{name}"):
                mine = Widget.objects.get(pk=widget.pk)  # loaded once: stale after the other's saves
                for index in range(rounds):
                    barrier.wait(timeout=30)
                    setattr(mine, field, index + 1 if field == "size" else f"{name}-{index}")
                    mine.save()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=("a", "size")), threading.Thread(target=writer, args=("b", "description"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    entries = list(LedgerEntry.objects.filter(seq__gt=start).order_by("seq"))
    assert {entry.actor for entry in entries} == {"system:a", "system:b"}
    assert sum(entry.actor == "system:a" for entry in entries) == rounds
    assert sum(entry.actor == "system:b" for entry in entries) == rounds
    # Each entry's "before" is the state the previous entry left: no change lost, none invented.
    state = json.loads(bytes(LedgerEntry.objects.filter(seq__lte=start, subject_id=str(widget.pk))
                             .order_by("-seq").values_list("canonical", flat=True)[0]))["payload"]["state"]
    for entry in entries:
        payload = json.loads(bytes(entry.canonical))["payload"]
        assert payload["before"] == {name: state[name] for name in payload["before"]}, entry.seq
        state = {**state, **payload["after"]}
        assert state == payload["state"], entry.seq
    fresh = Widget.objects.get(pk=widget.pk)
    assert (state["size"], state["description"]) == (fresh.size, fresh.description)
    assert verify_ledger(check_state=True).ok


@pytest.mark.parametrize("changes", [
    {},
    {"project": None, "released_on": None, "blob": None, "owner": None},
    {"blob": b"\x00\xffbytes", "price": "12.345", "ratio": 1e-300, "released_on": "2026-02-03"},
    {"name": "it's \\ \"quoted\"", "description": "line\nbreak", "uid": "12345678-1234-5678-1234-567812345678"},
])
def test_the_cached_update_text_is_what_djangos_compiler_builds(db: Any, changes: dict[str, Any]) -> None:
    """The save's UPDATE comes from a cached text (audit.capture.guarded._plain_update): for every
    kind of value it must inline exactly what Django's own UPDATE compiler gives."""
    from datetime import date
    from decimal import Decimal

    from django.db.models import sql

    with acting_as(ACTOR):
        widget = Widget.objects.create(project=Project.objects.create(name="p"), name="w", size=1)
    converted = {"price": Decimal, "released_on": date.fromisoformat}
    for name, value in changes.items():
        setattr(widget, name, converted[name](value) if name in converted and value is not None else value)
    base_qs = Widget._base_manager.using("default")
    values = [(field, None, field.pre_save(widget, False)) for field in Widget._meta.local_concrete_fields
              if not field.primary_key]
    fast = guarded._plain_update(base_qs, connection, widget.pk, values)
    assert fast is not None
    query = base_qs.filter(pk=widget.pk).query.chain(sql.UpdateQuery)
    query.add_update_fields(values)
    text, params = query.get_compiler("default").as_sql()
    assert guarded.compose(connection, *fast) == connection.ops.compose_sql(text, list(params))


def _insert_fields() -> tuple[list[Any], list[Any]]:
    """The fields a create inserts and returns, as Django's `Model._save_table` picks them."""
    meta = Widget._meta
    fields = [field for field in meta.local_concrete_fields if not field.generated and field is not meta.auto_field]
    return fields, list(meta.db_returning_fields)


@pytest.mark.parametrize("values", [
    {"name": "w"},
    {"name": "it's \\ \"quoted\"", "description": "line\nbreak", "project": None, "released_on": None,
     "blob": None, "owner": None},
    {"name": "b", "blob": b"\x00\xffbytes", "price": "12.345", "ratio": 1e-300, "released_on": "2026-02-03",
     "uid": "12345678-1234-5678-1234-567812345678", "size": -2**31},
])
def test_the_cached_insert_text_is_what_djangos_compiler_builds(db: Any, values: dict[str, Any]) -> None:
    """A create's INSERT comes from a cached text (audit.capture.guarded._insert_statement) once the
    compiler has built it for those columns: for every kind of value, what it inlines must be exactly
    what Django's own INSERT compiler gives, auto_now included."""
    from datetime import UTC, date, datetime
    from decimal import Decimal
    from unittest import mock

    from django.db.models import sql

    converted = {"price": Decimal, "released_on": date.fromisoformat}
    fields, returning = _insert_fields()
    moment = datetime(2026, 12, 7, 7, 0, 0, 123456, tzinfo=UTC)

    def widget() -> Widget:  # the same values each time (uid's default would draw a new one)
        return Widget(**{"uid": "00000000-0000-4000-8000-000000000007",
                         **{name: converted[name](value) if name in converted and value is not None else value
                            for name, value in values.items()}})

    with mock.patch("django.utils.timezone.now", return_value=moment):
        query = sql.InsertQuery(Widget)
        query.insert_values(fields, [widget()], raw=False)
        compiler = query.get_compiler("default")
        compiler.returning_fields = returning
        [(text, params)] = compiler.as_sql()
        expected = connection.ops.compose_sql(text, list(params))
        guarded._insert_texts.clear()
        built = guarded._insert_statement(widget(), "default", connection, fields, returning)  # the compiler's
        assert len(guarded._insert_texts) == 1
        fresh = widget()
        cached = guarded._insert_statement(fresh, "default", connection, fields, returning)  # the cached text's
    assert built == expected
    assert cached == expected
    assert fresh.updated_at == moment  # pre_save ran on the instance, as the compiler runs it


def test_a_create_with_an_expression_takes_the_compiler_and_is_not_cached(db: Any) -> None:
    from django.db.models import Value

    fields, returning = _insert_fields()
    guarded._insert_texts.clear()
    with acting_as(ACTOR):
        Widget.objects.create(name="plain", size=1)
        assert len(guarded._insert_texts) == 1
        statement = guarded._insert_statement(Widget(name="e", size=Value(2) + Value(3)), "default", connection,
                                              fields, returning)
        assert "(2 + 3)" in statement
        widget = Widget.objects.create(name="e", size=Value(2) + Value(3))
    assert len(guarded._insert_texts) == 1
    widget.refresh_from_db()
    assert widget.size == 5
    assert payloads(widget)[-1]["state"]["size"] == 5
    assert verify_ledger().ok


def test_an_expression_or_a_filtering_base_manager_takes_the_compiler(db: Any) -> None:
    from django.db.models import F

    with acting_as(ACTOR):
        widget = Widget.objects.create(name="w", size=1)
    size = Widget._meta.get_field("size")
    base_qs = Widget._base_manager.using("default")
    assert guarded._plain_update(base_qs, connection, widget.pk, [(size, None, F("size") + 1)]) is None
    assert guarded._plain_update(base_qs.filter(active=True), connection, widget.pk, [(size, None, 2)]) is None
    with acting_as(ACTOR):
        widget.size = F("size") + 1
        widget.save()
    widget.refresh_from_db()
    assert widget.size == 2
    assert payloads(widget)[-1]["after"]["size"] == 2

"""Every ORM write path of a governed model appends the right ledger entries in the same transaction."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import RequestFactory

from audit.capture.rows import governed_models
from audit.models import LedgerEntry
from audit.verify import verify_ledger
from core.actor import acting_as, current_actor, request_actor
from core.errors import InvalidInput
from tests.govtestapp.models import Part, Project, Shelf, Tag, Widget

pytestmark = pytest.mark.django_db

ACTOR = "system:test"


def entries(after_seq: int = -1) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(seq__gt=after_seq).order_by("seq"))


def last_seq() -> int:
    seq = LedgerEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    return -1 if seq is None else seq


def widget_state(widget: Widget, **overrides: object) -> dict[str, object]:
    state = {
        "project": widget.project_id, "name": widget.name, "description": widget.description,
        "size": widget.size, "price": str(Decimal(widget.price).quantize(Decimal("0.01"))),
        "ratio": widget.ratio, "active": widget.active,
        "released_on": widget.released_on.isoformat() if widget.released_on else None,
        "uid": str(widget.uid), "blob": bytes(widget.blob).hex() if widget.blob is not None else None,
        "owner": widget.owner_id, "secret_hash": "<redacted>" if widget.secret_hash else "",
        "updated_at": widget.updated_at.isoformat(),
    }
    state.update(overrides)
    return state


@pytest.fixture
def project() -> Project:
    with acting_as(ACTOR):
        return Project.objects.create(name="alpha")


def test_governed_models_lists_concrete_subclasses() -> None:
    assert {Project, Widget, Part} <= set(governed_models())
    assert Tag not in governed_models()


def test_create_records_all_fields_with_json_values(project: Project) -> None:
    start = last_seq()
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1", size=3, price=Decimal("1.5"), ratio=0.25,
                                       released_on=date(2024, 2, 29), blob=b"\x00\xff", secret_hash="s3cr3t",
                                       view_count=7)
    [entry] = entries(start)
    assert (entry.action, entry.subject_type, entry.subject_id, entry.actor) == (
        "widget.created", "govtestapp.widget", str(widget.pk), ACTOR)
    expected = widget_state(widget)
    assert expected["price"] == "1.50" and expected["blob"] == "00ff" and expected["released_on"] == "2024-02-29"
    assert entry.payload == {"before": None, "after": expected, "state": expected}
    assert "view_count" not in entry.payload["state"]
    assert "s3cr3t" not in bytes(entry.canonical).decode()


def test_update_records_only_changed_fields(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1", size=1)
        start = last_seq()
        widget.size = 2
        widget.description = "bigger"
        widget.save()
    [entry] = entries(start)
    assert entry.action == "widget.updated"
    before, after = entry.payload["before"], entry.payload["after"]
    assert set(before) == {"size", "description", "updated_at"}
    assert (before["size"], after["size"], before["description"], after["description"]) == (1, 2, "", "bigger")
    assert entry.payload["state"] == widget_state(widget)


def test_update_that_changes_nothing_records_nothing(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1", size=1)
        start = last_seq()
        widget.size = 1
        widget.save(update_fields=["size"])
        Widget.objects.filter(pk=widget.pk).update(size=1)
        Widget.objects.bulk_update([widget], ["size"])
    assert entries(start) == []


def test_before_state_is_read_from_the_database_not_the_stale_instance(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1", size=1)
        stale = Widget.objects.get(pk=widget.pk)
        widget.size = 5
        widget.save(update_fields=["size"])
        start = last_seq()
        stale.size = 9
        stale.save(update_fields=["size"])
    [entry] = entries(start)
    assert entry.payload["before"] == {"size": 5} and entry.payload["after"] == {"size": 9}


def test_delete_records_the_full_before_state(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1")
        state = widget_state(widget)
        pk = widget.pk
        start = last_seq()
        widget.delete()
    [entry] = entries(start)
    assert (entry.action, entry.subject_id) == ("widget.deleted", str(pk))
    assert entry.payload == {"before": state, "after": None, "state": None}


def test_delete_cascades_record_every_governed_row(project: Project) -> None:
    with acting_as(ACTOR):
        first = Widget.objects.create(project=project, name="w1")
        second = Widget.objects.create(project=project, name="w2")
        part = Part.objects.create(widget=first, label="bolt")
        ids = {"project": str(project.pk), "first": str(first.pk), "second": str(second.pk), "part": str(part.pk)}
        start = last_seq()
        project.delete()
    recorded = [(e.action, e.subject_type, e.subject_id) for e in entries(start)]
    assert sorted(recorded) == sorted([
        ("project.deleted", "govtestapp.project", ids["project"]),
        ("widget.deleted", "govtestapp.widget", ids["first"]),
        ("widget.deleted", "govtestapp.widget", ids["second"]),
        ("part.deleted", "govtestapp.part", ids["part"]),
    ])
    part_entry = next(e for e in entries(start) if e.action == "part.deleted")
    assert part_entry.payload["before"] == {"widget": int(ids["first"]), "label": "bolt", "shelf": None}


def test_missing_actor_is_refused_and_nothing_is_written(project: Project) -> None:
    start = last_seq()
    with pytest.raises(InvalidInput) as excinfo:
        Widget.objects.create(project=project, name="anonymous")
    assert excinfo.value.code == "ledger_actor_missing"
    assert not Widget.objects.filter(name="anonymous").exists()
    assert entries(start) == []


@pytest.mark.django_db(transaction=True)
def test_failure_after_the_write_rolls_back_row_and_entry(project: Project) -> None:
    start = last_seq()
    with pytest.raises(RuntimeError), acting_as(ACTOR), transaction.atomic():
        Widget.objects.create(project=project, name="doomed")
        assert entries(start)  # the entry exists inside the transaction
        raise RuntimeError("after the write")
    assert not Widget.objects.filter(name="doomed").exists()
    assert entries(start) == []


def test_save_recorded_names_the_entry_and_merges_extra(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1")
    start = last_seq()
    widget.active = False
    widget.save_recorded(action="widget.approved", by="user:approver", extra={"comment": "looks good"})
    [entry] = entries(start)
    assert (entry.action, entry.actor) == ("widget.approved", "user:approver")
    assert entry.payload["comment"] == "looks good"
    assert entry.payload["before"]["active"] is True and entry.payload["after"]["active"] is False


def test_a_named_action_covers_that_one_save_only(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1")
        other = Widget.objects.create(project=project, name="w2")
        start = last_seq()
        widget.size = 3
        widget.save_recorded(action="widget.approved", by=ACTOR)
        other.size = 4
        other.save()  # an unrelated save right after is not named
        widget.size = 5
        widget.save()  # nor is the same instance's next save
    assert [entry.action for entry in entries(start)] == ["widget.approved", "widget.updated", "widget.updated"]


def test_m2m_set_recorded_names_the_set_change(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1")
    red, blue = Tag.objects.create(name="red"), Tag.objects.create(name="blue")
    start = last_seq()
    widget.m2m_set_recorded("tags", [red, blue], action="widget.tagged", by=ACTOR, extra={"why": "demo"})
    [entry] = entries(start)
    assert (entry.action, entry.payload["why"], entry.payload["m2m"]["operation"]) == ("widget.tagged", "demo", "add")
    assert entry.payload["after"] == {"tags": sorted([red.pk, blue.pk])}


def test_request_user_is_the_actor_resolved_at_write_time(project: Project) -> None:
    user = get_user_model().objects.create_user("alice", password="correct horse battery")
    request = RequestFactory().get("/")
    with request_actor(request):
        from django.contrib.auth.models import AnonymousUser

        request.user = AnonymousUser()
        with pytest.raises(InvalidInput):
            current_actor()
        request.user = user  # as DRF does after token authentication inside the view
        widget = Widget.objects.create(project=project, name="from-request")
    entry = LedgerEntry.objects.filter(subject_id=str(widget.pk), subject_type="govtestapp.widget").get()
    assert entry.actor == "user:alice"


def test_bulk_create_records_one_created_entry_per_row(project: Project) -> None:
    start = last_seq()
    with acting_as(ACTOR):
        created = Widget.objects.bulk_create([Widget(project=project, name=f"b{i}", size=i) for i in range(3)])
    got = entries(start)
    assert [(e.action, e.subject_id) for e in got] == [("widget.created", str(w.pk)) for w in created]
    for entry, widget in zip(got, created, strict=True):
        widget.refresh_from_db()
        assert entry.payload == {"before": None, "after": widget_state(widget), "state": widget_state(widget)}


def test_bulk_create_with_ignore_conflicts_is_refused(project: Project) -> None:
    with acting_as(ACTOR), pytest.raises(InvalidInput) as excinfo:
        Widget.objects.bulk_create([Widget(project=project, name="x")], ignore_conflicts=True)
    assert excinfo.value.code == "governed_bulk_conflicts_unsupported"
    assert not Widget.objects.filter(name="x").exists()


def test_bulk_update_records_changed_rows_only(project: Project) -> None:
    with acting_as(ACTOR):
        a, b = Widget.objects.bulk_create([Widget(project=project, name="a", size=1),
                                           Widget(project=project, name="b", size=2)])
        start = last_seq()
        a.size = 10
        b.size = 2  # unchanged
        assert Widget.objects.bulk_update([a, b], ["size"]) == 2
    [entry] = entries(start)
    assert (entry.action, entry.subject_id) == ("widget.updated", str(a.pk))
    assert entry.payload["before"] == {"size": 1} and entry.payload["after"] == {"size": 10}
    assert entry.payload["state"]["size"] == 10 and entry.payload["state"]["name"] == "a"


def test_queryset_update_records_each_row_with_expressions_resolved(project: Project) -> None:
    from django.db.models import F

    with acting_as(ACTOR):
        a = Widget.objects.create(project=project, name="a", size=1)
        b = Widget.objects.create(project=project, name="b", size=5)
        Widget.objects.create(project=project, name="c", size=100)
        start = last_seq()
        count = Widget.objects.filter(size__lt=50).update(size=F("size") + 1, description="bumped")
    assert count == 2
    got = entries(start)
    assert [(e.action, e.subject_id) for e in got] == [("widget.updated", str(a.pk)), ("widget.updated", str(b.pk))]
    assert got[0].payload["before"] == {"size": 1, "description": ""}
    assert got[0].payload["after"] == {"size": 2, "description": "bumped"}
    assert got[1].payload["after"] == {"size": 6, "description": "bumped"}


def test_queryset_update_records_exactly_the_fields_whose_recorded_value_changed(project: Project) -> None:
    """Equal values in another spelling (1.5 for 1.50, -0.0 for 0.0) are no change; a new date,
    new bytes and a new secret are; an excluded field never is."""
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w", price=Decimal("1.50"), ratio=0.0, blob=b"ab",
                                       secret_hash="s1", released_on=date(2026, 1, 1))
        start = last_seq()
        count = Widget.objects.filter(pk=widget.pk).update(
            price=Decimal("1.5"), ratio=-0.0, blob=b"cd", secret_hash="s2", released_on=date(2026, 1, 2),
            view_count=5, name="w")
        widget.refresh_from_db()
    assert count == 1
    [entry] = entries(start)
    assert entry.payload == {
        "before": {"blob": "6162", "released_on": "2026-01-01", "secret_hash": "<redacted>"},
        "after": {"blob": "6364", "released_on": "2026-01-02", "secret_hash": "<redacted>"},
        "state": widget_state(widget),
    }
    assert widget_state(widget)["price"] == "1.50" and widget_state(widget)["ratio"] == 0.0
    with acting_as(ACTOR):
        Widget.objects.filter(pk=widget.pk).update(price=Decimal("1.500"), view_count=6)  # nothing recorded changes
    assert entries(entry.seq) == []
    assert verify_ledger(check_state=True).ok


def test_related_manager_update_and_remove_are_captured(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a")
        start = last_seq()
        project.widgets.update(size=3)
        project.widgets.remove(widget)  # nullable FK: a bulk UPDATE through the base manager
    got = entries(start)
    assert [e.payload["after"] for e in got] == [{"size": 3}, {"project": None}]


def test_queryset_delete_records_each_row_and_cascades(project: Project) -> None:
    with acting_as(ACTOR):
        a = Widget.objects.create(project=project, name="a")
        b = Widget.objects.create(project=project, name="b")
        part = Part.objects.create(widget=a, label="p")
        keep = Widget.objects.create(project=project, name="keep")
        ids = [str(a.pk), str(b.pk)]
        start = last_seq()
        deleted, _ = Widget.objects.exclude(pk=keep.pk).delete()
    assert deleted == 3
    recorded = sorted((e.action, e.subject_id) for e in entries(start))
    assert recorded == sorted([("widget.deleted", ids[0]), ("widget.deleted", ids[1]), ("part.deleted", str(part.pk))])


def test_cascade_from_an_ungoverned_parent_is_recorded(project: Project) -> None:
    shelf = Shelf.objects.create(name="top")
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a")
        part = Part.objects.create(widget=widget, label="p", shelf=shelf)
        part_id, shelf_id = str(part.pk), shelf.pk
        start = last_seq()
        shelf.delete()
    [entry] = entries(start)
    assert (entry.action, entry.subject_id, entry.payload["before"]["shelf"]) == ("part.deleted", part_id, shelf_id)
    assert not Part.objects.filter(pk=part_id).exists()


def test_cascade_from_an_ungoverned_parent_without_actor_is_refused(project: Project) -> None:
    shelf = Shelf.objects.create(name="top")
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a")
        Part.objects.create(widget=widget, label="p", shelf=shelf)
    with pytest.raises(InvalidInput), transaction.atomic():
        shelf.delete()
    assert Shelf.objects.filter(pk=shelf.pk).exists() and Part.objects.filter(shelf=shelf).exists()


def test_set_null_from_deleting_an_ungoverned_parent_is_recorded(project: Project) -> None:
    user = get_user_model().objects.create_user("owner", password="correct horse battery")
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a", owner=user)
        start = last_seq()
        user.delete()
    entry, deleted = entries(start)  # the SET_NULL, then the account's own entry (governance.signals)
    assert (deleted.action, deleted.subject_type) == ("user.deleted", "auth.user")
    assert (entry.action, entry.subject_id) == ("widget.updated", str(widget.pk))
    assert entry.payload["before"] == {"owner": widget.owner_id} and entry.payload["after"] == {"owner": None}
    assert verify_ledger(check_state=True).state_problems == []


def test_deleting_an_ungoverned_parent_with_no_governed_rows_needs_no_actor() -> None:
    user = get_user_model().objects.create_user("nobody", password="correct horse battery")
    user.delete()
    assert not get_user_model().objects.filter(username="nobody").exists()


def test_m2m_add_remove_clear_record_pk_sets(project: Project) -> None:
    red, green, blue = (Tag.objects.create(name=name) for name in ("red", "green", "blue"))
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a")
        start = last_seq()
        widget.tags.add(red, green)
        widget.tags.add(red)  # already there: no change, no entry
        widget.tags.remove(green)
        widget.tags.clear()
    got = entries(start)
    assert [e.action for e in got] == ["widget.m2m_changed"] * 3
    assert [(e.payload["before"], e.payload["after"], e.payload["m2m"]) for e in got] == [
        ({"tags": []}, {"tags": sorted([red.pk, green.pk])},
         {"field": "tags", "operation": "add", "pks": sorted([red.pk, green.pk])}),
        ({"tags": sorted([red.pk, green.pk])}, {"tags": [red.pk]},
         {"field": "tags", "operation": "remove", "pks": [green.pk]}),
        ({"tags": [red.pk]}, {"tags": []}, {"field": "tags", "operation": "clear", "pks": [red.pk]}),
    ]
    assert got[0].payload["state"] == widget_state(widget)
    assert blue.pk not in got[0].payload["after"]["tags"]


def test_m2m_changes_from_the_other_side_are_recorded_on_the_governed_owner(project: Project) -> None:
    tag = Tag.objects.create(name="red")
    with acting_as(ACTOR):
        a = Widget.objects.create(project=project, name="a")
        b = Widget.objects.create(project=project, name="b")
        start = last_seq()
        tag.widgets.add(a, b)
        tag.widgets.clear()
    got = entries(start)
    assert sorted((e.subject_id, e.payload["m2m"]["operation"]) for e in got) == sorted(
        [(str(a.pk), "add"), (str(b.pk), "add"), (str(a.pk), "clear"), (str(b.pk), "clear")])
    assert all(e.payload["m2m"]["pks"] == [tag.pk] for e in got)


def test_m2m_change_without_actor_is_refused(project: Project) -> None:
    tag = Tag.objects.create(name="red")
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a")
    with pytest.raises(InvalidInput), transaction.atomic():
        widget.tags.add(tag)
    assert not widget.tags.exists()


def test_get_or_create_and_update_or_create_go_through_save(project: Project) -> None:
    start = last_seq()
    with acting_as(ACTOR):
        widget, created = Widget.objects.get_or_create(name="g", defaults={"project": project})
        assert created
        Widget.objects.get_or_create(name="g", defaults={"project": project})
        Widget.objects.update_or_create(name="g", defaults={"size": 4})
    assert [e.action for e in entries(start)] == ["widget.created", "widget.updated"]
    assert entries(start)[1].payload["after"]["size"] == 4


def test_admin_change_is_recorded_with_the_admin_user_as_actor(client, project: Project) -> None:  # type: ignore[no-untyped-def]
    admin_user = get_user_model().objects.create_superuser("root", "root@example.org", "correct horse battery")
    tag = Tag.objects.create(name="red")
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a", size=1)
    client.force_login(admin_user)
    start = last_seq()
    response = client.post(f"/admin/govtestapp/widget/{widget.pk}/change/", {
        "name": "a", "description": "edited in admin", "size": "2", "price": "0.00", "ratio": "0.0",
        "active": "on", "tags": [str(tag.pk)],
    })
    assert response.status_code == 302, response.content[:2000]
    got = entries(start)
    assert [(e.action, e.actor) for e in got] == [("widget.updated", "user:root"), ("widget.m2m_changed", "user:root")]
    assert got[0].payload["after"]["description"] == "edited in admin"
    assert got[1].payload["after"] == {"tags": [tag.pk]}


def test_anonymous_request_cannot_write(client, project: Project) -> None:  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/")
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    with request_actor(request), pytest.raises(InvalidInput) as excinfo:
        Widget.objects.create(project=project, name="anon")
    assert excinfo.value.code == "ledger_actor_missing"


def test_explicit_actor_wins_over_the_request_user(project: Project) -> None:
    user = get_user_model().objects.create_user("bob", password="correct horse battery")
    request = RequestFactory().get("/")
    request.user = user
    with request_actor(request), acting_as("system:nightly"):
        widget = Widget.objects.create(project=project, name="a")
    entry = LedgerEntry.objects.get(subject_type="govtestapp.widget", subject_id=str(widget.pk))
    assert entry.actor == "system:nightly"


def test_state_check_passes_after_orm_writes(project: Project) -> None:
    tag = Tag.objects.create(name="red")
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a", blob=b"\x01", price=Decimal("2"))
        widget.tags.add(tag)
        Widget.objects.filter(pk=widget.pk).update(size=7)
        Widget.objects.create(project=project, name="b").delete()
    result = verify_ledger(check_state=True)
    assert result.ok, result.state_problems
    assert result.state_problems == []


def test_raw_sql_update_is_named_by_the_state_check(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a", size=1)
        other = Widget.objects.create(project=project, name="b", size=1)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Widget._meta.db_table} SET size = 99 WHERE id = %s", [widget.pk])
    result = verify_ledger(check_state=True)
    assert not result.ok
    assert result.state_problems == [{
        "subject_type": "govtestapp.widget", "subject_id": str(widget.pk),
        "message": "row differs from its last ledger entry in: size", "fields": ["size"],
    }]
    assert str(other.pk) not in {p["subject_id"] for p in result.state_problems}


def test_state_check_flags_unrecorded_inserts_deletes_and_resurrections(project: Project) -> None:
    table = Widget._meta.db_table
    with acting_as(ACTOR):
        kept = Widget.objects.create(project=project, name="kept")
        gone = Widget.objects.create(project=project, name="gone")
        revived = Widget.objects.create(project=project, name="revived")
        revived_pk = revived.pk
        revived.delete()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [gone.pk])
        cursor.execute(
            f"INSERT INTO {table} (id, project_id, name, description, size, price, ratio, active, uid, "
            f"secret_hash, view_count, updated_at) SELECT %s, project_id, name, description, size, price, ratio, "
            f"active, uid, secret_hash, view_count, updated_at FROM {table} WHERE id = %s", [revived_pk, kept.pk])
        cursor.execute(
            f"INSERT INTO {table} (project_id, name, description, size, price, ratio, active, uid, "
            f"secret_hash, view_count, updated_at) SELECT project_id, 'sneaky', description, size, price, ratio, "
            f"active, uid, secret_hash, view_count, updated_at FROM {table} WHERE id = %s", [kept.pk])
    sneaky = Widget.objects.get(name="sneaky")
    problems = {(p["subject_id"], p["message"]) for p in verify_ledger(check_state=True).state_problems}
    assert problems == {
        (str(gone.pk), "row is gone but its deletion was never recorded"),
        (str(revived_pk), "row exists but its last ledger entry records its deletion"),
        (str(sneaky.pk), "row has no ledger entry (written outside the ORM)"),
    }


def test_service_entries_without_state_do_not_hide_the_recorded_state(project: Project) -> None:
    from audit.ledger import ledger_append

    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a", size=1)
        with transaction.atomic():
            ledger_append(actor=ACTOR, action="widget.exported", subject=widget, payload={"to": "regulator"})
            ledger_append(actor=ACTOR, action="widget.reviewed", subject=widget, payload={"state": "approved"})
    assert verify_ledger(check_state=True).state_problems == []
    Widget.objects.filter(pk=widget.pk).update  # noqa: B018 - the path exists; raw SQL below bypasses it
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Widget._meta.db_table} SET name = 'z' WHERE id = %s", [widget.pk])
    assert [p["fields"] for p in verify_ledger(check_state=True).state_problems] == [["name"]]


def test_verify_ledger_command_with_state_exits_1_on_drift(project: Project) -> None:
    from django.core.management import call_command

    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a", size=1)
    call_command("verify_ledger", "--state")  # intact: returns normally
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Widget._meta.db_table} SET size = 2 WHERE id = %s", [widget.pk])
    with pytest.raises(SystemExit) as excinfo:
        call_command("verify_ledger", "--state")
    assert excinfo.value.code == 1


def test_redacted_field_change_is_recorded_without_its_value(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a", secret_hash="first-hash")
        start = last_seq()
        widget.secret_hash = "second-hash"
        widget.save()
        widget.view_count = 5  # excluded: no entry at all
        widget.save(update_fields=["view_count"])
    got = entries(start)
    assert len(got) == 1
    assert got[0].payload["before"]["secret_hash"] == "<redacted>" == got[0].payload["after"]["secret_hash"]
    assert b"first-hash" not in bytes(got[0].canonical) and b"second-hash" not in bytes(got[0].canonical)


@pytest.mark.django_db(transaction=True)
def test_a_writer_that_waited_for_a_concurrent_one_records_its_committed_state_as_before() -> None:
    import threading

    from django.db import connection as main_connection

    with acting_as(ACTOR):
        project = Project.objects.create(name="concurrent")
        widget = Widget.objects.create(project=project, name="w", size=1)
    stale = Widget.objects.get(pk=widget.pk)  # loaded before the other writer commits
    holding = threading.Event()
    release = threading.Event()
    failures: list[BaseException] = []

    def other_writer() -> None:
        from django.db import connection as thread_connection

        try:
            with acting_as("system:other"), transaction.atomic():
                mine = Widget.objects.get(pk=widget.pk)
                mine.size = 2
                mine.save()  # holds the ledger head until this transaction commits
                holding.set()
                release.wait(10)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            failures.append(exc)
            holding.set()
        finally:
            thread_connection.close()

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert holding.wait(10)
    threading.Timer(0.5, release.set).start()
    stale.size = 3
    with acting_as(ACTOR):
        stale.save()  # waits for the other writer, then must see size=2, not the stale 1
    writer.join(10)
    assert not failures
    got = list(LedgerEntry.objects.filter(subject_type="govtestapp.widget", subject_id=str(widget.pk)).order_by("seq"))
    assert [(e.actor, e.payload["before"]["size"] if e.payload["before"] else None, e.payload["after"]["size"])
            for e in got] == [(ACTOR, None, 1), ("system:other", 1, 2), (ACTOR, 2, 3)]
    main_connection.close()


@pytest.mark.urls("tests.govtestapp.urls")
def test_token_authenticated_api_write_is_recorded_as_the_token_user(client) -> None:  # type: ignore[no-untyped-def]
    get_user_model().objects.create_user("pipeline", password="correct horse battery")
    response = client.post("/govtest/widgets/", {"name": "via-api"}, content_type="application/json",
                           HTTP_AUTHORIZATION="Test pipeline")
    assert response.status_code == 201, response.content
    entry = LedgerEntry.objects.get(subject_type="govtestapp.widget", subject_id=str(response.json()["id"]))
    assert (entry.action, entry.actor) == ("widget.created", "user:pipeline")


@pytest.mark.urls("tests.govtestapp.urls")
def test_unauthenticated_api_write_is_refused_before_any_row(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/govtest/widgets/", {"name": "anon"}, content_type="application/json")
    # The test scheme declares no WWW-Authenticate challenge, so DRF answers 403, not 401.
    assert response.status_code == 403 and response.json()["code"] == "not_authenticated"
    assert not Widget.objects.filter(name="anon").exists()


@pytest.mark.parametrize("before_state", ["guarded", "locked"])
def test_an_append_between_head_lock_and_capture_does_not_fork_the_chain(
        project: Project, before_state: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection
    from django.db.models.signals import post_save

    from audit.capture import models as governed
    from audit.ledger import ledger_append

    monkeypatch.setattr(governed, "BEFORE_STATE", before_state)

    def note_save(sender, instance, **kwargs):  # type: ignore[no-untyped-def]
        ledger_append(actor="system:signal", action="widget.noticed", subject=instance, payload={})

    post_save.connect(note_save, sender=Widget, dispatch_uid="test-nested-append")
    try:
        with acting_as(ACTOR):
            widget = Widget.objects.create(project=project, name="a")
            start = last_seq()
            widget.size = 2
            widget.save()  # head locked first; the signal appends before the captured entry
    finally:
        post_save.disconnect(dispatch_uid="test-nested-append", sender=Widget)
    # The one-statement save (PostgreSQL) appends at its UPDATE, before post_save; the locked
    # path holds the head from before the UPDATE and appends after the signal's own append.
    one_statement = before_state == "guarded" and connection.vendor == "postgresql"
    expected = ["widget.updated", "widget.noticed"] if one_statement else ["widget.noticed", "widget.updated"]
    assert [e.action for e in entries(start)] == expected
    result = verify_ledger()
    assert result.ok, result.problems


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["save", "create", "update", "bulk_create", "bulk_update", "delete",
                                  "queryset_delete", "m2m_add"])
def test_a_failed_ledger_append_rolls_the_write_back(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from audit.capture import guarded, record

    with acting_as(ACTOR):
        project = Project.objects.create(name="p")
        widget = Widget.objects.create(project=project, name="w", size=1)
    tag = Tag.objects.create(name="red")
    start = last_seq()

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("ledger unavailable")

    monkeypatch.setattr(record, "ledger_append_many", refuse)
    # The one-statement save (PostgreSQL); tests/audit/test_guarded_save.py fails its append on the server.
    monkeypatch.setattr(guarded, "ledger_governed_write", refuse)
    writes = {
        "save": lambda: (setattr(widget, "size", 2), widget.save()),
        "create": lambda: Widget.objects.create(project=project, name="new"),
        "update": lambda: Widget.objects.filter(pk=widget.pk).update(size=2),
        "bulk_create": lambda: Widget.objects.bulk_create([Widget(project=project, name="new")]),
        "bulk_update": lambda: (setattr(widget, "size", 2), Widget.objects.bulk_update([widget], ["size"])),
        "delete": lambda: widget.delete(),
        "queryset_delete": lambda: Widget.objects.filter(pk=widget.pk).delete(),
        "m2m_add": lambda: widget.tags.add(tag),
    }
    with acting_as(ACTOR), pytest.raises(RuntimeError):
        writes[path]()
    monkeypatch.undo()
    fresh = Widget.objects.get(pk=widget.pk)
    assert (fresh.size, Widget.objects.count(), list(fresh.tags.all())) == (1, 1, [])
    assert entries(start) == []


# --- Many-to-many sets in the state check, and targets deleted under them ----------------------

def test_state_check_names_raw_sql_edits_of_a_many_to_many_set(project: Project) -> None:
    red, green, blue = (Tag.objects.create(name=name) for name in ("red", "green", "blue"))
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a")
        other = Widget.objects.create(project=project, name="b")
        widget.tags.add(red, green)
        other.tags.add(red)
    assert verify_ledger(check_state=True).state_problems == []
    through = Widget.tags.through._meta.db_table
    with connection.cursor() as cursor:  # someone widens a set behind the ORM's back
        cursor.execute(f"INSERT INTO {through} (widget_id, tag_id) VALUES (%s, %s)", [widget.pk, blue.pk])
    problems = verify_ledger(check_state=True).state_problems
    assert problems == [{"subject_type": "govtestapp.widget", "subject_id": str(widget.pk),
                         "message": "many-to-many tags differs from its last ledger entry", "fields": ["tags"]}]
    with connection.cursor() as cursor:  # ... and quietly empties another one
        cursor.execute(f"DELETE FROM {through} WHERE widget_id = %s", [other.pk])
    assert {p["subject_id"] for p in verify_ledger(check_state=True).state_problems} == {str(widget.pk), str(other.pk)}
    with acting_as(ACTOR):  # the ORM puts the recorded set back in line
        widget.tags.remove(blue)
        other.tags.add(red)
    assert verify_ledger(check_state=True).state_problems == []


def test_deleting_a_target_records_it_leaving_each_owners_set(project: Project) -> None:
    red, green = Tag.objects.create(name="red"), Tag.objects.create(name="green")
    with acting_as(ACTOR):
        a = Widget.objects.create(project=project, name="a")
        b = Widget.objects.create(project=project, name="b")
        a.tags.add(red, green)
        b.tags.add(red)
        start = last_seq()
        red_pk = red.pk
        red.delete()  # Tag is not governed; the collector drops the through rows without m2m_changed
    got = entries(start)
    assert sorted((e.subject_id, e.action) for e in got) == [(str(a.pk), "widget.m2m_changed"),
                                                             (str(b.pk), "widget.m2m_changed")]
    by_owner = {e.subject_id: e.payload for e in got}
    assert by_owner[str(a.pk)]["before"] == {"tags": sorted([red_pk, green.pk])}
    assert by_owner[str(a.pk)]["after"] == {"tags": [green.pk]}
    assert by_owner[str(b.pk)]["after"] == {"tags": []}
    assert by_owner[str(b.pk)]["m2m"] == {"field": "tags", "operation": "target_deleted", "pks": [red_pk]}
    assert verify_ledger(check_state=True).state_problems == []


def test_deleting_a_held_target_without_an_actor_is_refused_but_an_unheld_one_needs_none(project: Project) -> None:
    held, loose = Tag.objects.create(name="held"), Tag.objects.create(name="loose")
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="a")
        widget.tags.add(held)
    with pytest.raises(InvalidInput), transaction.atomic():
        held.delete()
    assert Tag.objects.filter(pk=held.pk).exists() and list(widget.tags.all()) == [held]
    loose.delete()
    assert not Tag.objects.filter(pk=loose.pk).exists()


def test_each_fields_converter_records_what_field_value_records():
    # The per-field fast paths (rows._converter) must give exactly field_value's result.
    import math
    from datetime import UTC, datetime, timedelta, timezone

    from audit.capture.rows import field_value, instance_state, model_spec

    spec = model_spec(Widget)
    samples = [None, "", "x", True, False, 0, 2**53 - 1, 2**53, -(2**60), 0.5, -0.0, 1e300, math.inf, -math.inf,
               math.nan, Decimal("1.5"), Decimal("12.345"), date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
               datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))), b"\x00\xff"]
    for field_spec, convert in zip(spec.fields, spec.converters, strict=True):
        for value in samples:
            try:
                expected = field_value(field_spec, value)
            except Exception as exc:  # the field refuses the value: the converter must refuse it too
                with pytest.raises(type(exc)):
                    convert(value)
                continue
            got = convert(value)
            assert repr(got) == repr(expected), (field_spec.name, value)
    widget = Widget(name="w", ratio=math.inf, size=2**60, released_on=date(2026, 1, 2))
    state = instance_state(widget)
    assert (state["ratio"], state["size"], state["released_on"]) == ("inf", str(2**60), "2026-01-02")
    assert state == {field_spec.name: field_value(field_spec, widget.__dict__.get(field_spec.attname))
                     for field_spec in spec.fields}

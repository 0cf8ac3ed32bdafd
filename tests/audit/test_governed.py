"""Every ORM write path of a governed model appends the right ledger entries in the same transaction."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import RequestFactory

from audit.errors import InvalidInput
from audit.governed import acting_as, current_actor, governed_models, ledger_action, request_actor
from audit.models import LedgerEntry
from tests.govtestapp.models import Part, Project, Tag, Widget

pytestmark = pytest.mark.django_db(transaction=True)

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
        start = last_seq()
        project.delete()
    recorded = {(e.action, e.subject_type, e.subject_id) for e in entries(start)}
    assert recorded == {
        ("project.deleted", "govtestapp.project", str(project.pk) if project.pk else recorded and
         next(e.subject_id for e in entries(start) if e.action == "project.deleted")),
        ("widget.deleted", "govtestapp.widget", str(first.pk)),
        ("widget.deleted", "govtestapp.widget", str(second.pk)),
        ("part.deleted", "govtestapp.part", str(part.pk)),
    }
    assert len(entries(start)) == 4


def test_missing_actor_is_refused_and_nothing_is_written(project: Project) -> None:
    start = last_seq()
    with pytest.raises(InvalidInput) as excinfo:
        Widget.objects.create(project=project, name="anonymous")
    assert excinfo.value.code == "ledger_actor_missing"
    assert not Widget.objects.filter(name="anonymous").exists()
    assert entries(start) == []


def test_failure_after_the_write_rolls_back_row_and_entry(project: Project) -> None:
    start = last_seq()
    with pytest.raises(RuntimeError), acting_as(ACTOR), transaction.atomic():
        Widget.objects.create(project=project, name="doomed")
        assert entries(start)  # the entry exists inside the transaction
        raise RuntimeError("after the write")
    assert not Widget.objects.filter(name="doomed").exists()
    assert entries(start) == []


def test_ledger_action_names_the_entry_and_merges_extra(project: Project) -> None:
    with acting_as(ACTOR):
        widget = Widget.objects.create(project=project, name="w1")
        start = last_seq()
        with ledger_action("widget.approved", comment="looks good"):
            widget.active = False
            widget.save()
    [entry] = entries(start)
    assert entry.action == "widget.approved"
    assert entry.payload["comment"] == "looks good"
    assert entry.payload["before"]["active"] is True and entry.payload["after"]["active"] is False


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


def test_pk_types_are_json(project: Project) -> None:
    assert isinstance(uuid.uuid4(), uuid.UUID)
    assert connection.vendor in {"sqlite", "postgresql"}

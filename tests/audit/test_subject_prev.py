"""subject_prev: each entry names the previous entry about its subject, on every append path.

The field is in the hashed bytes; `verify_ledger` recomputes it from the chain, so an append that
named the wrong previous entry, or an entry after the cut-over that lacks the field, is caught.
"""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from audit import ledger
from audit.ledger import checkpoint_create, draft, ledger_append, ledger_append_many
from audit.models import LedgerEntry, LedgerHead
from audit.verify import verify_ledger

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_ledger")]

SUBJECTS = [("t.a", "1"), ("t.b", "1"), ("t.a", "2"), ("t.a", "1")]


def _drafts(count: int, tag: str) -> list[ledger.EntryDraft]:
    return [draft(actor="system:test", action=f"test.{tag}", subject=SUBJECTS[index % len(SUBJECTS)],
                  payload={"index": index}) for index in range(count)]


def _expected_previous() -> list[tuple[int, int | None]]:
    latest: dict[tuple[str, str], int] = {}
    expected = []
    for seq, subject_type, subject_id in LedgerEntry.objects.order_by("seq").values_list(
            "seq", "subject_type", "subject_id"):
        expected.append((seq, latest.get((subject_type, subject_id))))
        latest[(subject_type, subject_id)] = seq
    return expected


def test_every_append_path_records_the_previous_entry_about_the_same_subject():
    # Single appends, small batches (the server function on PostgreSQL), large batches (COPY on
    # PostgreSQL), repeated subjects inside one batch and across paths.
    ledger_append(actor="system:test", action="test.one", subject=("t.a", "1"))
    with transaction.atomic():
        ledger_append_many(_drafts(9, "small"), checkpoint=False)
    with transaction.atomic():
        ledger_append_many(_drafts(ledger.SERVER_APPEND_MAX + 9, "large"), checkpoint=False)
    ledger_append(actor="system:test", action="test.one", subject=("t.b", "1"))
    ledger_append(actor="system:test", action="test.one", subject=("t.new", "x"))
    stored = list(LedgerEntry.objects.order_by("seq"))
    assert [(entry.seq, entry.subject_prev) for entry in stored] == _expected_previous()
    assert stored[0].subject_prev is None and stored[-1].subject_prev is None
    assert stored[1].subject_prev == 0  # the first of the batch follows the single append
    assert all(b'"subject_prev":' in bytes(entry.canonical) for entry in stored)
    result = verify_ledger()
    assert result.ok, result.problems


def test_a_fresh_ledger_holds_subject_prev_from_seq_zero():
    assert LedgerHead.objects.get(pk=1).subject_prev_from == 0


def test_an_append_that_names_the_wrong_previous_entry_is_caught(monkeypatch):
    ledger_append_many(_drafts(ledger.SERVER_APPEND_MAX + 1, "good"), checkpoint=False)
    # A bent append path (the client path, forced on PostgreSQL by the batch size) that forgets
    # the history of one subject: the bytes and hashes are self-consistent, the history is not.
    real = ledger._previous_by_subject

    def forgetful(cursor, drafts):  # type: ignore[no-untyped-def]
        found = real(cursor, drafts)
        found.pop(("t.a", "2"), None)
        return found

    monkeypatch.setattr(ledger, "_previous_by_subject", forgetful)
    first_bad = LedgerEntry.objects.count() + 2  # the third draft is about t.a/2
    ledger_append_many(_drafts(ledger.SERVER_APPEND_MAX + 1, "bent"), checkpoint=False)
    previous_about_a2 = LedgerEntry.objects.filter(subject_type="t.a", subject_id="2",
                                                   seq__lt=first_bad).order_by("-seq").first()
    result = verify_ledger()
    assert not result.ok
    assert result.first_bad_seq == first_bad
    assert result.problems[0].code == "subject_prev_mismatch"
    assert result.problems[0].message.endswith(f"about t.a:2, but the previous entry about it is seq {previous_about_a2.seq}")


def test_entries_before_the_cut_over_lack_the_field_and_after_it_must_have_it(monkeypatch):
    real_splice = ledger._splice

    def legacy_splice(prefix, subject, *, prev_hash, recorded_at, seq, subject_prev):  # type: ignore[no-untyped-def]
        # What the code before the cut-over wrote: no subject_prev at all.
        spliced = real_splice(prefix, subject, prev_hash=prev_hash, recorded_at=recorded_at, seq=seq,
                              subject_prev=subject_prev)
        cut = spliced.rindex(b',"subject_prev":')
        return spliced[:cut] + b"}"

    monkeypatch.setattr(ledger, "_splice", legacy_splice)
    ledger_append_many(_drafts(ledger.SERVER_APPEND_MAX + 1, "legacy"), checkpoint=False)
    cut_over = LedgerEntry.objects.count()
    LedgerHead.objects.filter(pk=1).update(subject_prev_from=cut_over)
    monkeypatch.setattr(ledger, "_splice", real_splice)
    ledger_append_many(_drafts(5, "new"), checkpoint=False)
    first_new = LedgerEntry.objects.get(seq=cut_over)
    # The first new entry about a subject names the last legacy entry about it.
    assert first_new.subject_prev == LedgerEntry.objects.filter(
        subject_type=first_new.subject_type, subject_id=first_new.subject_id, seq__lt=cut_over).order_by("-seq")[0].seq
    assert "subject_prev" not in LedgerEntry.objects.get(seq=cut_over - 1).document
    result = verify_ledger()
    assert result.ok, result.problems

    # Moving the cut-over back (claiming legacy entries had the field) is caught at the first one...
    LedgerHead.objects.filter(pk=1).update(subject_prev_from=cut_over - 3)
    result = verify_ledger()
    assert (result.first_bad_seq, result.problems[0].code) == (cut_over - 3, "subject_prev_missing")
    # ... and so is moving it forward past entries that hold the field.
    LedgerHead.objects.filter(pk=1).update(subject_prev_from=cut_over + 2)
    result = verify_ledger()
    assert (result.first_bad_seq, result.problems[0].code) == (cut_over, "subject_prev_before_cut_over")


def test_verification_from_a_checkpoint_checks_subject_prev_across_the_start(monkeypatch):
    ledger_append_many(_drafts(8, "before"), checkpoint=False)
    base = checkpoint_create()
    ledger_append_many(_drafts(8, "after"), checkpoint=False)
    second = checkpoint_create()
    result = verify_ledger(from_tree_size=base.tree_size)
    assert result.ok, result.problems
    assert result.started_from == base.tree_size

    # The first entry after the start about t.b/1 must name the last one before it.
    real = ledger._previous_by_subject

    def forgetful(cursor, drafts):  # type: ignore[no-untyped-def]
        found = real(cursor, drafts)
        found.pop(("t.b", "1"), None)
        return found

    monkeypatch.setattr(ledger, "_previous_by_subject", forgetful)
    size = LedgerEntry.objects.count()
    ledger_append_many([draft(actor="system:test", action="test.bent", subject=("t.b", "1"))]
                       * (ledger.SERVER_APPEND_MAX + 1), checkpoint=False)
    checkpoint_create()
    result = verify_ledger(from_tree_size=second.tree_size)
    assert (result.first_bad_seq, result.problems[0].code) == (size, "subject_prev_mismatch")
    document = json.loads(bytes(LedgerEntry.objects.get(seq=size).canonical))
    assert document["subject_prev"] is None

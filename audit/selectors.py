"""Reads of the ledger, for the API, admin and pages.

The layer above may narrow what one caller reads (a service token restricted to some models reads
only the entries about them): it registers `fn(user, entries) -> entries` with
`register_entry_filter` at start-up, since audit cannot import it. With nothing registered every
reader of the ledger reads all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from audit.models import Checkpoint, LedgerEntry, SigningKey
from core.errors import NotFound

LEDGER_READ_PERMISSION = "audit.view_ledgerentry"


def can_read_ledger(user) -> bool:  # type: ignore[no-untyped-def]
    """Auditors and better hold `audit.view_ledgerentry` through their role group."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(LEDGER_READ_PERMISSION))


EntryFilter = Callable[[Any, QuerySet[LedgerEntry]], QuerySet[LedgerEntry]]
_entry_filter: list[EntryFilter] = []


def register_entry_filter(fn: EntryFilter) -> None:
    """Make `fn(user, entries) -> entries` narrow what `user` reads of the ledger."""
    _entry_filter[:] = [fn]


def unregister_entry_filter() -> None:
    _entry_filter.clear()


def readable_entries(user: Any, entries: QuerySet[LedgerEntry]) -> QuerySet[LedgerEntry]:
    """`entries` as `user` may read them (None: a trusted in-process read, unfiltered)."""
    if user is None or not _entry_filter:
        return entries
    narrowed = _entry_filter[0](user, entries)
    if not isinstance(narrowed, QuerySet) or narrowed.model is not LedgerEntry:
        return entries.none()
    return narrowed


def ledger_entry_list(*, action: str | None = None, action_prefix: str | None = None,
                      subject_type: str | None = None, subject_id: str | None = None, actor: str | None = None,
                      since: datetime | None = None, until: datetime | None = None,
                      user: Any = None) -> QuerySet[LedgerEntry]:
    entries = readable_entries(user, LedgerEntry.objects.all()).order_by("-seq")
    if action:
        entries = entries.filter(action=action)
    if action_prefix:
        entries = entries.filter(action__startswith=action_prefix)
    if subject_type:
        entries = entries.filter(subject_type=subject_type)
    if subject_id:
        entries = entries.filter(subject_id=subject_id)
    if actor:
        entries = entries.filter(actor=actor)
    if since:
        entries = entries.filter(recorded_at__gte=since)
    if until:
        entries = entries.filter(recorded_at__lt=until)
    return entries


def ledger_entry_get(*, seq: int, user: Any = None) -> LedgerEntry:
    entry = readable_entries(user, LedgerEntry.objects.filter(seq=seq)).first()
    if entry is None:
        raise NotFound(f"No ledger entry with seq {seq}.", code="ledger_entry_not_found", extra={"seq": seq})
    return entry


def checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.select_related("key").order_by("-tree_size").first()


def checkpoint_at(tree_size: int) -> Checkpoint | None:
    return Checkpoint.objects.filter(tree_size=tree_size).first()


def signing_key_list() -> QuerySet[SigningKey]:
    return SigningKey.objects.all().order_by("valid_from", "pk")


def signing_key_get(*, key_id: str) -> SigningKey:
    key = SigningKey.objects.filter(key_id=key_id.lower()).order_by("pk").first()
    if key is None:
        raise NotFound(f"No signing key with key id {key_id}.", code="signing_key_not_found", extra={"key_id": key_id})
    return key

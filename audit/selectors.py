"""Reads of the ledger, for the API, admin and pages."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from audit.models import Checkpoint, LedgerEntry, SigningKey
from core.errors import NotFound

LEDGER_READ_PERMISSION = "audit.view_ledgerentry"


def can_read_ledger(user) -> bool:  # type: ignore[no-untyped-def]
    """Auditors and better hold `audit.view_ledgerentry` through their role group."""
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(LEDGER_READ_PERMISSION))


def ledger_entry_list(*, action: str | None = None, action_prefix: str | None = None,
                      subject_type: str | None = None, subject_id: str | None = None, actor: str | None = None,
                      since: datetime | None = None, until: datetime | None = None) -> QuerySet[LedgerEntry]:
    entries = LedgerEntry.objects.all().order_by("-seq")
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


def ledger_entry_get(*, seq: int) -> LedgerEntry:
    entry = LedgerEntry.objects.filter(seq=seq).first()
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

"""Refusals worth keeping: the ledger records an attempt that a rule stopped, with its code.

A service wraps the work that a rule may refuse in `refusal_recorded(actor=, action=, subject=)`.
When that work raises a `Forbidden` or `Conflict` (a rule, not a typo), the attempt is appended as
`<action>.refused` with the error's code and message, after the refused work has rolled back: the
ledger keeps the attempt and nothing of its effect.

Where the caller's own transaction also rolls back (an API view runs in one transaction), the
entry written inside it is lost with it; the surface that shows the error (`core.errors.surfaced`,
called by the API handler, the admin and the pages once every transaction has ended) writes it
again. It is written once: the surface first checks that the first write did not survive.

Only authenticated callers reach a service, so an anonymous caller cannot grow the ledger here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from audit.ledger import EntryDraft, draft, ledger_append_many
from audit.models import LedgerEntry
from core.errors import Conflict, Forbidden, ServiceError

REFUSED_SUFFIX = ".refused"
_DRAFT = "_refusal_draft"
_WRITTEN = "_refusal_written"


def worth_recording(exc: ServiceError) -> bool:
    """A rule refused the attempt (403 or 409); invalid input (400) is not worth an entry."""
    return isinstance(exc, (Forbidden, Conflict))


def _append(exc: ServiceError) -> None:
    if connection.needs_rollback:
        return  # the caller's transaction is broken; the surface writes it after the rollback
    entry = ledger_append_many([getattr(exc, _DRAFT)], checkpoint=False)[0]
    setattr(exc, _WRITTEN, (entry.seq, bytes(entry.entry_hash)))


@contextmanager
def refusal_recorded(*, actor: Any, action: str, subject: Any, attempt: dict[str, Any] | None = None
                     ) -> Iterator[None]:
    """Record `<action>.refused` if the enclosed work is refused by a rule, then re-raise."""
    try:
        yield
    except ServiceError as exc:
        if worth_recording(exc) and not hasattr(exc, _DRAFT):
            payload = {"code": exc.code, "message": exc.message, "attempt": attempt or {}}
            setattr(exc, _DRAFT, draft(actor=actor, action=action + REFUSED_SUFFIX, subject=subject,
                                       payload=payload))
            _append(exc)
        raise


def refusal_draft(exc: ServiceError) -> EntryDraft | None:
    return getattr(exc, _DRAFT, None)


def refusal_ensure(exc: ServiceError) -> None:
    """The surface's half: write the refusal again if the first write was rolled back."""
    if refusal_draft(exc) is None:
        return
    written = getattr(exc, _WRITTEN, None)
    if written is not None and LedgerEntry.objects.filter(seq=written[0], entry_hash=written[1]).exists():
        return
    _append(exc)

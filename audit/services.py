"""Ledger services other apps and tasks call: checkpoints and recorded verification."""

from __future__ import annotations

from django.db import transaction

from audit.ledger import checkpoint_create, ledger_append
from audit.models import Checkpoint
from audit.verify import VerificationResult, verify_ledger


def checkpoint_scheduled() -> Checkpoint:
    """Sign the current head (idempotent when nothing was appended since the last one)."""
    return checkpoint_create()


def ledger_verify_and_record(*, actor: str, check_state: bool = True) -> VerificationResult:
    """Verify the whole ledger and record the outcome as a ledger entry."""
    result = verify_ledger(check_state=check_state)
    action = "ledger.verified" if result.ok else "ledger.verification_failed"
    payload = {
        "ok": result.ok, "entries_checked": result.entries_checked, "tree_size": result.tree_size,
        "root_hash": result.root_hash, "checkpoints_checked": result.checkpoints_checked,
        "first_bad_seq": result.first_bad_seq, "elapsed_ms": int(result.elapsed_s * 1000),
        "problems": [{"seq": p.seq, "code": p.code, "message": p.message} for p in result.problems[:20]],
        "state_problems": result.state_problems[:50],
    }
    with transaction.atomic():
        ledger_append(actor=actor, action=action, subject=("audit.ledger", "main"), payload=payload)
    return result

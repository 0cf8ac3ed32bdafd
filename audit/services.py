"""Ledger services other apps and tasks call: signing keys, checkpoints and recorded verification."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import keys, tsa
from audit.ledger import checkpoint_create, ledger_append
from audit.models import Checkpoint, CheckpointTimestamp, SigningKey
from audit.verify import VerificationResult, verify_ledger
from core.errors import Conflict


def checkpoint_scheduled() -> Checkpoint:
    """Sign the current head (idempotent when nothing was appended since the last one)."""
    return checkpoint_create()


def checkpoint_timestamp(*, checkpoint: Checkpoint, actor: str = "system:tsa") -> CheckpointTimestamp | None:
    """An RFC 3161 token over the checkpoint's signed note from the configured TSA, kept append-only.

    None when no TSA is configured; the stored token when the checkpoint has one already. The TSA
    is asked outside any transaction; the token and its ledger entry are written in one.
    Raises Unavailable (tsa_*) when the TSA does not answer or its token does not verify.
    """
    if not tsa.configured():
        return None
    existing = checkpoint.timestamps.order_by("gen_time").first()
    if existing is not None:
        return existing
    token = tsa.request_token(checkpoint.note)
    token_sha256 = hashlib.sha256(token.token).hexdigest()
    with transaction.atomic():
        record = CheckpointTimestamp.objects.create(
            checkpoint=checkpoint, token=token.token, token_sha256=token_sha256, gen_time=token.gen_time,
            serial_number=token.serial_number, policy=token.policy, tsa_url=settings.TSA_URL,
            created_at=timezone.now())
        ledger_append(actor=actor, action="checkpoint.timestamped", subject=("audit.checkpoint", str(checkpoint.tree_size)),
                      payload={"tree_size": checkpoint.tree_size, "note_sha256": token.imprint_sha256.hex(),
                               "token_sha256": token_sha256, "gen_time": token.gen_time.isoformat(),
                               "serial_number": token.serial_number, "policy": token.policy})
    return record


def checkpoint_timestamp_daily(*, actor: str = "system:ledger_timestamp_task") -> CheckpointTimestamp | None:
    """The beat's daily job: sign the current head (if new) and time-stamp that checkpoint."""
    if not tsa.configured():
        return None
    return checkpoint_timestamp(checkpoint=checkpoint_create(), actor=actor)


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


def signing_key_create(*, purpose: str, actor: str = "system:signing_key") -> SigningKey:
    """Create the key file for `purpose` and register its public key; refuse if one exists."""
    path = keys.key_file_for(purpose)
    if path.exists():
        raise Conflict(f"A signing key file already exists at {path}; use rotate.", code="signing_key_exists")
    private_key = Ed25519PrivateKey.generate()
    with transaction.atomic():
        record = keys.register_public_key(private_key, purpose=purpose)
        ledger_append(actor=actor, action="signing_key.created", subject=record,
                      payload={"purpose": purpose, "key_id": record.key_id, "vkey": record.vkey})
        keys.write_private_key(path, private_key)
    return record


def signing_key_rotate(*, purpose: str, actor: str = "system:signing_key") -> SigningKey:
    """Replace the key file with a new key; the old key's window closes and its signatures stay valid.

    The new key file is written atomically, inside the transaction that records the rotation.
    """
    path = keys.key_file_for(purpose)
    old_private = keys.read_private_key(path)
    new_private = Ed25519PrivateKey.generate()
    with transaction.atomic():
        old = keys.register_public_key(old_private, purpose=purpose)
        now = timezone.now()
        SigningKey.objects.filter(pk=old.pk).update(valid_until=now)
        record = keys.register_public_key(new_private, purpose=purpose)
        ledger_append(actor=actor, action="signing_key.rotated", subject=record,
                      payload={"purpose": purpose, "key_id": record.key_id, "vkey": record.vkey,
                               "replaces_key_id": old.key_id})
        keys.write_private_key(path, new_private)
    return record


def signing_key_ensure(*, purpose: str) -> SigningKey:
    """Create the key if there is none yet (used by the embedded setup); otherwise register the file's key."""
    path = keys.key_file_for(purpose)
    if not path.exists():
        return signing_key_create(purpose=purpose)
    return keys.register_public_key(keys.read_private_key(path), purpose=purpose)

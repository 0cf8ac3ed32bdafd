"""Pipeline keys: a service account's own Ed25519 keys for the envelopes it signs."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import transaction
from django.utils import timezone

from audit import dsse
from audit.ledger import actor_label, ledger_append, lock_for_update
from audit.models import SigningKey
from core.errors import Conflict, Forbidden, InvalidInput
from lineage import visibility
from lineage.models import PipelineKey
from lineage.services.graph import acting_owner, iso_time


def parse_public_key(text: str) -> bytes:
    """Raw 32-byte Ed25519 public key from a PEM (SubjectPublicKeyInfo) or base64 of the raw bytes."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("public_key is required.", code="pipeline_key_invalid", extra={"field": "public_key"})
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError, TypeError):
            raise InvalidInput("public_key is not a valid PEM public key.", code="pipeline_key_invalid",
                               extra={"field": "public_key"})
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidInput("Only Ed25519 keys are accepted.", code="pipeline_key_unsupported",
                               extra={"field": "public_key"})
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("public_key is neither PEM nor base64.", code="pipeline_key_invalid",
                           extra={"field": "public_key"})
    if len(raw) != dsse.ED25519_PUBLIC_KEY_BYTES:
        raise InvalidInput("A raw Ed25519 public key has 32 bytes.", code="pipeline_key_invalid",
                           extra={"field": "public_key"})
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise InvalidInput("public_key is not an Ed25519 key.", code="pipeline_key_invalid",
                           extra={"field": "public_key"})
    return raw


def pipeline_key_register(*, owner: Any, public_key: str, name: str = "", owner_team: str | None = None) -> PipelineKey:
    """Register a service account's own Ed25519 key for the envelopes it signs; the key belongs to its team."""
    team = acting_owner(owner, owner_team)
    raw = parse_public_key(public_key)
    keyid = dsse.envelope_keyid(raw)
    with transaction.atomic():
        if PipelineKey.objects.filter(keyid=keyid).exists() or SigningKey.objects.filter(public_key=raw).exists():
            raise Conflict("This public key is already registered.", code="pipeline_key_exists",
                           extra={"keyid": keyid})
        key = PipelineKey.objects.create(owner=owner, name=name[:200], public_key=raw, keyid=keyid, owner_team=team)
        ledger_append(actor=owner, action="lineage.pipeline_key.registered", subject=key,
                      payload={"keyid": keyid, "owner": actor_label(owner), "owner_team": team, "name": key.name,
                               "public_key": base64.b64encode(raw).decode("ascii")})
    return key


def pipeline_key_revoke(*, key: PipelineKey, by: Any) -> PipelineKey:
    """Revoke a key: envelopes it signs are refused from now on; those stored before stay as they are."""
    if not visibility.is_system_actor(by):
        ensure_can_revoke(key=key, user=by)
    with transaction.atomic():
        key = lock_for_update(PipelineKey.objects).get(pk=key.pk)
        if key.revoked_at is not None:
            raise Conflict("This key is already revoked.", code="pipeline_key_already_revoked",
                           extra={"keyid": key.keyid})
        key.revoked_at = timezone.now()
        key.revoked_by = actor_label(by)
        key.save(update_fields=["revoked_at", "revoked_by"])
        ledger_append(actor=by, action="lineage.pipeline_key.revoked", subject=key,
                      payload={"keyid": key.keyid, "revoked_at": iso_time(key.revoked_at)})
    return key



def ensure_can_revoke(*, key: PipelineKey, user: Any) -> None:
    """Owners revoke their own keys; anyone else needs `lineage.change_pipelinekey` and to write for the key's team."""
    if key.owner_id == getattr(user, "pk", None):
        return
    if not (user.has_perm("lineage.change_pipelinekey") and visibility.may_write_owner(user, key.owner_team)):
        raise Forbidden("Only the key's owner (or its team's key keepers) may revoke it.", code="permission_denied")

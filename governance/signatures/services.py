"""Approvers' signing credentials and signed decisions: register a passkey or an Ed25519 key (each a
ledger entry), issue the single-use challenge of an approval statement, and verify a signed decision.

Only the person a credential signs for registers or revokes it: an admin, a superuser or a
colleague who could register a key for someone else could then sign approvals in their name.
WebAuthn is checked with the `webauthn` library; DSSE with `audit.dsse`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import dsse
from audit.ledger import actor_label, format_time, lock_for_update
from audit.refusals import refusal_recorded
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from governance.models import ApprovalRequest
from governance.permissions import is_active_user
from governance.signatures import statement as st
from governance.signatures.models import ApproverCredential, ChallengePurpose, CredentialKind, SigningChallenge

PEM_MAX_CHARS = 4096


class CredentialSelfOnly(Forbidden):
    code = "approver_credential_self_only"


class ChallengeUsed(Conflict):
    code = "approval_challenge_used"


class ChallengeExpired(Conflict):
    code = "approval_challenge_expired"


def _self_only(*, by: Any, user: Any, action: str, subject: Any) -> None:
    """A credential is registered and revoked by the person it signs for, and by nobody else."""
    with refusal_recorded(actor=by, action=action, subject=subject,
                          attempt={"for_user": getattr(user, "pk", None)}):
        if isinstance(by, str) or not is_active_user(by) or by.pk != getattr(user, "pk", None):
            raise CredentialSelfOnly("Only the person a signing credential signs for registers or revokes it.")
        if hasattr(by, "service_account"):
            raise CredentialSelfOnly("Service accounts do not sign approvals.")


def _credential_save(credential: ApproverCredential, *, by: Any) -> ApproverCredential:
    try:
        with transaction.atomic():
            credential.save_recorded(action="approver_credential.registered", by=by)
    except IntegrityError:
        raise Conflict("This credential is registered already.", code="approver_credential_exists") from None
    return credential


def _ed25519_raw(public_key: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key given as PEM (SubjectPublicKeyInfo) or base64 of the raw key."""
    if not isinstance(public_key, str) or not public_key.strip() or len(public_key) > PEM_MAX_CHARS:
        raise InvalidInput("'public_key' must be a PEM or base64 Ed25519 public key.", code="approver_credential_invalid")
    text = public_key.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
            if not isinstance(key, Ed25519PublicKey):
                raise InvalidInput("The key is not Ed25519.", code="approver_credential_invalid")
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        raw = base64.b64decode(text, validate=True)
    except (ValueError, UnicodeEncodeError, binascii.Error):
        raise InvalidInput("The public key cannot be read.", code="approver_credential_invalid") from None
    if len(raw) != dsse.ED25519_PUBLIC_KEY_BYTES:
        raise InvalidInput("A raw Ed25519 public key is 32 bytes.", code="approver_credential_invalid")
    return raw


def approver_key_register(*, by: Any, user: Any, public_key: str, label: str = "") -> ApproverCredential:
    """Register `user`'s own Ed25519 public key, for DSSE-signed decisions from a terminal."""
    _self_only(by=by, user=user, action="approver_credential.register",
               subject=("signatures.approvercredential", f"user:{getattr(user, 'pk', '')}"))
    raw = _ed25519_raw(public_key)
    credential = ApproverCredential(user=user, kind=CredentialKind.ED25519, credential_id=dsse.envelope_keyid(raw),
                                    public_key=st.b64url(raw), algorithm=st.COSE_ALG_EDDSA, label=str(label)[:100],
                                    registered_at=timezone.now())
    return _credential_save(credential, by=by)


def _new_challenge(*, user: Any, purpose: str, request: ApprovalRequest | None = None,
                   statement: bytes | None = None, nonce: str | None = None) -> SigningChallenge:
    now = timezone.now()
    nonce = nonce or st.b64url(secrets.token_bytes(32))
    challenge = st.challenge_for(statement) if statement is not None else secrets.token_bytes(32)
    return SigningChallenge.objects.create(
        purpose=purpose, user=user, request=request, nonce=nonce, challenge=challenge.hex(),
        statement=(statement or b"").decode("utf-8"), created_at=now,
        expires_at=now + timedelta(seconds=settings.APPROVAL_CHALLENGE_TTL_S))


def _consume(*, user: Any, purpose: str, challenge: bytes, request: ApprovalRequest | None = None) -> SigningChallenge:
    """The unused, unexpired challenge issued to `user` for these bytes, marked used (in the caller's transaction)."""
    found = lock_for_update(SigningChallenge.objects).filter(challenge=challenge.hex(), purpose=purpose,
                                                              user=user).first()
    if found is None or (request is not None and found.request_id != request.pk):
        raise InvalidInput("No challenge was issued to you for this statement.", code="approval_challenge_unknown")
    if found.used_at is not None:
        raise ChallengeUsed("This challenge was used already; ask for a new one.")
    if found.expires_at <= timezone.now():
        raise ChallengeExpired("This challenge expired; ask for a new one.")
    found.used_at = timezone.now()
    found.save(update_fields=["used_at"])
    return found


def signing_challenges_purge(*, now: Any = None) -> int:
    """Delete unused challenges that expired more than one APPROVAL_CHALLENGE_TTL_S ago (beat job); how many.

    Challenges are working state, not evidence: a signed decision (governed, in the ledger) keeps the
    statement and all that verifies it, and no row or ledger entry refers to a challenge. Used ones are kept
    (a replay is answered `approval_challenge_used`); an expired one is kept one more TTL, so a
    signer who answers late is told it expired rather than that it never existed.
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.APPROVAL_CHALLENGE_TTL_S)
    deleted, _ = SigningChallenge.objects.filter(used_at__isnull=True, expires_at__lt=cutoff).delete()
    return deleted


# --- Passkeys (WebAuthn) ----------------------------------------------------------------------

def approver_passkey_options(*, by: Any) -> dict[str, Any]:
    """The WebAuthn creation options for a new passkey of `by` (its challenge single use and expiring)."""
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialDescriptor,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    _self_only(by=by, user=by, action="approver_credential.register",
               subject=("signatures.approvercredential", f"user:{getattr(by, 'pk', '')}"))
    challenge = _new_challenge(user=by, purpose=ChallengePurpose.REGISTRATION)
    existing = ApproverCredential.objects.filter(user=by, kind=CredentialKind.PASSKEY, revoked_at__isnull=True)
    options = generate_registration_options(
        rp_id=settings.WEBAUTHN_RP_ID, rp_name=settings.WEBAUTHN_RP_NAME,
        user_id=str(by.pk).encode("ascii"), user_name=by.get_username(),
        challenge=bytes.fromhex(challenge.challenge), timeout=settings.APPROVAL_CHALLENGE_TTL_S * 1000,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=st.b64url_decode(c.credential_id)) for c in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED, user_verification=UserVerificationRequirement.PREFERRED),
        # ES256 first: every authenticator has it; Ed25519 where one prefers it.
        supported_pub_key_algs=[st.COSE_ALG_ES256, st.COSE_ALG_EDDSA])  # type: ignore[list-item]
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


def _client_challenge(response: Any) -> bytes:
    """The challenge the authenticator signed, read from the clientDataJSON of a credential response."""
    try:
        client_data = json.loads(st.b64url_decode(response["response"]["clientDataJSON"]))
        return st.b64url_decode(client_data["challenge"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise InvalidInput("The WebAuthn response has no readable clientDataJSON.",
                           code="approval_signature_invalid") from None


def approver_passkey_register(*, by: Any, user: Any, response: dict[str, Any], label: str = "") -> ApproverCredential:
    """Register the passkey that answered `by`'s creation options (attestation checked by `webauthn`)."""
    from webauthn import verify_registration_response
    from webauthn.helpers.exceptions import WebAuthnException

    _self_only(by=by, user=user, action="approver_credential.register",
               subject=("signatures.approvercredential", f"user:{getattr(user, 'pk', '')}"))
    with transaction.atomic():
        challenge = _consume(user=by, purpose=ChallengePurpose.REGISTRATION, challenge=_client_challenge(response))
        try:
            verified = verify_registration_response(
                credential=response, expected_challenge=bytes.fromhex(challenge.challenge),
                expected_rp_id=settings.WEBAUTHN_RP_ID, expected_origin=settings.WEBAUTHN_ORIGIN,
                supported_pub_key_algs=[st.COSE_ALG_EDDSA, st.COSE_ALG_ES256])  # type: ignore[list-item]
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"The passkey registration does not verify: {exc}",
                               code="approver_credential_invalid") from None
        from webauthn.helpers import decode_credential_public_key

        algorithm = int(decode_credential_public_key(verified.credential_public_key).alg)
        credential = ApproverCredential(
            user=user, kind=CredentialKind.PASSKEY, credential_id=st.b64url(verified.credential_id),
            public_key=st.b64url(verified.credential_public_key), algorithm=algorithm, aaguid=str(verified.aaguid),
            attestation_format=str(getattr(verified.fmt, "value", verified.fmt)), rp_id=settings.WEBAUTHN_RP_ID,
            label=str(label)[:100], sign_count=verified.sign_count, registered_at=timezone.now())
        return _credential_save(credential, by=by)


def approver_credential_revoke(*, by: Any, credential: ApproverCredential) -> ApproverCredential:
    """Revoke one's own credential: decisions it signed before stay valid, later ones are refused."""
    _self_only(by=by, user=credential.user, action="approver_credential.revoke", subject=credential)
    with transaction.atomic():
        credential = lock_for_update(ApproverCredential.objects).get(pk=credential.pk)
        if credential.revoked_at is None:
            credential.revoked_at = timezone.now()
            credential.save_recorded(action="approver_credential.revoked", by=by)
    return credential


def approver_credential_get(*, user: Any, credential_id: int) -> ApproverCredential:
    found = ApproverCredential.objects.filter(pk=credential_id, user_id=getattr(user, "pk", None)).first()
    if found is None:
        raise NotFound(f"No signing credential {credential_id} of yours.", code="approver_credential_not_found")
    return found


# --- The statement and signed decisions -------------------------------------------------------

def approval_statement_issue(*, by: Any, request: ApprovalRequest, decision: str, comment: str,
                             policy: dict[str, Any]) -> SigningChallenge:
    """A new statement for `by`'s decision on `request` under `policy`, with a fresh nonce (single use,
    expiring). The caller (approvals.approval_challenge_issue) has checked that `by` may decide."""
    nonce = st.b64url(secrets.token_bytes(32))
    fields = {"type": st.STATEMENT_TYPE, "log": settings.LEDGER_ORIGIN, "request": request.pk,
              "version_manifest_digest": request.version.manifest_digest, "policy_digest": st.policy_digest(policy),
              "decision": decision, "comment": comment, "approver": actor_label(by), "nonce": nonce,
              "time": format_time(timezone.now())}
    return _new_challenge(user=by, purpose=ChallengePurpose.APPROVAL, request=request,
                          statement=st.statement_bytes(fields), nonce=nonce)


def _mismatch(field: str) -> InvalidInput:
    return InvalidInput(f"The signed statement's '{field}' is not the one of this decision.",
                        code="approval_statement_mismatch", extra={"field": field})


def _active_credential(*, by: Any, kind: str, credential_id: str) -> ApproverCredential:
    # Looked up among the approver's own credentials only: a colleague's key never signs for them.
    credential = lock_for_update(ApproverCredential.objects).filter(
        user_id=by.pk, kind=kind, credential_id=credential_id, revoked_at__isnull=True).first()
    if credential is None:
        raise InvalidInput("The signature is not by an active credential you registered.",
                           code="approval_credential_unknown")
    return credential


def _check_statement(statement: bytes, *, request: ApprovalRequest, decision: str, comment: str,
                     policy: dict[str, Any], by: Any) -> dict[str, Any]:
    try:
        fields = st.statement_parse(statement)
    except st.StatementError as exc:
        raise InvalidInput(f"The signed statement is malformed: {exc}.", code="approval_statement_mismatch") from None
    expected = {"log": settings.LEDGER_ORIGIN, "request": request.pk, "decision": decision, "comment": comment,
                "version_manifest_digest": request.version.manifest_digest, "approver": actor_label(by),
                "policy_digest": st.policy_digest(policy)}
    for field, value in expected.items():
        if fields.get(field) != value:
            raise _mismatch(field)
    return fields


def _verify_dsse(*, by: Any, envelope: Any) -> tuple[dict[str, Any], bytes]:
    if not isinstance(envelope, dict):
        raise InvalidInput("'envelope' must be a DSSE JSON envelope.", code="approval_signature_invalid")
    signatures = envelope.get("signatures")
    keyids = [s.get("keyid") for s in signatures if isinstance(s, dict)] if isinstance(signatures, list) else []
    if len(keyids) != 1 or not isinstance(keyids[0], str):
        raise InvalidInput("The envelope must carry exactly one signature, with its keyid.",
                           code="approval_signature_invalid")
    credential = _active_credential(by=by, kind=CredentialKind.ED25519, credential_id=keyids[0])
    key = Ed25519PublicKey.from_public_bytes(st.b64url_decode(credential.public_key))
    try:
        payload_type, payload = dsse.verify_envelope(envelope, {credential.credential_id: key})
    except dsse.DSSEError as exc:
        raise InvalidInput(f"The envelope does not verify: {exc}.", code="approval_signature_invalid") from None
    if payload_type != st.STATEMENT_PAYLOAD_TYPE:
        raise InvalidInput(f"The envelope's payloadType must be {st.STATEMENT_PAYLOAD_TYPE}.",
                           code="approval_signature_invalid")
    material = {"method": "dsse", "credential_id": credential.credential_id, "envelope": envelope}
    return material, payload


def _verify_passkey(*, by: Any, statement: bytes, assertion: Any) -> dict[str, Any]:
    from webauthn import verify_authentication_response
    from webauthn.helpers import parse_authentication_credential_json
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        parsed = parse_authentication_credential_json(assertion if isinstance(assertion, str)
                                                      else json.dumps(assertion))
    except (WebAuthnException, ValueError, TypeError) as exc:
        raise InvalidInput(f"The WebAuthn assertion cannot be read: {exc}", code="approval_signature_invalid") from None
    credential = _active_credential(by=by, kind=CredentialKind.PASSKEY, credential_id=st.b64url(parsed.raw_id))
    try:
        verified = verify_authentication_response(
            credential=parsed, expected_challenge=st.challenge_for(statement), expected_rp_id=credential.rp_id,
            expected_origin=settings.WEBAUTHN_ORIGIN, credential_public_key=st.b64url_decode(credential.public_key),
            credential_current_sign_count=credential.sign_count)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"The passkey signature does not verify: {exc}", code="approval_signature_invalid") from None
    ApproverCredential.objects.filter(pk=credential.pk).update(sign_count=verified.new_sign_count)
    return {"method": "passkey", "credential_id": credential.credential_id, "rp_id": credential.rp_id,
            "origin": settings.WEBAUTHN_ORIGIN, "statement": base64.b64encode(statement).decode("ascii"),
            "authenticator_data": st.b64url(parsed.response.authenticator_data),
            "client_data_json": st.b64url(parsed.response.client_data_json),
            "signature": st.b64url(parsed.response.signature)}


def decision_signature_verify(*, by: Any, request: ApprovalRequest, decision: str, comment: str,
                              policy: dict[str, Any], signature: dict[str, Any]) -> dict[str, Any]:
    """Check a signed decision and consume its challenge (in the caller's transaction); return what
    the decision's ledger entry keeps so that anyone can verify it offline.

    `signature` is {"method": "dsse", "envelope": {...}} or {"method": "passkey", "assertion": {...}}
    (the PublicKeyCredential JSON of navigator.credentials.get)."""
    method = signature.get("method") if isinstance(signature, dict) else None
    if method == "dsse":
        envelope = signature.get("envelope")
        challenge = st.challenge_for(_unverified_payload(envelope))
    elif method == "passkey":
        assertion = signature.get("assertion")
        if not isinstance(assertion, dict):
            raise InvalidInput("'assertion' must be the WebAuthn credential JSON.", code="approval_signature_invalid")
        challenge = _client_challenge(assertion)
    else:
        raise InvalidInput("'signature.method' must be 'passkey' or 'dsse'.", code="invalid_input",
                           extra={"field": "signature.method"})
    # Single use first: a replay is named as one, whatever else is wrong with it. A refusal below
    # rolls the caller's transaction back, and the challenge with it.
    issued = _consume(user=by, purpose=ChallengePurpose.APPROVAL, challenge=challenge, request=request)
    statement = issued.statement.encode("utf-8")
    if method == "dsse":
        material, signed = _verify_dsse(by=by, envelope=envelope)
        if signed != statement:
            raise _mismatch("statement")
    else:
        material = _verify_passkey(by=by, statement=statement, assertion=assertion)
    _check_statement(statement, request=request, decision=decision, comment=comment, policy=policy, by=by)
    return {**material, "statement_sha256": hashlib.sha256(statement).hexdigest()}


def _unverified_payload(envelope: Any) -> bytes:
    """The payload of an envelope, before its signature is checked: only to find the challenge it answers."""
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    if not isinstance(payload, str):
        raise InvalidInput("'envelope' must be a DSSE JSON envelope.", code="approval_signature_invalid")
    try:
        return base64.b64decode(payload, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidInput("The envelope's payload is not base64.", code="approval_signature_invalid") from None

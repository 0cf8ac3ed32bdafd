"""Pages of signed approvals: one's own signing credentials (register a passkey there), and what the
model page's decide form needs to sign a decision with a passkey (static/js/passkeys.js)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.errors import InvalidInput
from governance import policies
from governance.selectors import approval_policy_for
from governance.signatures.selectors import own_credentials, own_passkey_ids


def decide_context(*, user: Any, model: Any, pending: list[dict[str, Any]], can_decide: bool) -> dict[str, Any]:
    """The relying party, the user's passkeys, and each pending request's signing requirement (the
    stricter of its snapshot and the policy in force, as `approval_decide` applies it); only for
    someone who may decide, in a fixed number of queries."""
    if not can_decide or not pending:
        return {"webauthn_rp_id": settings.WEBAUTHN_RP_ID, "passkey_ids": "[]"}
    current = approval_policy_for(model)
    now = current.snapshot() | {"risk_tier": model.risk_tier} if current else {"risk_tier": model.risk_tier}
    for item in pending:
        snapshot = policies.stricter(item["request"].policy_snapshot, now)
        item["signed_approval"] = snapshot.get("signed_approval") or "none"
    return {"webauthn_rp_id": settings.WEBAUTHN_RP_ID, "passkey_ids": json.dumps(own_passkey_ids(user=user))}


def posted_signature(raw: str, dsse_envelope: str = "") -> dict[str, Any] | None:
    """What the decide form sends: a DSSE envelope pasted from the terminal, the passkey assertion
    passkeys.js wrote into `signature`, or nothing (unsigned)."""
    if dsse_envelope.strip():
        try:
            envelope = json.loads(dsse_envelope)
        except ValueError:
            raise InvalidInput("The DSSE envelope is not JSON.", code="approval_signature_invalid") from None
        return {"method": "dsse", "envelope": envelope}
    if not raw:
        return None
    try:
        signature = json.loads(raw)
    except ValueError:
        raise InvalidInput("The signature sent with the form is not JSON.", code="approval_signature_invalid") from None
    if not isinstance(signature, dict):
        raise InvalidInput("The signature sent with the form is not an object.", code="approval_signature_invalid")
    return signature


@require_GET
@login_required
def signing(request: HttpRequest) -> HttpResponse:
    """Your signing credentials: register a passkey here; an Ed25519 key for DSSE through the API."""
    return render(request, "pages/signing.html", {
        "nav": "signing", "credentials": list(own_credentials(user=request.user)),
        "webauthn_rp_id": settings.WEBAUTHN_RP_ID,
    })


def approver_signature_evidence(*, entry: Any, checkpoint: Any) -> dict[str, Any]:
    """For a signed decision's entry: its credential's registration entry, with an inclusion proof
    against the same checkpoint, so that *Verify here* (static/js/verify.js) checks the approver's
    signature from evidence alone. Empty for any other entry."""
    import base64

    from audit import ledger
    from audit.models import LedgerEntry
    from governance.signatures.models import ApproverCredential

    if entry.subject_type != "governance.approvaldecision":
        return {}
    state = (json.loads(bytes(entry.canonical)).get("payload") or {}).get("state") or {}
    signature = state.get("signature") if isinstance(state, dict) else None
    if not isinstance(signature, dict) or not isinstance(signature.get("credential_id"), str):
        return {}
    credential_pk = ApproverCredential.objects.filter(credential_id=signature["credential_id"]).values_list(
        "pk", flat=True).first()
    registered = LedgerEntry.objects.filter(
        subject_type="signatures.approvercredential", subject_id=str(credential_pk),
        action="approver_credential.registered").order_by("seq").first() if credential_pk else None
    if registered is None:
        return {"credential": None}
    proof = None
    if checkpoint is not None and registered.seq < checkpoint.tree_size:
        proof = [base64.b64encode(bytes(node)).decode("ascii")
                 for node in ledger.inclusion_proof(leaf_index=registered.seq, tree_size=checkpoint.tree_size)]
    return {"credential": {"seq": registered.seq, "canonical_b64": base64.b64encode(bytes(registered.canonical)).decode(),
                           "entry_hash_hex": bytes(registered.entry_hash).hex(), "proof_b64": proof}}

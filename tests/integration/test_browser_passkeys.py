"""Signed approvals in a real browser: Debian's chromium through Playwright, with Chromium's virtual
authenticator (CDP `WebAuthn.addVirtualAuthenticator`) standing in for a security key.

An approver registers a passkey on the signing page, approves a pending request with it on the
model page (WebAuthn get over SHA-256 of the issued statement), the bundle exported for the model
passes verify.py with --require-signed-approvals, and the same bundle with one byte of the
signature changed (the manifest re-signed, the entry re-hashed) fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "test-pass-123456"  # tests.fixtures.make_user's

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile's install-test target installs it
    pytestmark.append(pytest.mark.skip(reason="Debian chromium is not installed at /usr/bin/chromium"))


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def relying_party(settings, live_server) -> str:  # type: ignore[no-untyped-def]
    """The live server is the relying party: http://localhost:<port> is a secure context for WebAuthn."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.WEBAUTHN_RP_ID = "localhost"
    settings.WEBAUTHN_ORIGIN = live_server.url.replace("127.0.0.1", "localhost")
    return str(settings.WEBAUTHN_ORIGIN)


def sign_in_with_authenticator(browser: Any, base: str, username: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    page.goto(f"{base}/admin/login/?next=/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/")
    return page


def test_register_a_passkey_approve_with_it_and_verify_the_bundle(browser, relying_party, request_under, approver,
                                                                 approver2, auditor, model, tmp_path):
    from audit import jcs
    from audit.ledger import checkpoint_create
    from audit.models import LedgerEntry
    from governance.models import ApprovalDecision, RequestStatus
    from governance.reports.selectors import bundle_plan_for_model
    from governance.signatures.models import ApproverCredential
    from governance.signatures.services import approver_key_register
    from tests.reports.bundle_helpers import (
        entry_lines,
        load_verifier,
        make_bundle,
        run_verify,
        tamper_and_resign,
        verdict,
        write_entry_lines,
    )

    request = request_under("passkey")
    base = relying_party
    page = sign_in_with_authenticator(browser, base, "alice")

    # 1. Register a passkey on the signing page.
    page.goto(f"{base}/me/signing/")
    page.fill("#passkey-label", "virtual authenticator")
    page.click("#register-passkey")
    page.wait_for_selector("#credentials td.mono")
    credential = ApproverCredential.objects.get(user=approver)
    assert (credential.kind, credential.label, credential.algorithm) == ("passkey", "virtual authenticator", -7)

    # 2. Approve with it on the model page: the unsigned button is not offered under this policy.
    page.goto(f"{base}/models/{model.name}/")
    form = f"#request-{request.pk}"
    assert page.locator(f"{form} button[type=submit]").count() == 0
    page.check(f"{form} input[value=approve]")
    page.fill(f"#decide-comment-{request.pk}", "Evidence reviewed; signed with my passkey.")
    page.click(f"{form} button.sign-passkey")
    page.wait_for_selector(".message-success")
    decision = ApprovalDecision.objects.get()
    decision_seq = LedgerEntry.objects.get(action="approval_request.approve_recorded").seq
    assert decision.signature["method"] == "passkey"
    assert decision.signature["credential_id"] == credential.credential_id
    assert decision.signature["origin"] == relying_party
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED

    # 3. The bundle verifies offline, signatures included; a changed signature byte is caught.
    approver_key_register(by=approver2, user=approver2, public_key=base64.b64encode(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode())
    checkpoint_create()
    plan = bundle_plan_for_model(model_name=model.name)
    bundle = make_bundle(plan.subjects, bounded_subjects=plan.bounded)
    result = run_verify(tmp_path, bundle, "--require-signed-approvals")
    assert result.returncode == 0, result.stdout
    assert "1 decision(s) signed by the approver" in verdict(result)

    def flip_signature(files: dict[str, bytes]) -> None:
        lines = entry_lines(files)
        for row in lines:
            document = json.loads(base64.b64decode(str(row["canonical"])))
            signature = (document["payload"].get("state") or {}).get("signature")
            if signature:
                raw = bytearray(base64.urlsafe_b64decode(signature["signature"] + "=="))
                raw[-1] ^= 1
                signature["signature"] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
                canonical = jcs.canonicalize(document)
                row["canonical"] = base64.b64encode(canonical).decode()
                row["entry_hash"] = hashlib.sha256(canonical).hexdigest()
        write_entry_lines(files, lines)

    # An insider re-hashes the edited entry and re-signs the manifest: the next entry's link catches it
    # (the request's approval follows the decision in the same transaction, so the seqs are consecutive).
    tampered = run_verify(tmp_path, tamper_and_resign(bundle, flip_signature), "--require-signed-approvals")
    assert tampered.returncode == 1
    assert f"FAIL [entries] entry seq {decision_seq + 1}: prev_hash does not link" in verdict(tampered), \
        tampered.stdout

    # And verify.py's own WebAuthn check refuses Chromium's real assertion with one byte changed.
    verifier = load_verifier()
    material = decision.signature
    statement = base64.b64decode(material["statement"])
    cose = base64.urlsafe_b64decode(credential.public_key + "==")
    parts = {name: base64.urlsafe_b64decode(material[name] + "==")
             for name in ("authenticator_data", "client_data_json", "signature")}
    check = {"rp_id": "localhost", "origin": relying_party, "challenge": hashlib.sha256(statement).digest()}
    verifier.verify_webauthn_assertion(cose, **check, **parts)
    flipped = bytearray(parts["signature"])
    flipped[-1] ^= 1
    with pytest.raises(ValueError, match="does not verify"):
        verifier.verify_webauthn_assertion(cose, **check, **{**parts, "signature": bytes(flipped)})

    # 4. *Verify here* on the decision's entry page checks the signature in the browser (Web Crypto).
    reader = sign_in_with_authenticator(browser, base, "audrey")
    reader.goto(f"{base}/ledger/{decision_seq}/")
    reader.click("#verify-button")
    reader.wait_for_selector("#verify-result[data-outcome]")
    outcome = reader.locator("#verify-result")
    assert outcome.get_attribute("data-outcome") == "success", outcome.inner_text()
    assert "the approver's signature verifies" in outcome.inner_text()
    assert "passkey's ES256 signature" in outcome.inner_text()

    # Evidence swapped for another person's (validly logged) key registration: refused by the signature check.
    from audit import ledger as audit_ledger
    from audit.selectors import checkpoint_latest

    bobs = LedgerEntry.objects.filter(action="approver_credential.registered").order_by("seq").last()
    tree_size = checkpoint_latest().tree_size
    swapped = {"seq": bobs.seq, "canonical_b64": base64.b64encode(bytes(bobs.canonical)).decode(),
               "entry_hash_hex": bytes(bobs.entry_hash).hex(),
               "proof_b64": [base64.b64encode(bytes(node)).decode()
                             for node in audit_ledger.inclusion_proof(leaf_index=bobs.seq, tree_size=tree_size)]}
    reader.evaluate("""(swapped) => {
        const holder = document.getElementById('verify-data');
        const data = JSON.parse(holder.textContent);
        data.credential = swapped;
        holder.textContent = JSON.stringify(data);
    }""", swapped)
    reader.click("#verify-button")
    reader.wait_for_function("document.getElementById('verify-result').dataset.outcome === 'failure'")
    assert "the credential entry is not the signing credential's" in outcome.inner_text()

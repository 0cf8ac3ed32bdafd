"""bin/approval-sign against the live server: an approver creates a key, registers it and approves from a
terminal with a DSSE envelope; the decision's entry holds the envelope; `sign` alone is byte-exact."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit import dsse
from governance.signatures import statement as st

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLI = Path(__file__).resolve().parents[2] / "bin" / "approval-sign"


def run(*args: str, password: str = "test-pass-123456") -> subprocess.CompletedProcess[str]:  # noqa: S107 (a test user)
    env = {**os.environ, "GOVERNANCE_PASSWORD": password}
    return subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True, timeout=60, env=env)


def test_an_approver_signs_and_sends_a_decision_from_a_terminal(live_server, settings, request_under, approver,
                                                                 tmp_path):
    from governance.models import ApprovalDecision, RequestStatus

    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    request = request_under("dsse")
    key = tmp_path / "approver.key"
    created = run("keygen", str(key))
    assert created.returncode == 0 and created.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    registered = run("register", "--url", live_server.url, "--user", "alice", "--key", str(key))
    assert registered.returncode == 0, registered.stderr
    decided = run("decide", "--url", live_server.url, "--user", "alice", "--key", str(key),
                  "--request", str(request.pk), "--decision", "approve", "--comment", "Evidence reviewed")
    assert decided.returncode == 0, decided.stdout + decided.stderr
    assert "(dsse); request" in decided.stdout and "is approved" in decided.stdout
    signature = ApprovalDecision.objects.get().signature
    assert signature["method"] == "dsse"
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    # A wrong password never reaches the API.
    refused = run("decide", "--url", live_server.url, "--user", "alice", "--key", str(key), "--request",
                  str(request.pk), "--decision", "approve", password="wrong-password-1")
    assert refused.returncode != 0 and "sign-in failed" in refused.stderr


def test_sign_covers_the_statement_bytes_exactly(tmp_path):
    key = tmp_path / "k.key"
    assert run("keygen", str(key)).returncode == 0
    statement = tmp_path / "statement.json"
    statement.write_bytes(b'{"comment":"caf\xc3\xa9","type":"x"}')
    signed = run("sign", "--key", str(key), str(statement))
    envelope = json.loads(signed.stdout)
    assert base64.b64decode(envelope["payload"]) == statement.read_bytes()
    assert envelope["payloadType"] == st.STATEMENT_PAYLOAD_TYPE
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    public = load_pem_private_key(key.read_bytes(), password=None).public_key()
    keyid = dsse.envelope_keyid(public.public_bytes_raw())
    assert dsse.verify_envelope(envelope, {keyid: public}) == (st.STATEMENT_PAYLOAD_TYPE, statement.read_bytes())

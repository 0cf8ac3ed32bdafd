"""The verifier comes from outside the evidence: served from the repository's file, its SHA-256 on
the keys page and in the README, and the README's example command pins every key a bundle needs."""

from __future__ import annotations

import hashlib
import html
import re
import shlex

import pytest

from audit.ledger import checkpoint_create, ledger_append
from audit.models import SigningKey
from tests.conftest import REPO_ROOT
from tests.reports.bundle_helpers import SUBJECTS, VERIFY_PY, make_bundle, run_verify, seed_ledger, sign_attestation

pytestmark = pytest.mark.django_db
README = REPO_ROOT / "README.md"


def test_the_readme_states_verify_py_sha256():
    stated = re.findall(r"^verify\.py sha256 ([0-9a-f]{64})$", README.read_text(), flags=re.M)
    assert stated == [hashlib.sha256(VERIFY_PY.read_bytes()).hexdigest()], "update the README's verify.py sha256"


def test_the_served_verifier_is_the_repository_file_without_sign_in(client):
    response = client.get("/verify.py")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/x-python; charset=utf-8"
    assert response.content == VERIFY_PY.read_bytes()
    assert response["X-Content-SHA256"] == hashlib.sha256(VERIFY_PY.read_bytes()).hexdigest()


def test_the_keys_page_shows_the_verifier_sha256_and_every_vkey(client):
    checkpoint_create()
    sign_attestation({"_type": "statement"})  # the attestation key is registered when first used
    response = client.get("/keys/")
    assert response.status_code == 200
    text = html.unescape(response.content.decode())
    assert f'id="verify-sha256">{hashlib.sha256(VERIFY_PY.read_bytes()).hexdigest()}<' in text
    keys = list(SigningKey.objects.all())
    assert {key.purpose for key in keys} == {"checkpoint", "attestation"}
    for key in keys:
        assert f"--trusted-key '{key.vkey}'" in text


def test_no_doc_tells_anyone_to_run_code_taken_from_the_bundle():
    for path in (README, VERIFY_PY.parent / "VERIFY.md"):
        text = path.read_text()
        assert "unzip -p" not in text and "verify.py >" not in text, path


def test_the_readmes_example_command_pins_every_key_a_real_bundle_needs(tmp_path):
    seed_ledger()
    envelope = sign_attestation({"_type": "statement", "n": 1})
    ledger_append(actor="system:test", action="test.attested", subject=SUBJECTS[1],
                  payload={"attestation": {"envelope_sha256": hashlib.sha256(envelope).hexdigest()}})
    checkpoint_create()
    bundle = make_bundle(attestations={"run-1.dsse.json": envelope})
    text = README.read_text()
    block = text[text.index("python3 verify.py bundle.zip \\"):]
    block = block[:block.index("```")]
    words = shlex.split(block.replace("\\\n", " "))
    assert words[:3] == ["python3", "verify.py", "bundle.zip"]
    by_name = {key.name: key.vkey for key in SigningKey.objects.all()}
    args = []
    for flag, value in zip(words[3::2], words[4::2], strict=True):
        assert flag == "--trusted-key"
        name = value.split("+", 1)[0]
        args += [flag, by_name.pop(name)]  # the README's placeholder, filled with the real key of that name
    assert by_name == {}, f"keys the README's example does not pin: {by_name}"
    result = run_verify(tmp_path, bundle, *args)
    assert result.returncode == 0, result.stdout

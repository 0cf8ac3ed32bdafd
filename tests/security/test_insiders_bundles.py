"""Insiders against the evidence: what a bundle exported through the API, the pages or the admin
shows a regulator who checks it offline with the published verify.py.

- an approval written past the rules (by whoever can write rows: a shell, raw ORM) is named by
  verify.py with the request, the decision and each rule it broke;
- an operator who changes a bundle and re-signs it with a key they added never gets exit 0 from a
  regulator who pinned the service's keys, nor from one who pinned nothing (exit 3);
- a forged zip glued in front of a downloaded bundle is refused;
- the verifier comes from the service (`/verify.py`), not from the bundle.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit.models import LedgerEntry, SigningKey
from audit.services import signing_key_rotate
from core.actor import acting_as
from governance.models import ApprovalDecision, RequestStatus
from governance.reports.models import BundleExport
from tests.reports.bundle_helpers import (
    VERIFY_PY,
    members,
    pinned_key_args,
    rezip,
    run_verify,
    tamper_and_resign,
    verdict,
)

pytestmark = pytest.mark.django_db
SURFACES = ("api", "page", "admin")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def export_through(surface: str, user, model_name: str, capture) -> bytes:  # type: ignore[no-untyped-def]
    """The auditor exports the model's bundle through one surface and downloads it through the API."""
    with capture(execute=True):
        if surface == "api":
            api = APIClient()
            api.force_authenticate(user)
            assert api.post("/api/bundles/", {"model": model_name}, format="json").status_code == 202
        else:
            client = Client()
            client.force_login(user)
            if surface == "page":
                response = client.post(f"/models/{model_name}/export/", {})
            else:
                from governance.models import RegisteredModel

                pk = RegisteredModel.objects.get(name=model_name).pk
                response = client.post("/admin/governance/registeredmodel/",
                                       {"action": "export_bundle", "_selected_action": [str(pk)]})
            assert response.status_code == 302, response.content[:300]
    export = BundleExport.objects.get()
    assert export.status == BundleExport.Status.DONE
    api = APIClient()
    api.force_authenticate(user)
    download = api.get(f"/api/bundles/{export.pk}/download/")
    assert download.status_code == 200
    return b"".join(download.streaming_content)


@pytest.mark.parametrize("surface", SURFACES)
def test_an_approval_written_past_the_rules_is_named_in_the_exported_bundle(
        surface, tmp_path, pending, scientist, approver, auditor, django_capture_on_commit_callbacks):
    # Someone with a shell records the submitter's own approval and closes the request as approved.
    with acting_as(scientist):
        decision = ApprovalDecision.objects.create(request=pending, approver=scientist, decision="approve",
                                                   approver_roles=["risk_officer"], decided_at=pending.submitted_at)
        pending.status = RequestStatus.APPROVED
        pending.save()
    decided = LedgerEntry.objects.get(subject_type="governance.approvaldecision", subject_id=str(decision.pk))
    bundle = export_through(surface, auditor, pending.version.model.name, django_capture_on_commit_callbacks)

    result = run_verify(tmp_path, bundle)
    assert result.returncode == 1, result.stdout
    who = f"decision {decision.pk} (seq {decided.seq})"
    assert verdict(result) == (
        f"FAIL [approval] request {pending.pk}, {who} by user {scientist.pk} (dana): separation of duties: the "
        "approver submitted the request\n"
        f"FAIL [approval] request {pending.pk}, {who} by user {scientist.pk} (dana): role: the approver held no "
        "decision role (approver or risk_officer) at the time, by the role entries in the bundle\n"
        f"FAIL [approval] request {pending.pk}, {who}: quorum: 1 distinct approver(s), policy {pending.policy_id} "
        "(tier:high) requires 2\n"
        f"FAIL [approval] request {pending.pk}, {who}: required role: no approver held the role 'risk_officer' at "
        f"the time of their decision, which policy {pending.policy_id} (tier:high) requires\n")


def test_the_same_bundle_without_the_forged_approval_verifies(tmp_path, pending, approver, risk_officer, auditor,
                                                              django_capture_on_commit_callbacks):
    from governance.registry.services.approvals import approval_decide

    approval_decide(request=pending, by=risk_officer, decision="approve", comment="ok")
    approval_decide(request=pending, by=approver, decision="approve", comment="ok")
    bundle = export_through("api", auditor, pending.version.model.name, django_capture_on_commit_callbacks)
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout
    assert "1 approval(s) replayed from the entries" in result.stdout


def test_an_operator_re_signing_a_changed_bundle_with_a_key_they_added_never_gets_exit_0(
        tmp_path, settings, version, auditor, django_capture_on_commit_callbacks):
    source = Path(settings.ATTESTATION_SIGNING_KEY_FILE)
    (tmp_path / "attestation.key").write_bytes(source.read_bytes())
    settings.ATTESTATION_SIGNING_KEY_FILE = tmp_path / "attestation.key"
    bundle = export_through("api", auditor, version.model.name, django_capture_on_commit_callbacks)
    regulator_pins = pinned_key_args()  # obtained out of band before the operator acts
    assert run_verify(tmp_path, bundle, *regulator_pins).returncode == 0

    new_key = signing_key_rotate(purpose=SigningKey.Purpose.ATTESTATION, actor="user:operator")

    def soften(files: dict[str, bytes]) -> None:
        name = next(n for n in files if n.startswith("report/") and n.endswith(".json"))
        files[name] = files[name].replace(b"credit", b"CREDIT")
        files[f"keys/attestation-{new_key.key_id}.vkey"] = (new_key.vkey + "\n").encode()

    from audit.keys import active_key

    loaded = active_key(SigningKey.Purpose.ATTESTATION)
    assert loaded.record.pk == new_key.pk
    forged = tamper_and_resign(bundle, soften, private_key=loaded.private_key, keyid=new_key.dsse_keyid)
    result = run_verify(tmp_path, forged, *regulator_pins)
    assert result.returncode == 1 and verdict(result).startswith(
        "FAIL [trust] manifest.dsse.json is not signed by a trusted key"), result.stdout
    unpinned = run_verify(tmp_path, forged, pin=False)
    assert unpinned.returncode == 3, unpinned.stdout
    assert "only consistent with itself" in verdict(unpinned)


def test_a_forged_zip_prepended_to_a_downloaded_bundle_is_refused(tmp_path, version, auditor,
                                                                   django_capture_on_commit_callbacks):
    bundle = export_through("api", auditor, version.model.name, django_capture_on_commit_callbacks)
    forged = rezip({"report/summary.json": json.dumps({"fairness": "passed"}).encode()})
    result = run_verify(tmp_path, forged + bundle)
    assert result.returncode == 1, result.stdout
    assert verdict(result).startswith("FAIL [zip] the central directory is not where the end record puts it")
    # Two readers, two bundles: a streaming extractor meets the forged member first, while a reader of
    # the central directory (Python's zipfile) does not list it at all. Hence the refusal.
    with zipfile.ZipFile(io.BytesIO(forged + bundle)) as archive:
        assert "report/summary.json" not in archive.namelist()


def test_the_verifier_comes_from_the_service_not_from_the_bundle(tmp_path, version, auditor,
                                                                  django_capture_on_commit_callbacks):
    bundle = export_through("api", auditor, version.model.name, django_capture_on_commit_callbacks)
    assert not [name for name in members(bundle) if name.endswith(".py")]
    served = Client().get("/verify.py")  # anonymous
    assert served.status_code == 200 and served.content == VERIFY_PY.read_bytes()
    result = run_verify(tmp_path, bundle)
    assert result.stdout.splitlines()[0] == f"verify.py sha256 {hashlib.sha256(served.content).hexdigest()}"
    assert result.returncode == 0, result.stdout

"""Sealed data files over the API and the admin (issue 18): a risk officer overrides retention and
erases a file or a person's rows; everyone else is refused with `data_officer_required` and a
`.refused` ledger entry; a download needs a purpose, streams decrypted, is never cached and is
recorded; another team's file is a 404."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core import sealed
from governance.fairness.models import AuditSpec, SealedFile
from governance.fairness.services import vault
from tests.fairness.helpers import make_spec

pytestmark = pytest.mark.django_db


def _people_csv(path: Path, rows: int = 400) -> Path:
    lines = ["person_id,repaid,predicted,sex"]
    lines += [f"P{index:05d},{index % 3 != 0:d},{index % 4 != 0:d},{'female' if index % 2 else 'male'}"
              for index in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def record(scientist, model, version, tmp_path) -> SealedFile:  # type: ignore[no-untyped-def]
    make_spec(scientist, model, version, _people_csv(tmp_path / "eval.csv"), identifier_columns=["person_id"])
    return SealedFile.objects.get()


def _refused_user(who: str, request: Any, make_user: Any) -> Any:
    if who == "superuser":
        return get_user_model().objects.create_superuser("root", "root@example.org", "root-pass-123456")
    if who == "admin":
        return make_user("adam", "admin")
    return request.getfixturevalue(who)


def _plaintext(record: SealedFile) -> bytes:
    with vault.sealed_file_open(record=record, purpose="personal_data_scan").open() as handle:
        return handle.read()


# --- retention and erasure: only a risk officer ------------------------------------------------

def test_a_risk_officer_overrides_retention_once_per_idempotency_key(risk_officer, record):
    later = (timezone.now() + timedelta(days=3000)).replace(microsecond=0)
    client = client_for(risk_officer)
    path = f"/api/fairness/data-files/{record.file_id}/retention/"
    body = {"retention_until": later.isoformat(), "reason": "longitudinal bias study"}
    first = client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="ret-1")
    assert first.status_code == 200, first.content
    assert first.json()["retention_until"] is not None and first.json()["retention_set_by"] == "user:rita"
    again = client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="ret-1")
    assert again.status_code == 200 and again.json() == first.json()
    record.refresh_from_db()
    assert record.retention_until == later
    assert LedgerEntry.objects.filter(action="sealed_file.retention_set").count() == 1
    no_reason = client.post(path, {"retention_until": later.isoformat(), "reason": "  "}, format="json")
    assert no_reason.status_code == 400 and no_reason.json()["code"] in {"invalid_input", "data_bad_retention"}


@pytest.mark.parametrize("who", ["scientist", "auditor", "approver", "admin", "superuser"])
def test_only_a_risk_officer_sets_retention_or_erases_through_the_api(who, request, make_user, record):
    user = _refused_user(who, request, make_user)
    client = client_for(user)
    base = f"/api/fairness/data-files/{record.file_id}/"
    later = (timezone.now() + timedelta(days=3000)).isoformat()
    attempts = [("retention/", {"retention_until": later, "reason": "keep it"}, "sealed_file.retention_set.refused"),
                ("erasure/", {"request": "DSR-7"}, "sealed_file.erase.refused"),
                ("erasure/", {"request": "DSR-8", "column": "person_id", "value": "P00001"},
                 "sealed_file.rows_erase.refused")]
    for suffix, body, refused_action in attempts:
        before = LedgerEntry.objects.count()
        response = client.post(base + suffix, body, format="json")
        assert response.status_code == 403, response.content
        assert response.json()["code"] == "data_officer_required"
        new = list(LedgerEntry.objects.filter(seq__gte=before).values_list("action", "actor"))
        assert new == [(refused_action, f"user:{user.username}")]
    fresh = SealedFile.objects.get(pk=record.pk)
    assert fresh.erased_at is None and bytes(fresh.wrapped_key) and fresh.retention_until == record.retention_until
    assert SealedFile.objects.count() == 1


def test_another_teams_file_is_a_404_like_a_missing_one(make_user, other_team, record):
    stranger = make_user("hugo", "data_scientist", teams=(other_team,))
    client = client_for(stranger)
    before = LedgerEntry.objects.count()
    for path in (f"/api/fairness/data-files/{record.file_id}/", f"/api/fairness/data-files/{record.file_id}/download/"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["code"] == "sealed_file_not_found"
    missing = client.get(f"/api/fairness/data-files/{'0' * 32}/download/")
    assert missing.status_code == 404 and missing.json()["message"] == client.get(
        f"/api/fairness/data-files/{record.file_id}/download/").json()["message"]
    erase = client.post(f"/api/fairness/data-files/{record.file_id}/erasure/", {"request": "x"}, format="json")
    assert erase.status_code == 404 and erase.json()["code"] == "sealed_file_not_found"
    assert LedgerEntry.objects.count() == before


def test_a_risk_officer_erases_a_whole_file(risk_officer, auditor, record, django_capture_on_commit_callbacks,
                                            settings):
    stored = Path(settings.MEDIA_ROOT) / record.name
    assert stored.is_file()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(risk_officer).post(f"/api/fairness/data-files/{record.file_id}/erasure/",
                                                 {"request": "DSR-1"}, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    assert response.status_code == 200, response.content
    assert response.json()["erasure_reason"] == "erasure_request" and response.json()["erased_at"]
    assert not stored.exists()
    entry = LedgerEntry.objects.get(action="sealed_file.erased")
    assert entry.payload["request"] == "DSR-1" and record.content_sha256 in entry.payload["digests_erased"]
    gone = client_for(auditor).get(f"/api/fairness/data-files/{record.file_id}/download/")
    assert gone.status_code == 410 and gone.json()["code"] == "data_erased"
    again = client_for(risk_officer).post(f"/api/fairness/data-files/{record.file_id}/erasure/",
                                          {"request": "DSR-1", "column": "person_id", "value": "P00001"},
                                          format="json")
    assert again.status_code == 410 and again.json()["code"] == "data_erased"


def test_a_persons_rows_are_erased_into_a_rewrite(risk_officer, record, django_capture_on_commit_callbacks):
    client = client_for(risk_officer)
    path = f"/api/fairness/data-files/{record.file_id}/erasure/"
    half = client.post(path, {"request": "DSR-2", "column": "person_id"}, format="json")
    assert half.status_code == 400 and half.json()["code"] == "data_bad_erasure"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(path, {"request": "DSR-2", "column": "person_id", "value": "P00007"}, format="json")
    assert response.status_code == 200, response.content
    new_id = response.json()["file_id"]
    assert new_id != record.file_id and response.json()["erased_at"] is None
    replacement = SealedFile.objects.get(file_id=new_id)
    assert replacement.content_sha256 != record.content_sha256
    pseudonym = sealed.pseudonym("P00007", key=vault.team_pseudonym_key(record.team)).encode()
    text = _plaintext(replacement)
    assert pseudonym not in text and text.count(b"\n") == 400  # header + 399 rows
    assert AuditSpec.objects.get().dataset_file.name == replacement.name
    entry = LedgerEntry.objects.get(action="sealed_file.rows_erased")
    assert entry.payload["rows_removed"] == 1 and "P00007" not in str(entry.payload)
    none = client.post(f"/api/fairness/data-files/{new_id}/erasure/",
                       {"request": "DSR-3", "column": "person_id", "value": "P00007"}, format="json")
    assert none.status_code == 400 and none.json()["code"] == "data_erasure_no_rows"


# --- download: a purpose, streamed, never cached, recorded -------------------------------------

@pytest.mark.parametrize("who", ["auditor", "risk_officer", "scientist"])  # scientist: the spec's owner
def test_a_download_streams_the_plaintext_and_is_recorded(who, request, record):
    user = request.getfixturevalue(who)
    before = LedgerEntry.objects.count()
    response = client_for(user).get(f"/api/fairness/data-files/{record.file_id}/download/")
    assert response.status_code == 200
    assert response.streaming and response["Cache-Control"] == "no-store"
    assert response["Content-Type"] == "text/csv"
    assert f'filename="{record.file_id}.csv"' in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    assert body == _plaintext(record) and b"P00001" not in body  # identifiers stay pseudonymised
    entries = list(LedgerEntry.objects.filter(seq__gte=before))
    assert [(e.action, e.actor) for e in entries] == [("sealed_file.read", f"user:{user.username}")]
    assert entries[0].payload["purpose"] == "download" and entries[0].payload["content_sha256"] == record.content_sha256


@pytest.mark.parametrize("who", ["scientist2", "approver", "admin", "superuser"])
def test_a_download_without_a_purpose_is_refused_and_recorded(who, request, make_user, record):
    user = _refused_user(who, request, make_user)
    before = LedgerEntry.objects.count()
    response = client_for(user).get(f"/api/fairness/data-files/{record.file_id}/download/")
    assert response.status_code == 403 and response.json()["code"] == "data_download_not_allowed"
    assert list(LedgerEntry.objects.filter(seq__gte=before).values_list("action", flat=True)) == [
        "sealed_file.download.refused"]


def test_a_tampered_file_is_not_downloaded_and_nothing_is_recorded(auditor, record, settings):
    stored = Path(settings.MEDIA_ROOT) / record.name
    data = bytearray(stored.read_bytes())
    data[-40] ^= 0x01
    stored.write_bytes(bytes(data))
    before = LedgerEntry.objects.count()
    response = client_for(auditor).get(f"/api/fairness/data-files/{record.file_id}/download/")
    assert response.status_code == 409 and response.json()["code"] == "sealed_file_corrupt"
    assert LedgerEntry.objects.count() == before


# --- the admin: the same services, the same refusals -------------------------------------------

def _admin_client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_risk_officer_erases_and_sets_retention_in_the_admin(risk_officer, record,
                                                               django_capture_on_commit_callbacks):
    client = _admin_client(risk_officer)
    listing = client.get("/admin/fairness/sealedfile/")
    assert listing.status_code == 200 and record.file_id.encode() in listing.content
    form = client.post("/admin/fairness/sealedfile/", {"action": "set_retention", "_selected_action": [record.pk]})
    assert form.status_code == 200 and b'name="retention_until"' in form.content
    response = client.post("/admin/fairness/sealedfile/", {
        "action": "set_retention", "_selected_action": [record.pk], "apply": "1",
        "retention_until": "2035-01-31 00:00", "reason": "study extended"})
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.retention_until.year == 2035
    assert LedgerEntry.objects.filter(action="sealed_file.retention_set", actor="user:rita").count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/fairness/sealedfile/", {
            "action": "erase_selected", "_selected_action": [record.pk], "apply": "1", "request": "DSR-9",
            "column": "person_id", "value": "P00003"})
    assert response.status_code == 302
    assert LedgerEntry.objects.get(action="sealed_file.rows_erased").payload["rows_removed"] == 1
    replacement = SealedFile.objects.get(replaces=record)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/fairness/sealedfile/", {"action": "erase_selected", "_selected_action": [replacement.pk],
                                                    "apply": "1", "request": "DSR-10"})
    replacement.refresh_from_db()
    assert replacement.erased_at is not None and replacement.erasure_reason == "erasure_request"


@pytest.mark.parametrize("who", ["auditor", "admin", "superuser"])
def test_the_admin_refuses_anyone_but_a_risk_officer(who, request, make_user, record):
    user = _refused_user(who, request, make_user)
    client = _admin_client(user)
    before = LedgerEntry.objects.count()
    response = client.post("/admin/fairness/sealedfile/", {
        "action": "erase_selected", "_selected_action": [record.pk], "apply": "1", "request": "DSR-4"}, follow=True)
    assert response.status_code == 200
    assert b"[data_officer_required]" in response.content
    response = client.post("/admin/fairness/sealedfile/", {
        "action": "set_retention", "_selected_action": [record.pk], "apply": "1",
        "retention_until": "2035-01-31 00:00", "reason": "x"}, follow=True)
    assert b"[data_officer_required]" in response.content
    assert list(LedgerEntry.objects.filter(seq__gte=before).values_list("action", flat=True)) == [
        "sealed_file.erase.refused", "sealed_file.retention_set.refused"]
    record.refresh_from_db()
    assert record.erased_at is None and record.retention_until.year != 2035

"""Sealed data files over the API and the admin (issue 18): a risk officer overrides retention and
erases a file or a person's rows; everyone else is refused with `data_officer_required` and a
`.refused` ledger entry; a download needs a purpose, streams decrypted, is never cached and is
recorded; another team's file is a 404; the list shows a team its own files' metadata, no key."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import LedgerEntry
from core import sealed
from governance.fairness.models import AuditSpec, SealedFile
from governance.fairness.services import vault
from governance.registry.services.registry import model_register, model_version_register
from tests.fairness.helpers import make_spec
from tests.fixtures import CARD, MANIFEST

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


# --- the list: the caller's team's files, metadata only ----------------------------------------

LIST = "/api/fairness/data-files/"
LISTED_FIELDS = {"file_id", "kind", "model", "file_format", "source_sha256", "content_sha256", "size_bytes",
                 "identifier_columns", "sensitive_columns", "retention_until", "retention_set_by", "erased_at",
                 "erasure_reason", "replaced_by"}


@pytest.fixture
def other_record(make_user, other_team, tmp_path) -> SealedFile:  # type: ignore[no-untyped-def]
    """A file of the other team's model (hiring), uploaded after `record`'s."""
    hugo = make_user("hugo", "data_scientist", teams=(other_team,))
    model = model_register(by=hugo, name="hiring-screener", team=other_team, risk_tier="limited")
    version = model_version_register(model=model, by=hugo, label="1.0.0", artifact_uri="s3://hiring/1.0.0/",
                                     manifest=dict(MANIFEST), **CARD)
    make_spec(hugo, model, version, _people_csv(tmp_path / "hiring.csv", rows=120), identifier_columns=["person_id"])
    return SealedFile.objects.get(model=model)


def listed(user: Any, query: str = "") -> list[str]:
    response = client_for(user).get(LIST + query)
    assert response.status_code == 200, response.content
    return [item["file_id"] for item in response.json()["results"]]


def test_the_list_shows_a_team_only_its_own_files(scientist, make_user, risk_officer, auditor, record, other_record):
    hugo = get_user_model().objects.get(username="hugo")
    nobody = make_user("nina")
    before = LedgerEntry.objects.count()
    assert listed(scientist) == [record.file_id]
    assert listed(hugo) == [other_record.file_id]
    for sees_every_model in (risk_officer, auditor):
        assert listed(sees_every_model) == [other_record.file_id, record.file_id]  # newest first
    assert listed(nobody) == []  # signed in, no role and no team: deny by default
    assert LedgerEntry.objects.count() == before  # metadata, not a read of the data: nothing to record


def test_the_list_shows_no_key_material(auditor, record, other_record):
    response = client_for(auditor).get(LIST)
    body = response.content.decode()
    assert response.status_code == 200 and response.json()["count"] == 2
    assert [set(item) for item in response.json()["results"]] == [LISTED_FIELDS, LISTED_FIELDS]
    for file in (record, other_record):
        wrapped = bytes(file.wrapped_key)
        assert len(wrapped) > 0  # the leak check is not vacuous
        assert wrapped.hex() not in body and base64.b64encode(wrapped).decode() not in body
        assert file.kek_id not in body and file.name not in body  # neither the key's id nor the storage path
    pseudonym_key = vault.team_pseudonym_key(record.team)
    assert pseudonym_key.hex() not in body and base64.b64encode(pseudonym_key).decode() not in body
    assert "wrapped_key" not in body and "kek_id" not in body


def test_the_list_pages_and_filters(auditor, scientist, record, other_record, django_capture_on_commit_callbacks):
    first = client_for(auditor).get(LIST + "?page_size=1").json()
    assert (first["count"], first["next"], first["previous"]) == (2, "http://testserver" + LIST + "?page=2&page_size=1",
                                                                    None)
    assert [item["file_id"] for item in first["results"]] == [other_record.file_id]
    assert listed(auditor, "?page=2&page_size=1") == [record.file_id]
    assert listed(auditor, f"?model={record.model.name}") == [record.file_id]
    assert listed(auditor, "?kind=dataset") == [other_record.file_id, record.file_id]
    assert listed(auditor, "?kind=batch") == []
    assert listed(auditor, "?erased=true") == []
    with django_capture_on_commit_callbacks(execute=True):
        vault.sealed_file_erase(by="system:test", record=record, reason="retention")
    assert listed(auditor, "?erased=true") == [record.file_id]
    assert listed(auditor, "?erased=false") == [other_record.file_id]
    assert listed(scientist, "?erased=true") == [record.file_id]


@pytest.mark.parametrize(("query", "parameter"), [("?kind=secret", "kind"), ("?erased=maybe", "erased"),
                                                   ("?page=0", "page"), ("?page_size=501", "page_size")])
def test_a_bad_list_parameter_is_a_400_naming_it(auditor, record, query, parameter):
    response = client_for(auditor).get(LIST + query)
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["extra"]["parameter"]) == ("invalid_parameter", parameter)


def test_another_teams_model_as_a_filter_is_a_404_like_a_missing_one(scientist, record, other_record):
    client = client_for(scientist)
    hidden = client.get(LIST + f"?model={other_record.model.name}")
    missing = client.get(LIST + "?model=no-such-model")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["code"] == missing.json()["code"] == "model_not_found"
    assert other_record.model.name not in missing.content.decode()


def test_listed_is_not_downloadable_and_anonymous_is_refused(scientist2, record, other_record):
    hugo = get_user_model().objects.get(username="hugo")
    assert listed(scientist2) == [record.file_id]  # same team: sees the file's metadata ...
    download = client_for(scientist2).get(f"/api/fairness/data-files/{record.file_id}/download/")
    assert download.status_code == 403 and download.json()["code"] == "data_download_not_allowed"  # ... not its data
    stranger = client_for(hugo).get(f"/api/fairness/data-files/{record.file_id}/")
    assert stranger.status_code == 404 and stranger.json()["code"] == "sealed_file_not_found"
    anonymous = APIClient().get(LIST)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"


def test_the_list_costs_the_same_queries_for_one_file_or_many(auditor, scientist, model, version, record, tmp_path):
    client = client_for(auditor)
    client.get(LIST)  # warm the session and permission caches
    with CaptureQueriesContext(connection) as one:
        assert client.get(LIST).json()["count"] == 1
    for index in range(2):
        make_spec(scientist, model, version, _people_csv(tmp_path / f"more-{index}.csv", rows=50 + index),
                  name=f"holdout-{index}")
    with CaptureQueriesContext(connection) as three:
        assert client.get(LIST).json()["count"] == 3
    assert len(three) == len(one)

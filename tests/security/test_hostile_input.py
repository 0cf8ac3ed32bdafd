"""Hostile request bodies against every POST endpoint: 413 / 400 with stable codes, never a 500."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.models import LedgerEntry
from core.middleware import bad_unicode_escape, json_depth_exceeds

pytestmark = pytest.mark.django_db


def _post_paths() -> list[str]:
    """Every POST operation of the OpenAPI schema, path parameters filled with plausible values."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = []
    for template, operations in schema["paths"].items():
        if "post" in operations:
            paths.append(re.sub(r"\{[^}]+\}", "1", template))
    return sorted(paths)


POST_PATHS = _post_paths()


@pytest.fixture
def admin_client(db) -> Client:  # type: ignore[no-untyped-def]
    # No password: hashing one costs more than the request under test.
    user = get_user_model().objects.create(username="root", is_superuser=True, is_staff=True)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _error(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"code", "message", "extra"}, body
    return body


def test_the_schema_has_the_post_endpoints_we_expect():
    # A guard: the parametrized tests below cover exactly these; a new POST endpoint shows up here.
    assert POST_PATHS == [
        "/api/approval-requests/1/decisions/", "/api/approval-requests/1/statement/",
        "/api/approval-requests/1/withdraw/", "/api/bundles/",
        "/api/deployments/", "/api/deployments/1/end/", "/api/deployments/1/rollback/",
        "/api/fairness/audits/", "/api/fairness/audits/1/waive/",
        "/api/fairness/data-files/1/erasure/", "/api/fairness/data-files/1/retention/",
        "/api/fairness/specs/", "/api/fairness/specs/1/confirm/",
        "/api/lineage/attestations/", "/api/lineage/datasets/", "/api/lineage/datasets/1/versions/",
        "/api/lineage/keys/", "/api/lineage/keys/1/revoke/", "/api/lineage/runs/",
        "/api/me/passkeys/", "/api/me/passkeys/options/", "/api/me/signing-credentials/",
        "/api/me/signing-credentials/1/revoke/", "/api/models/",
        "/api/models/1/prediction-batches/", "/api/models/1/risk-tier-changes/", "/api/models/1/versions/",
        "/api/models/1/versions/1/approval-requests/",
        "/api/monitoring/alerts/1/acknowledge/", "/api/monitoring/comparisons/", "/api/monitoring/monitors/",
        "/api/monitoring/monitors/1/runs/", "/api/monitoring/monitors/1/thresholds/", "/api/monitoring/outcomes/",
        "/api/monitoring/profiles/",
        "/api/monitoring/threshold-changes/1/confirm/",
        "/api/policies/", "/api/policy-changes/1/approve/",
        "/api/policy-changes/1/reject/", "/api/risk-tier-changes/1/confirm/", "/api/v1/lineage",
    ]


@pytest.mark.parametrize("path", POST_PATHS + ["/admin/login/"])
def test_declared_huge_body_is_413_before_it_is_read(admin_client, path):
    before = LedgerEntry.objects.count()
    response = admin_client.generic("POST", path, b"{}", content_type="application/json",
                                    CONTENT_LENGTH=str(200 * 1024 * 1024))
    assert response.status_code == 413
    body = _error(response)
    assert body["code"] == "payload_too_large" and body["extra"]["max_bytes"] > 0
    assert LedgerEntry.objects.count() == before


def test_real_huge_body_is_413(admin_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    blob = json.dumps({"name": "x" * (2 * 1024 * 1024)}).encode()
    response = admin_client.generic("POST", "/api/models/", blob, content_type="application/json")
    assert response.status_code == 413 and _error(response)["code"] == "payload_too_large"


def test_multipart_has_the_upload_limit_not_the_json_limit(admin_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.MAX_UPLOAD_BYTES = 10_000
    small_upload = admin_client.generic("POST", "/api/models/", b"-" * 5000,
                                        content_type="multipart/form-data; boundary=xyz")
    # Past the size check, the parser refuses the boundary-less body: a 400, not the 413.
    assert small_upload.status_code == 400 and _error(small_upload)["code"] == "malformed_request_body"
    big_upload = admin_client.generic("POST", "/api/models/", b"-" * 20_000,
                                      content_type="multipart/form-data; boundary=xyz")
    assert big_upload.status_code == 413 and _error(big_upload)["code"] == "payload_too_large"


@pytest.mark.parametrize("path", POST_PATHS)
def test_invalid_utf8_is_400_invalid_utf8(admin_client, path):
    before = LedgerEntry.objects.count()
    response = admin_client.generic("POST", path, b'{"name": "caf\xe9\xff"}', content_type="application/json")
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_utf8"
    assert LedgerEntry.objects.count() == before


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_json_nested_100k_levels_is_400_json_too_deep(admin_client, path, opener):
    closer = "]" if opener == "[" else "}"
    body = (opener * 100_000 + "1" + closer * 100_000).encode()
    response = admin_client.generic("POST", path, body, content_type="application/json")
    assert response.status_code == 400
    assert _error(response)["code"] == "json_too_deep"


@pytest.mark.parametrize("path", POST_PATHS)
def test_unclosed_deep_json_is_400_not_a_recursion_error(admin_client, path):
    response = admin_client.generic("POST", path, b"[" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert _error(response)["code"] == "malformed_request_body"  # its brackets do not balance


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize("escape", [r"\u0000", r"\ud800", r"\udfff x"])
def test_escaped_nul_and_lone_surrogates_are_400(admin_client, path, escape):
    body = ('{"name": "a' + escape + '", "comment": "c", "model": "m"}').encode()
    response = admin_client.generic("POST", path, body, content_type="application/json")
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_unicode_escape"


def test_nesting_within_the_limit_still_reaches_the_view(admin_client):
    # 10 levels of metrics are fine: the view answers (404 for the unknown model), the middleware does not.
    metrics = 1
    for _ in range(10):
        metrics = {"m": metrics}  # type: ignore[assignment]
    response = admin_client.post("/api/models/nope/versions/", {"label": "1", "training_metrics": metrics},
                                 content_type="application/json")
    assert response.status_code == 404, response.content


def test_gzip_openlineage_deep_json_is_refused_by_the_endpoint(admin_client):
    body = gzip.compress(b"[" * 100_000 + b"]" * 100_000)
    response = admin_client.generic("POST", "/api/v1/lineage", body, content_type="application/json",
                                    HTTP_CONTENT_ENCODING="gzip")
    # The endpoint inflates the body itself and refuses what json cannot parse within its limits.
    assert response.status_code == 400, response.content[:300]
    assert _error(response)["code"] == "openlineage_invalid_event"


@pytest.mark.parametrize("path", ["/api/models/?team=a%00b", "/api/lineage/attestations/?subject_type=x&subject_id=%00",
                                  "/api/ledger/entries/?actor=%00", "/api/models/a%00b/", "/models/a%00b/"])
def test_nul_in_the_url_is_400_not_a_database_error(admin_client, path):
    response = admin_client.get(path)
    assert response.status_code == 400 and _error(response)["code"] == "invalid_characters"


@pytest.mark.parametrize(("until", "status_code"), [
    ("0863-03-24T08:59:29.79%2B22:08", 200),
    ("2026-01-01T00:00:00-23:59", 200),
    ("0001-01-01T00:00:00%2B01:00", 400),  # in UTC it falls before year 1: not representable
])
def test_time_filters_with_extreme_offsets_are_not_a_database_error(admin_client, until, status_code):
    # PostgreSQL refuses offsets beyond 15:59 that Python accepts: found by fuzzing on PostgreSQL.
    # The API converts to UTC first; a moment that has no UTC datetime is a bad parameter.
    response = admin_client.get(f"/api/ledger/entries/?until={until}")
    assert response.status_code == status_code, response.content[:300]
    if status_code == 400:
        assert _error(response)["code"] == "invalid_parameter" and _error(response)["extra"] == {"parameter": "until"}


def test_openlineage_event_time_with_an_extreme_offset_is_not_a_database_error(make_user, team):
    client = Client(raise_request_exception=False)
    client.force_login(make_user("pipeline", "data_scientist", teams=(team,)))  # lineage is recorded for a team
    event = {"eventType": "START", "eventTime": "2026-01-01T00:00:00+22:30",
             "run": {"runId": "8d5f6a1c-0000-4000-8000-000000000001"},
             "job": {"namespace": "ns", "name": "job"}, "inputs": [], "outputs": [], "producer": "https://example.org/p",
             "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json"}
    response = client.post("/api/v1/lineage", event, content_type="application/json")
    assert response.status_code == 201, response.content[:300]
    assert response.json()["event_kind"] == "RunEvent" and response.json()["status"] == "running"


def test_ledger_page_time_filter_with_an_extreme_offset_is_not_a_database_error(admin_client):
    response = admin_client.get("/ledger/?until=0863-03-24T08:59:29%2B22:08")
    assert response.status_code == 200  # a valid moment (year 863 in UTC): the filter applies and matches nothing
    assert b"No ledger entry matches these filters." in response.content


def test_non_numeric_content_length_is_400(admin_client):
    response = admin_client.generic("POST", "/api/models/", b"{}", content_type="application/json",
                                    CONTENT_LENGTH="12abc")
    assert response.status_code == 400 and _error(response)["code"] == "malformed_request_body"


@pytest.mark.parametrize(("path", "code"), [
    ("/api/models/..%2F..%2Fetc%2Fpasswd/", "not_found"),  # no route matches: the 404 handler's code
    ("/api/models/%2e%2e/versions/", "model_not_found"),  # a route matches the name "..": no such model
    ("/api/bundles/..%2F1/download/", "not_found"),
    ("/api/bundles/1%2F..%2F..%2Fsecret_key/download/", "not_found"),
    ("/api/lineage/nodes/..%2F..%2Fsecret_key/", "not_found"),
    ("/api/ledger/keys/..%2F..%2Fkeys%2Fledger.key/", "not_found"),
    ("/media/../secret_key", None),  # not under /api/: Django's HTML 404 page
    ("/static/../var/secret_key", None),
])
def test_path_traversal_in_urls_never_serves_a_file(admin_client, path, code):
    response = admin_client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    if code is not None:
        assert _error(response)["code"] == code
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"PRIVATE KEY" not in content and b"BEGIN" not in content


def test_bundle_download_filename_is_built_from_validated_names_only():
    # The download name comes from model/version names, which their validators restrict to safe characters.
    from django.core.exceptions import ValidationError

    from governance.models import label_validator, name_validator

    for hostile in ("../../etc/passwd", "a/b", "..", "x\\y", "a\x00b"):
        for validator in (name_validator, label_validator):
            with pytest.raises(ValidationError):
                validator(hostile)


# --- the pure checks, without a database -------------------------------------------------------

@pytest.mark.parametrize(("body", "expected"), [
    (b"[[[]]]", True), (b"[[]]", False), (b'{"a": "[[[[[[[[["}', False), (b"[" * 10, None),
    (b"][][][", None), (b'[1, {"b": [2]}]', False),
])
def test_json_depth_exceeds(body, expected):
    assert json_depth_exceeds(body, 2) is expected


@pytest.mark.parametrize(("body", "expected"), [
    (rb'"\u0000"', "NUL character"), (rb'"\\u0000"', None), (rb'"\\\u0000"', "NUL character"),
    (rb'"\ud83d\ude00"', None), (rb'"\ud83d"', "lone high surrogate"), (rb'"\ude00"', "lone low surrogate"),
    (rb'"\ud83d\u0041"', "lone high surrogate"), (rb'"\u00e9"', None),
])
def test_bad_unicode_escape(body, expected):
    assert bad_unicode_escape(body) == expected

"""Pages: access (login, object-level 404, ledger 403), empty states, writes through services with
their messages, the ledger explorer's search and evidence, and admin links."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit import ledger, merkle, note
from audit.keys import verifiers
from audit.models import LedgerEntry
from governance import selectors as governance_selectors
from governance.models import ApprovalDecision, ApprovalRequest, RequestStatus, VersionStatus
from governance.pages import selectors
from governance.permissions import can_decide
from governance.registry.services.access import approver_scope_grant
from governance.registry.services.approvals import approval_decide, approval_policy_set, model_version_submit
from governance.registry.services.deployments import deployment_record
from governance.registry.services.registry import model_register, model_version_register
from tests.fixtures import CARD, MANIFEST, SEED

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    return response.content.decode()


# --- Access ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/", "/models/", "/models/anything/", "/ledger/", "/ledger/0/"])
def test_pages_send_anonymous_users_to_the_sign_in_page(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_model_page_of_another_teams_model_is_404(model, make_user, other_team):
    outsider = make_user("olga", "data_scientist", teams=(other_team,))
    response = client_for(outsider).get(f"/models/{model.name}/")
    assert response.status_code == 404
    assert "Not found" in text_of(response)
    assert model.name not in text_of(client_for(outsider).get("/models/"))


def test_model_page_of_an_unknown_model_is_404(auditor):
    assert client_for(auditor).get("/models/no-such-model/").status_code == 404


def test_team_member_and_auditor_see_the_model_page(model, scientist, auditor):
    for user in (scientist, auditor):
        response = client_for(user).get(f"/models/{model.name}/")
        assert response.status_code == 200
        assert f"<h1>{model.name}</h1>" in text_of(response)


def test_writes_to_another_teams_model_are_404_and_write_nothing(model, version, policy, make_user, other_team):
    client = client_for(make_user("olga", "data_scientist", teams=(other_team,)))
    before = LedgerEntry.objects.count()  # after sign-in, which is recorded
    response = client.post(f"/models/{model.name}/versions/{version.label}/request-approval/",
                                         {"comment": "sneaky"})
    assert response.status_code == 404
    assert LedgerEntry.objects.count() == before
    assert not ApprovalRequest.objects.exists()


@pytest.mark.parametrize("url", ["/ledger/", "/ledger/0/"])
def test_ledger_pages_are_refused_for_viewers_and_scientists(url, model, make_user, scientist, team):
    viewer = make_user("vera", "viewer", teams=(team,))
    for user in (viewer, scientist):
        response = client_for(user).get(url)
        assert response.status_code == 403
        assert "Not allowed" in text_of(response)
    # The API answers the same way for the same user.
    assert client_for(viewer).get("/api/ledger/entries/").status_code == 403


def test_ledger_nav_link_only_for_ledger_readers(model, scientist, auditor):
    assert 'href="/ledger/"' not in text_of(client_for(scientist).get("/"))
    assert 'href="/ledger/"' in text_of(client_for(auditor).get("/"))


# --- Empty states --------------------------------------------------------------------------------

def test_dashboard_empty_states_for_a_new_user(make_user):
    user = make_user("newbie", "viewer")
    html = text_of(client_for(user).get("/"))
    assert "Nothing is waiting for your decision." in html
    assert "You have not requested any approvals." in html
    assert "None of the models you can see is deployed." in html
    assert "No checkpoint has been signed yet." in html
    assert "The ledger has not been verified yet" in html


def test_models_list_empty_state_and_search(make_user, model, scientist):
    assert "No models are visible to you yet." in text_of(client_for(make_user("newbie", "viewer")).get("/models/"))
    html = text_of(client_for(scientist).get("/models/?q=zzz"))
    assert "No model you can see matches" in html
    html = text_of(client_for(scientist).get("/models/?q=credit"))
    assert f'href="/models/{model.name}/"' in html


def test_model_page_empty_states(model, scientist):
    html = text_of(client_for(scientist).get(f"/models/{model.name}/"))
    assert "No versions are registered yet." in html
    assert "No approval request is open." in html
    assert "No approval has been requested for this model yet." in html
    assert "This model has never been deployed." in html


def test_ledger_search_without_matches_says_so(auditor):
    html = text_of(client_for(auditor).get("/ledger/?actor=user:nobody"))
    assert "No ledger entry matches these filters." in html


# --- Writes through services ---------------------------------------------------------------------

def test_request_approval_from_the_model_page(model, version, policy, scientist):
    response = client_for(scientist).post(f"/models/{model.name}/versions/{version.label}/request-approval/",
                                          {"comment": "ready for review"}, follow=True)
    assert response.status_code == 200
    request = ApprovalRequest.objects.get()
    assert request.status == RequestStatus.PENDING and request.comment == "ready for review"
    assert LedgerEntry.objects.filter(action="approval_request.submitted", subject_id=str(request.pk)).exists()
    html = text_of(response)
    assert f"Approval requested for {version.label}." in html
    assert "ready for review" in html  # in the timeline


def test_model_page_offers_the_decide_form_to_whoever_holds_the_decide_right(model, make_version, policy,
                                                                             make_user, team):
    # Even on their own request: the service refuses it (tests/governance/test_separation_of_duties.py).
    both = make_user("sam", "data_scientist", "approver", teams=(team,))
    approver_scope_grant(by="system:test", to=both, risk_tier="high")
    version = make_version("2.0.0", by=both)
    request = model_version_submit(version=version, by=both, comment="mine")
    page = text_of(client_for(both).get(f"/models/{model.name}/"))
    assert f'action="/models/{model.name}/requests/{request.pk}/decide/"' in page


def test_approver_decides_from_the_model_page_with_a_comment(model, pending, approver):
    response = client_for(approver).post(f"/models/{model.name}/requests/{pending.pk}/decide/",
                                         {"decision": "approve", "comment": "evidence reviewed"}, follow=True)
    decision = ApprovalDecision.objects.get()
    assert (decision.approver, decision.comment) == (approver, "evidence reviewed")
    html = text_of(response)
    assert "Your decision (approve) on request" in html
    assert "evidence reviewed" in html and "alice" in html


def test_rejection_without_reason_shows_the_error_code(model, pending, approver):
    html = text_of(client_for(approver).post(f"/models/{model.name}/requests/{pending.pk}/decide/",
                                             {"decision": "reject", "comment": ""}, follow=True))
    assert "[approval_reason_required]" in html
    assert not ApprovalDecision.objects.exists()


def test_decide_form_is_not_offered_to_those_who_cannot_decide(model, pending, scientist2, approver):
    assert "/decide/" not in text_of(client_for(scientist2).get(f"/models/{model.name}/"))
    assert "/decide/" in text_of(client_for(approver).get(f"/models/{model.name}/"))


def test_scientist_cannot_export_a_bundle(model, version, scientist):
    html = text_of(client_for(scientist).post(f"/models/{model.name}/export/", {"version": ""}, follow=True))
    assert "[bundle_export_forbidden]" in html


def test_auditor_exports_a_bundle_and_the_page_follows_it(model, version, auditor,
                                                         django_capture_on_commit_callbacks):
    from governance.reports.models import BundleExport

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(auditor).post(f"/models/{model.name}/export/", {"version": version.label})
    export = BundleExport.objects.get()
    assert response.status_code == 302
    assert f"bundle={export.pk}" in response["Location"]
    html = text_of(client_for(auditor).get(response["Location"]))
    assert f'data-status-url="/api/bundles/{export.pk}/"' in html
    export.refresh_from_db()
    assert export.status == BundleExport.Status.DONE  # eager Celery in unit tests


# --- Dashboard -----------------------------------------------------------------------------------

def test_dashboard_lists_my_pending_decisions_and_my_submissions(model, pending, approver, scientist):
    html = text_of(client_for(approver).get("/"))
    assert f"#request-{pending.pk}" in html and "Nothing is waiting" not in html
    html = text_of(client_for(scientist).get("/"))
    assert 'id="my-submitted"' in html and "Pending" in html
    assert "Nothing is waiting for your decision." in html  # a scientist decides nothing


def test_who_may_decide_agrees_as_a_filter_and_as_a_predicate(model, pending, approver, approver2, scientist,
                                                              risk_officer, auditor, make_user, other_team):
    """`permissions.decidable_requests` (queue, pages) and `permissions.can_decide` (the service) are one rule."""
    hal = make_user("hal", "data_scientist", teams=(other_team,))
    hiring = model_register(by=hal, name="hiring-ranker", team=other_team, risk_tier="limited")
    hiring_version = model_version_register(model=hiring, by=hal, label="1.0.0", artifact_uri="s3://m/h/",
                                                     manifest=dict(MANIFEST), framework="sklearn", **CARD)
    approval_policy_set(by=SEED, risk_tier="limited", quorum=1, required_roles=[], expiry_hours=48)
    model_version_submit(version=hiring_version, by=hal, comment="please")
    approval_decide(request=pending, by=approver, decision="approve", comment="fine")
    requests = list(ApprovalRequest.objects.filter(status="pending").select_related("version__model"))
    assert len(requests) == 2
    for user in (approver, approver2, scientist, risk_officer, auditor, hal):
        queue = {request.pk for request in governance_selectors.approval_queue(user=user)}
        for request in requests:
            own = user.pk in (request.submitted_by_id, request.version.created_by_id)
            decided = request.decisions.filter(approver=user).exists()
            rule = can_decide(user, request.version.model) and not own and not decided
            assert (request.pk in queue) is rule, (user.username, request.version.model.name)
        assert set(selectors.decidable_requests(user=user).values_list("pk", flat=True)) == queue
    assert {request.pk for request in governance_selectors.approval_queue(user=approver2)} == {pending.pk}
    assert governance_selectors.approval_queue(user=approver) == []  # already decided


def test_dashboard_shows_checkpoint_and_last_verification(model, auditor):
    from audit.services import ledger_verify_and_record

    ledger.checkpoint_create()
    ledger_verify_and_record(actor="system:test")
    html = text_of(client_for(auditor).get("/"))
    assert "Latest signed checkpoint" in html
    assert 'badge-ok">passed' in html
    entry = LedgerEntry.objects.filter(action="ledger.verified").get()
    assert f'href="/ledger/{entry.seq}/"' in html


def test_dashboard_counts_active_deployments_per_environment(model, make_version, scientist, environments):
    version = make_version("3.0.0")
    deployment_record(version=version, environment=environments["staging"], by=scientist)
    html = text_of(client_for(scientist).get("/"))
    assert re.search(r"staging</td><td class=\"num\">1</td>", html)


# --- Ledger explorer -----------------------------------------------------------------------------

def test_ledger_search_filters_by_subject_actor_action_and_time(model, version, pending, auditor, scientist):
    client = client_for(auditor)
    html = text_of(client.get(f"/ledger/?subject_type=governance.modelversion&subject_id={version.pk}"))
    seqs = set(map(int, re.findall(r'href="/ledger/(\d+)/"', html)))
    expected = set(LedgerEntry.objects.filter(subject_type="governance.modelversion", subject_id=str(version.pk))
                   .values_list("seq", flat=True))
    assert seqs == expected and expected
    html = text_of(client.get("/ledger/?action=approval_request."))
    assert "approval_request.submitted" in html and "model_version.registered" not in html
    html = text_of(client.get("/ledger/?actor=user:dana"))
    assert "user:dana" in html and "system:test_setup" not in html
    tomorrow = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d")
    assert "No ledger entry matches" in text_of(client.get(f"/ledger/?since={tomorrow}"))
    assert "No ledger entry matches" not in text_of(client.get(f"/ledger/?until={tomorrow}T00:00"))


def test_ledger_search_refuses_a_bad_time_with_400(auditor):
    response = client_for(auditor).get("/ledger/?since=yesterday")
    assert response.status_code == 400
    assert "[invalid_parameter]" in text_of(response)


def test_ledger_pages_through_entries_newest_first(auditor):
    ledger.ledger_append_many([ledger.draft(actor="system:test", action="test.filler", subject=("test.thing", str(i)))
                               for i in range(120)])
    client = client_for(auditor)
    first = text_of(client.get("/ledger/?action=test."))
    seqs = [int(seq) for seq in re.findall(r'href="/ledger/(\d+)/"', first)]
    assert len(seqs) == 50 and seqs == sorted(seqs, reverse=True)
    older = re.search(r'href="\?action=test\.&amp;before=(\d+)"', first)
    assert older and int(older.group(1)) == seqs[-1]
    second = [int(seq) for seq in re.findall(r'href="/ledger/(\d+)/"',
                                             text_of(client.get(f"/ledger/?action=test.&before={seqs[-1]}")))]
    assert second[0] == seqs[-1] - 1 and len(second) == 50
    back = [int(seq) for seq in re.findall(r'href="/ledger/(\d+)/"',
                                           text_of(client.get(f"/ledger/?action=test.&after={second[0]}")))]
    assert back == seqs


def test_ledger_entry_page_carries_evidence_that_verifies(model, version, auditor):
    ledger.checkpoint_create()
    entry = LedgerEntry.objects.filter(action="model_version.registered").get()
    html = text_of(client_for(auditor).get(f"/ledger/{entry.seq}/"))
    data = json.loads(re.search(r'<script id="verify-data" type="application/json">(.*?)</script>', html,
                                re.S).group(1))
    canonical = base64.b64decode(data["canonical_b64"])
    assert canonical == bytes(entry.canonical)
    assert hashlib.sha256(canonical).hexdigest() == data["entry_hash_hex"] == bytes(entry.entry_hash).hex()
    body, _ = note.open_note(data["checkpoint_note"], verifiers())
    root = note.parse_checkpoint(body).root_hash
    merkle.verify_inclusion(merkle.leaf_hash(canonical), data["leaf_index"], data["tree_size"],
                            [base64.b64decode(node) for node in data["proof_b64"]], root)
    assert note.parse_vkey(data["vkey"]).verify  # a well-formed vkey
    assert data["vkey"] in html and "Verify here" in html and "js/verify.js" in html
    assert f'href="/models/{model.name}/?version={version.label}"' in html


def test_ledger_entry_newer_than_the_checkpoint_says_so(model, auditor):
    ledger.checkpoint_create()
    entry = ledger.ledger_append(actor="system:test", action="test.late", subject=("test.thing", "1"))
    html = text_of(client_for(auditor).get(f"/ledger/{entry.seq}/"))
    assert "newer than the latest checkpoint" in html


def test_unknown_ledger_entry_is_404(auditor):
    assert client_for(auditor).get("/ledger/999999/").status_code == 404


# --- Admin links ---------------------------------------------------------------------------------

def test_admin_change_pages_link_to_the_page_and_the_ledger(model, version, pending, make_user):
    admin_user = make_user("adam", "admin")
    client = client_for(admin_user)
    html = text_of(client.get(f"/admin/governance/registeredmodel/{model.pk}/change/"))
    assert f'href="/models/{model.name}/"' in html
    assert f'href="/ledger/?subject_type=governance.registeredmodel&amp;subject_id={model.pk}"' in html
    html = text_of(client.get(f"/admin/governance/approvalrequest/{pending.pk}/change/"))
    assert f"#request-{pending.pk}" in html
    assert f"subject_type=governance.approvalrequest&amp;subject_id={pending.pk}" in html


def test_version_status_and_deployments_show_on_the_model_page(model, make_version, scientist, environments):
    version = make_version("4.0.0")
    deployment_record(version=version, environment=environments["staging"], by=scientist)
    html = text_of(client_for(scientist).get(f"/models/{model.name}/?version=4.0.0"))
    assert VersionStatus.DRAFT.label in html
    row = re.search(r'<tr id="version-400".*?</tr>', html, re.S).group(0)
    assert "staging" in row


def test_dashboard_lists_agree_with_the_full_queries_whatever_the_scan_chunk(model, make_version, scientist, policy,
                                                                              approver, monkeypatch):
    for number in range(7):
        model_version_submit(version=make_version(f"9.{number}.0"), by=scientist, comment="")
    for chunk, max_chunks in ((2, 5), (2, 1), (200, 5)):
        monkeypatch.setattr(selectors, "SCAN_CHUNK", chunk)
        monkeypatch.setattr(selectors, "SCAN_MAX_CHUNKS", max_chunks)
        for limit in (1, 3, 20):
            assert [row.pk for row in selectors.decidable_requests_first(user=approver, limit=limit)] == list(
                selectors.decidable_requests(user=approver).values_list("pk", flat=True)[:limit])
            assert [row.pk for row in selectors.submitted_requests_first(user=scientist, limit=limit)] == list(
                selectors.submitted_requests(user=scientist).values_list("pk", flat=True)[:limit])
    assert selectors.decidable_requests_first(user=scientist) == []


def test_ledger_pages_through_a_time_window_without_gaps_or_repeats(auditor):
    start = timezone.now() - timedelta(seconds=1)
    ledger.ledger_append_many([ledger.draft(actor="system:test", action="test.window", subject=("test.thing", str(i)))
                               for i in range(60)])
    ledger.ledger_append_many([ledger.draft(actor="system:test", action="test.window", subject=("test.thing", str(i)))
                               for i in range(60, 130)])
    window = selectors.LedgerFilters(action="test.window", since=start)
    expected = list(LedgerEntry.objects.filter(action="test.window").order_by("-seq").values_list("seq", flat=True))
    seen: list[int] = []
    page = selectors.ledger_search(filters=window, page_size=40)
    while True:
        seen += [entry.seq for entry in page.entries]
        if page.older is None:
            break
        page = selectors.ledger_search(filters=window, before=page.older, page_size=40)
    assert seen == expected
    back = selectors.ledger_search(filters=window, after=expected[45], page_size=40)
    assert [entry.seq for entry in back.entries] == expected[5:45]
    assert back.newer == expected[5]


def test_error_pages_render_without_a_request_context():
    from django.template import loader

    html = loader.get_template("500.html").render()  # Django renders 500.html with no context at all
    assert "Something went wrong" in html and 'href="#main"' in html and "Sign out" not in html
    assert "Not found" in loader.get_template("404.html").render()

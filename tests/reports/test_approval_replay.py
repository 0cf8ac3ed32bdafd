"""verify.py replays every approval from the bundle's entries and names each one that broke its policy.

The forged ledgers are real ledger entries (hash-chained, checkpointed and signed by the server's
keys, which the test pins), written directly with `ledger_append` in the shapes the services
write: only the replay can catch them.
"""

from __future__ import annotations

from typing import Any

import pytest

from audit.ledger import checkpoint_create, ledger_append
from governance.registry.services.approvals import approval_decide
from governance.reports import selectors
from governance.reports.bundle import PEOPLE_ACTION_PREFIXES, BoundedSubject
from tests.reports.bundle_helpers import make_bundle, members, run_verify, verdict

pytestmark = pytest.mark.django_db

SNAPSHOT = {"policy_id": 5, "scope": "tier:high", "quorum": 2, "required_roles": ["risk_officer"],
            "fairness_audit_max_age_days": None, "required_card_fields": [], "expiry_hours": 48}
SUBMITTER, ALICE, BOB, RITA = 901, 902, 903, 904


def user(pk: int, name: str, *roles: str) -> None:
    subject = ("auth.user", str(pk))
    ledger_append(actor="system:test", action="user.created", subject=subject,
                  payload={"username": name, "is_active": True, "is_staff": True, "is_superuser": False})
    for role in roles:
        ledger_append(actor="system:test", action="role.granted", subject=subject, payload={"role": role, "user": name})


def submit(request_id: int = 77, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    state = {"submitted_by": SUBMITTER, "version": 55, "status": "pending", "policy": 5,
             "policy_snapshot": snapshot or SNAPSHOT}
    ledger_append(actor="user:sam", action="approval_request.submitted", subject=("governance.approvalrequest",
                                                                                 str(request_id)),
                  payload={"before": None, "after": state, "state": state})
    return state


def decide(decision_id: int, approver: int, request_id: int = 77) -> int:
    state = {"request": request_id, "approver": approver, "decision": "approve", "approver_roles": ["risk_officer"]}
    return ledger_append(actor=f"user:{approver}", action="approval_request.approve_recorded",
                         subject=("governance.approvaldecision", str(decision_id)),
                         payload={"before": None, "after": state, "state": state}).seq


def approve(state: dict[str, Any], request_id: int = 77) -> None:
    ledger_append(actor="user:x", action="approval_request.approved", subject=("governance.approvalrequest",
                                                                              str(request_id)),
                  payload={"before": {"status": "pending"}, "after": {"status": "approved"},
                           "state": {**state, "status": "approved"}})


def bundle_of(decisions: list[int]) -> bytes:
    checkpoint_create()
    subjects = [("governance.approvalrequest", "77")] + [("governance.approvaldecision", str(d)) for d in decisions]
    people = [BoundedSubject("auth.user", str(pk), 10**9, PEOPLE_ACTION_PREFIXES)
              for pk in (SUBMITTER, ALICE, BOB, RITA)]
    return make_bundle(subjects, bounded_subjects=people)


@pytest.fixture
def people() -> None:
    user(SUBMITTER, "sam", "data_scientist", "approver")
    user(ALICE, "alice", "approver")
    user(BOB, "bob")
    user(RITA, "rita", "risk_officer")


def test_an_approval_that_meets_its_policy_verifies(tmp_path, people):
    state = submit()
    decide(81, RITA)
    decide(82, ALICE)
    approve(state)
    result = run_verify(tmp_path, bundle_of([81, 82]))
    assert result.returncode == 0, result.stdout
    assert "1 approval(s) replayed from the entries" in verdict(result)


def test_an_approval_below_quorum_is_named(tmp_path, people):
    state = submit()
    seq = decide(81, RITA)
    approve(state)
    result = run_verify(tmp_path, bundle_of([81]))
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (f"FAIL [approval] request 77, decision 81 (seq {seq}): quorum: 1 distinct "
                               "approver(s), policy 5 (tier:high) requires 2\n")


def test_an_approval_by_the_submitter_is_named(tmp_path, people):
    state = submit()
    decide(81, RITA)
    seq = decide(82, SUBMITTER)
    approve(state)
    result = run_verify(tmp_path, bundle_of([81, 82]))
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (f"FAIL [approval] request 77, decision 82 (seq {seq}) by user 901 (sam): "
                               "separation of duties: the approver submitted the request\n")


def test_an_approval_by_someone_without_a_decision_role_at_the_time_is_named(tmp_path, people):
    state = submit()
    decide(81, RITA)
    seq = decide(82, BOB)
    approve(state)
    # Bob becomes an approver only after his decision: too late.
    ledger_append(actor="system:test", action="role.granted", subject=("auth.user", str(BOB)),
                  payload={"role": "approver", "user": "bob"})
    result = run_verify(tmp_path, bundle_of([81, 82]))
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (f"FAIL [approval] request 77, decision 82 (seq {seq}) by user 903 (bob): role: the "
                               "approver held no decision role (approver or risk_officer) at the time, by the role "
                               "entries in the bundle\n")


def test_a_required_role_revoked_before_the_decision_is_named(tmp_path, people):
    state = submit()
    ledger_append(actor="system:test", action="role.revoked", subject=("auth.user", str(RITA)),
                  payload={"role": "risk_officer", "user": "rita"})
    ledger_append(actor="system:test", action="role.granted", subject=("auth.user", str(RITA)),
                  payload={"role": "approver", "user": "rita"})
    decide(81, RITA)
    seq = decide(82, ALICE)
    approve(state)
    result = run_verify(tmp_path, bundle_of([81, 82]))
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (f"FAIL [approval] request 77, decision 82 (seq {seq}): required role: no approver "
                               "held the role 'risk_officer' at the time of their decision, which policy 5 "
                               "(tier:high) requires\n")


def test_one_person_deciding_twice_counts_once(tmp_path, people):
    state = submit()
    decide(81, RITA)
    seq = decide(82, RITA)
    approve(state)
    result = run_verify(tmp_path, bundle_of([81, 82]))
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (
        f"FAIL [approval] request 77, decision 82 (seq {seq}) by user 904 (rita): separation of duties: this person "
        "already decided this request (decision 81); one person counts once\n"
        f"FAIL [approval] request 77, decision 82 (seq {seq}): quorum: 1 distinct approver(s), policy 5 (tier:high) "
        "requires 2\n")


def test_pinned_evidence_the_bundle_does_not_hold_is_named(tmp_path, people):
    state = submit(snapshot={**SNAPSHOT, "required_metrics": [{"metric": "impact_ratio", "floor": 0.8}]})
    decide(81, RITA)
    seq = decide(82, ALICE)
    approve(state)
    result = run_verify(tmp_path, bundle_of([81, 82]))
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (f"FAIL [approval] request 77, decision 82 (seq {seq}): evidence: no passing audit of "
                               "version 55 in the bundle covers 'impact_ratio' (required_metrics of policy 5 "
                               "(tier:high))\n")


# --- Complete by rule: a real model's bundle ---------------------------------------------------

def test_a_models_bundle_holds_its_tier_policy_and_the_deciders_entries_and_its_approvals_replay(
        tmp_path, pending, approver, risk_officer, make_user):
    approval_decide(request=pending, by=risk_officer, decision="approve", comment="ok")
    approval_decide(request=pending, by=approver, decision="approve", comment="ok")
    later = make_user("zed", "approver")  # not a decider: none of zed's entries belong in the bundle
    ledger_append(actor="system:test", action="role.granted", subject=("auth.user", str(approver.pk)),
                  payload={"role": "auditor", "user": "alice"})  # after her decision: left out
    plan = selectors.bundle_plan_for_model(model_name=pending.version.model.name)
    assert ("governance.approvalpolicy", str(pending.policy_id)) in plan.subjects  # the tier default policy
    checkpoint_create()
    bundle = make_bundle(plan.subjects, bounded_subjects=plan.bounded)
    import base64
    import json

    files = members(bundle)
    documents = [json.loads(base64.b64decode(json.loads(line)["canonical"]))
                 for line in files["ledger/entries.jsonl"].splitlines()]
    people = {(d["subject"]["id"], d["action"], json.dumps(d["payload"].get("role"))) for d in documents
              if d["subject"]["type"] == "auth.user"}
    assert (str(risk_officer.pk), "role.granted", '"risk_officer"') in people
    assert (str(approver.pk), "role.granted", '"approver"') in people
    assert (str(approver.pk), "permission.granted", "null") in people  # her tier scope
    assert (str(pending.submitted_by_id), "user.created", "null") in people
    assert (str(approver.pk), "role.granted", '"auditor"') not in people
    assert not [key for key in people if key[0] == str(later.pk)]
    assert any(d["action"] == "approval_policy.created" for d in documents)
    manifest = json.loads(files["manifest.json"])
    assert "every approval policy any of those requests was decided under" in manifest["selection_rule"]
    assert {item["id"] for item in manifest["bounded_subjects"] if item["type"] == "auth.user"} == {
        str(pending.submitted_by_id), str(approver.pk), str(risk_officer.pk)}
    result = run_verify(tmp_path, bundle)
    assert result.returncode == 0, result.stdout
    assert "1 approval(s) replayed from the entries" in result.stdout


def test_a_role_the_approver_granted_themselves_does_not_count(tmp_path, people):
    state = submit()
    ledger_append(actor="user:bob", action="role.granted", subject=("auth.user", str(BOB)),
                  payload={"role": "approver", "user": "bob"})
    decide(81, RITA)
    seq = decide(82, BOB)
    approve(state)
    result = run_verify(tmp_path, bundle_of([81, 82]))
    assert result.returncode == 1, result.stdout
    label = f"FAIL [approval] request 77, decision 82 (seq {seq}) by user 903 (bob)"
    assert verdict(result) == (
        f"{label}: separation of duties: the approver granted themselves the role 'approver' (seq {seq - 2}); "
        "it does not count\n"
        f"{label}: role: the approver held no decision role (approver or risk_officer) at the time, by the role "
        "entries in the bundle\n")


def test_a_decision_after_the_tier_was_raised_back_is_judged_by_the_stricter_tier_policy(tmp_path, people):
    def policy(pk: int, tier: str, quorum: int, roles: list[str]) -> None:
        state = {"model": None, "risk_tier": tier, "quorum": quorum, "required_roles": roles,
                 "required_card_fields": [], "fairness_audit_max_age_days": None, "expiry_hours": 48}
        ledger_append(actor="user:rita", action="approval_policy.created", subject=("governance.approvalpolicy",
                                                                                   str(pk)),
                      payload={"before": None, "after": state, "state": state})

    def model(tier: str) -> None:
        state = {"name": "scorer", "risk_tier": tier, "team": 1, "created_by": SUBMITTER}
        ledger_append(actor="user:sam", action="model.updated", subject=("governance.registeredmodel", "3"),
                      payload={"before": None, "after": {"risk_tier": tier}, "state": state})

    policy(5, "high", 2, ["risk_officer"])
    policy(6, "minimal", 1, [])
    model("high")
    ledger_append(actor="user:sam", action="model_version.registered", subject=("governance.modelversion", "55"),
                  payload={"before": None, "after": {}, "state": {"model": 3, "created_by": SUBMITTER}})
    model("minimal")  # lowered to submit under the lenient policy ...
    state = submit(snapshot={"policy_id": 6, "scope": "tier:minimal", "quorum": 1, "required_roles": [],
                             "fairness_audit_max_age_days": None, "required_card_fields": [], "expiry_hours": 48})
    model("high")  # ... and raised back before the decision
    seq = decide(81, ALICE)
    approve(state)
    checkpoint_create()
    subjects = [("governance.approvalrequest", "77"), ("governance.approvaldecision", "81"),
                ("governance.approvalpolicy", "5"), ("governance.approvalpolicy", "6"),
                ("governance.registeredmodel", "3"), ("governance.modelversion", "55")]
    people_bounds = [BoundedSubject("auth.user", str(pk), 10**9, PEOPLE_ACTION_PREFIXES)
                     for pk in (SUBMITTER, ALICE)]
    result = run_verify(tmp_path, make_bundle(subjects, bounded_subjects=people_bounds))
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (
        f"FAIL [approval] request 77, decision 81 (seq {seq}): policy: decided under policy 6 (tier:minimal), but "
        "when it was decided the model's risk tier was 'high', whose policy 5 is stricter: quorum 2 (not 1); "
        "roles risk_officer\n")


def _audit(run_id: int, *, passed: bool, days_ago: int) -> None:
    from datetime import UTC, datetime, timedelta

    finished = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    state = {"model_version": 55, "status": "done", "passed": passed, "finished_at": finished}
    ledger_append(actor="system:fairness", action="fairness_audit.finished", subject=("fairness.auditrun",
                                                                                     str(run_id)),
                  payload={"before": None, "after": state, "state": state})


@pytest.mark.parametrize(("passed", "days_ago", "named"), [(True, 3, False), (True, 40, True), (False, 3, True)])
def test_the_fairness_audit_the_policy_asks_for_must_be_passing_and_recent(tmp_path, people, passed, days_ago,
                                                                           named):
    state = submit(snapshot={**SNAPSHOT, "fairness_audit_max_age_days": 30})
    _audit(61, passed=passed, days_ago=days_ago)
    decide(81, RITA)
    seq = decide(82, ALICE)
    approve(state)
    checkpoint_create()
    subjects = [("governance.approvalrequest", "77"), ("governance.approvaldecision", "81"),
                ("governance.approvaldecision", "82"), ("fairness.auditrun", "61")]
    bounds = [BoundedSubject("auth.user", str(pk), 10**9, PEOPLE_ACTION_PREFIXES) for pk in (SUBMITTER, ALICE, RITA)]
    result = run_verify(tmp_path, make_bundle(subjects, bounded_subjects=bounds))
    if not named:
        assert result.returncode == 0, result.stdout
        return
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (f"FAIL [approval] request 77, decision 82 (seq {seq}): evidence: no passing fairness "
                               "audit of version 55 at most 30 day(s) old is in the bundle, which policy 5 "
                               "(tier:high) requires\n")


def test_a_model_card_field_the_policy_requires_must_be_filled_when_approved(tmp_path, people):
    ledger_append(actor="user:sam", action="model_version.registered", subject=("governance.modelversion", "55"),
                  payload={"before": None, "after": {}, "state": {"model": 3, "created_by": SUBMITTER,
                                                                  "intended_use": "Credit", "limitations": " "}})
    state = submit(snapshot={**SNAPSHOT, "required_card_fields": ["intended_use", "limitations"]})
    decide(81, RITA)
    seq = decide(82, ALICE)
    approve(state)
    checkpoint_create()
    subjects = [("governance.approvalrequest", "77"), ("governance.approvaldecision", "81"),
                ("governance.approvaldecision", "82"), ("governance.modelversion", "55")]
    bounds = [BoundedSubject("auth.user", str(pk), 10**9, PEOPLE_ACTION_PREFIXES) for pk in (SUBMITTER, ALICE, RITA)]
    result = run_verify(tmp_path, make_bundle(subjects, bounded_subjects=bounds))
    assert result.returncode == 1, result.stdout
    assert verdict(result) == (f"FAIL [approval] request 77, decision 82 (seq {seq}): evidence: the model card "
                               "field 'limitations' was empty, which policy 5 (tier:high) requires\n")

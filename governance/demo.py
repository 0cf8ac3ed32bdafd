"""Demo data for the decision domain: teams, users in every role, two high-risk models, versions,
an approval history, deployments with a rollback, a pending request and a pipeline account.

Idempotent: if the demo model exists, nothing is written. Every step goes through the services,
so the ledger holds the whole story, told by the people who acted in it. Demo users sign in with
the documented password `demo-<username>-pass` (a demo database only; see the README).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.actor import acting_as
from core.errors import ServiceError
from governance import accounts
from governance.models import MODEL_CARD_FIELDS, ApprovalPolicyChange, RegisteredModel
from governance.registry.services.access import approver_scope_grant, role_grant, service_account_create
from governance.registry.services.approvals import (
    approval_decide,
    approval_policy_change_approve,
    approval_policy_change_reject,
    approval_policy_set,
    model_version_submit,
)
from governance.registry.services.common import TEAM_GROUP_PREFIX, AdminCannotActAsDataScientist
from governance.registry.services.deployments import deployment_record, deployment_rollback, environment_create
from governance.registry.services.registry import model_register, model_version_register, team_create

ACTOR = "system:seed_demo"

# username: (roles, teams)
USERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dana": (("data_scientist",), ("credit-risk",)),
    "hiro": (("data_scientist",), ("hiring",)),
    "alice": (("approver",), ()),
    "rita": (("risk_officer",), ()),
    "audrey": (("auditor",), ()),
    "victor": (("viewer",), ("credit-risk",)),
    "ada": (("admin",), ()),
}


def demo_password(username: str) -> str:
    return f"demo-{username}-pass"


def _manifest(model: str, label: str) -> dict[str, str]:
    def digest(name: str) -> str:
        return hashlib.sha256(f"{model}/{label}/{name}".encode()).hexdigest()
    return {"model.onnx": digest("model.onnx"), "preprocess/encoder.json": digest("encoder"),
            "metrics/eval.json": digest("eval")}


CREDIT_CARD = {
    "intended_use": "Estimate 12-month probability of default for consumer credit applications; "
                    "a credit officer makes the decision.",
    "limitations": "Not validated for small-business or mortgage lending; applicants with thin credit files "
                   "are scored with wider uncertainty.",
    "evaluation_data": "Out-of-time holdout 2024-Q4: 118,402 applications from the national portfolio.",
    "ethical_considerations": "Age and sex are excluded as features; disparate impact is monitored by age band "
                              "and sex with the four-fifths rule.",
}
SCREENER_CARD = {
    "intended_use": "Rank applications for recruiter review; never rejects a candidate on its own.",
    "limitations": "Trained on English-language CVs only.",
    "evaluation_data": "2,400 CVs labelled by two recruiters each.",
    "ethical_considerations": "Subject to NYC Local Law 144 bias audits; selection rates by sex and race/ethnicity "
                              "are published.",
}


# What every fairness audit of a high-risk model must check, at least this strictly.
HIGH_RISK_FLOORS = {"impact_ratio": {"min": 0.8}, "equalized_odds_difference": {"max": 0.1}}


def _refused_weakening(rita: Any) -> None:
    """A weakening waits for a second risk officer; the officer who asked cannot approve it herself
    (the ledger keeps the refusal with its code), so she withdraws it."""
    change = approval_policy_set(by=rita, risk_tier="high", quorum=1, required_roles=[],
                                 fairness_audit_max_age_days=90, required_card_fields=list(MODEL_CARD_FIELDS),
                                 fairness_metric_floors=HIGH_RISK_FLOORS, fairness_min_group_size=50,
                                 expiry_hours=72, comment="Quorum 1 for the quarter-end rush?")
    if not isinstance(change, ApprovalPolicyChange):
        return
    try:
        approval_policy_change_approve(change=change, by=rita, comment="Approving my own request")
    except ServiceError:
        pass  # refused: approval_policy.change_approve.refused, code policy_change_same_officer
    approval_policy_change_reject(change=change, by=rita, comment="Withdrawn: four eyes stay.")


def _users() -> dict[str, Any]:
    user_model = get_user_model()
    users: dict[str, Any] = {}
    with acting_as(ACTOR):
        for username, (roles, teams) in USERS.items():
            user = user_model.objects.filter(username=username).first()
            if user is None:
                user = accounts.user_create(by=ACTOR, username=username, email=f"{username}@demo.example.org",
                                            is_staff=True)
                accounts.user_password_set(user=user, by=ACTOR, password=demo_password(username))
            for role in roles:
                role_grant(user=user, role=role, by=ACTOR)
            for team in teams:
                accounts.user_groups_add(user=user, groups=[Group.objects.get(name=f"{TEAM_GROUP_PREFIX}{team}")],
                                         by=ACTOR)
            users[username] = user_model.objects.get(pk=user.pk)
    return users


def _refused_self_grant(ada: Any) -> None:
    """The admin tries to make herself a risk officer: refused, and kept as `role.granted.refused`."""
    try:
        role_grant(user=ada, role="risk_officer", by=ada)
    except ServiceError:
        return
    raise RuntimeError("the demo admin granted herself a decision role")


def seed(stdout: Any) -> str:
    if RegisteredModel.objects.filter(name="credit-default-scorer").exists():
        return "already seeded"
    teams = {name: team_create(by=ACTOR, name=name, display_name=title)
             for name, title in (("credit-risk", "Credit risk modelling"), ("hiring", "Talent analytics"))}
    users = _users()
    approver_scope_grant(by=ACTOR, to=users["alice"], risk_tier="high")
    users["alice"] = get_user_model().objects.get(pk=users["alice"].pk)
    _refused_self_grant(users["ada"])
    staging = environment_create(by=ACTOR, name="staging", is_production=False,
                                          description="Shadow traffic, no customer impact")
    production = environment_create(by=ACTOR, name="production", is_production=True,
                                             description="Live decisions")
    approval_policy_set(by=ACTOR, risk_tier="high", quorum=2, required_roles=["risk_officer"],
                                 required_card_fields=list(MODEL_CARD_FIELDS), expiry_hours=72,
                                 comment="Four-eyes with a risk officer for high-risk models")
    approval_policy_set(by=ACTOR, risk_tier="limited", quorum=1, required_roles=[],
                                 required_card_fields=["intended_use", "limitations"], expiry_hours=72)
    approval_policy_set(by=ACTOR, risk_tier="minimal", quorum=1, required_roles=[], expiry_hours=168)

    dana, hiro, alice, rita = users["dana"], users["hiro"], users["alice"], users["rita"]
    scorer = model_register(
        by=dana, name="credit-default-scorer", team=teams["credit-risk"], risk_tier="high",
        description="Gradient-boosted probability-of-default model for consumer loans.",
        intended_purpose="Support credit officers deciding consumer loan applications (EU AI Act Annex III 5(b)).",
        affected_groups=["loan applicants", "co-signers"], contacts=["credit-models@demo.example.org"])
    screener = model_register(
        by=hiro, name="resume-screener", team=teams["hiring"], risk_tier="high",
        description="Ranks incoming CVs for recruiter review.",
        intended_purpose="Prioritise applications; an automated employment decision tool under NYC LL144.",
        affected_groups=["job applicants"], contacts=["talent-analytics@demo.example.org"])

    def version(model: RegisteredModel, by: Any, label: str, auc: float, card: dict[str, str]) -> Any:
        return model_version_register(
            model=model, by=by, label=label, artifact_uri=f"s3://demo-models/{model.name}/{label}/",
            manifest=_manifest(model.name, label), framework="lightgbm 4.5",
            training_metrics={"auc": auc, "ks": round(auc - 0.35, 3)}, **card)

    def approve(item: Any, note: str) -> None:
        request = model_version_submit(version=item, by=dana, comment=note)
        approval_decide(request=request, by=alice, decision="approve",
                                 comment="Validation report reviewed; discrimination and calibration within limits.")
        approval_decide(request=request, by=rita, decision="approve",
                                 comment="Risk accepted; monitoring plan in place.")

    v100 = version(scorer, dana, "1.0.0", 0.781, CREDIT_CARD)
    approve(v100, "First production candidate.")
    deployment_record(version=v100, environment=staging, by=dana, comment="Shadow run")
    deployment_record(version=v100, environment=production, by=dana, comment="Initial release")
    v110 = version(scorer, dana, "1.1.0", 0.794, CREDIT_CARD)
    approve(v110, "Retrained on 2025-Q1 data.")
    current = deployment_record(version=v110, environment=production, by=dana, comment="Quarterly refresh")
    back = deployment_rollback(deployment=current, by=dana,
                               comment="Approval rate for applicants under 25 dropped; rolling back to 1.0.0.")
    # An admin does not act as a data scientist: her attempt stays in the ledger as a refusal.
    try:
        deployment_rollback(deployment=back, by=users["ada"], comment="Put 1.1.0 back, the complaints can wait.")
    except AdminCannotActAsDataScientist:
        pass

    # The policy is tightened: from now on a passing fairness audit (at most 90 days old) is required,
    # and the policy pins what that audit must check.
    approval_policy_set(by=rita, risk_tier="high", quorum=2, required_roles=["risk_officer"],
                        fairness_audit_max_age_days=90, required_card_fields=list(MODEL_CARD_FIELDS),
                        fairness_metric_floors=HIGH_RISK_FLOORS, fairness_min_group_size=50,
                        expiry_hours=72, comment="Fairness audit now required before approval")
    _refused_weakening(rita)
    v120 = version(scorer, dana, "1.2.0", 0.792, CREDIT_CARD)
    pending = model_version_submit(version=v120, by=dana,
                                            comment="Fix for the under-25 approval-rate drop; please review.")
    version(screener, hiro, "0.9.0", 0.712, SCREENER_CARD)

    account, token = service_account_create(
        by=ACTOR, name="training-pipeline", role="data_scientist", models=[scorer],
        description="Nightly training job for credit-default-scorer")
    stdout.write("governance demo users (demo database only; password demo-<username>-pass): "
                 + ", ".join(f"{name} ({'/'.join(roles)})" for name, (roles, _) in USERS.items()))
    stdout.write(f"service account {account.user.username} token (shown once, not stored): {token}")
    return (f"2 teams, {len(USERS)} users, 2 models, 4 versions, pending approval request #{pending.pk}, "
            "production rollback of credit-default-scorer 1.1.0 -> 1.0.0")

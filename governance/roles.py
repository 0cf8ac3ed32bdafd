"""Roles are Django groups with fixed names; this module says which permissions each one holds.

Role permissions are *capabilities* ("may submit versions"); *which* models they apply to is
decided by object permissions (django-guardian) that a team's group holds on its models, or
that an approver holds on a model or, for a whole risk tier, through `approve_tier_<tier>`.
Auditors and admins hold `view_all_registeredmodels`, so they see every model.

`sync_role_groups` creates the groups and adds missing permissions; it never removes a
permission someone granted by hand. The data migration calls it, and so does a post-migrate
hook, so that permissions of models added later by other apps reach the roles too.
"""

from __future__ import annotations

from typing import Any

VIEWER = "viewer"
DATA_SCIENTIST = "data_scientist"
APPROVER = "approver"
RISK_OFFICER = "risk_officer"
AUDITOR = "auditor"
ADMIN = "admin"
ROLE_NAMES = (VIEWER, DATA_SCIENTIST, APPROVER, RISK_OFFICER, AUDITOR, ADMIN)

# Apps whose every `view_*` permission auditors (and admins) hold: they read everything.
READABLE_APPS = ("governance", "audit", "lineage", "fairness", "monitoring", "reports", "mlflow_integration")
# Apps whose add/change/delete permissions admins hold (never the ledger: it is append-only).
ADMINISTERED_APPS = ("governance", "lineage", "fairness", "reports")

_VIEW_GOVERNANCE = [
    "governance.view_team",
    "governance.view_registeredmodel",
    "governance.view_modelversion",
    "governance.view_environment",
    "governance.view_deployment",
    "governance.view_approvalpolicy",
    "governance.view_approvalrequest",
    "governance.view_approvaldecision",
]
_SUBMIT = [
    "governance.add_registeredmodel",
    "governance.change_registeredmodel",
    "governance.add_modelversion",
    "governance.change_modelversion",
    "governance.add_approvalrequest",
    "governance.change_approvalrequest",
    "governance.add_deployment",
    "governance.change_deployment",
]
# Pipelines (service accounts with the data-scientist role) record lineage and sign attestations.
_RECORD_LINEAGE = [
    "lineage.add_dataset",
    "lineage.add_datasetversion",
    "lineage.add_trainingrun",
    "lineage.add_pipelinekey",
    "lineage.add_attestation",
]
# Admins run the system (users, teams, environments, service accounts), never the models: whatever
# else they hold, they do not use a data scientist's capabilities (register, change, submit,
# withdraw, deploy, roll back), in any team. The role never gets them, and the services refuse
# admins and superusers who hold them some other way (registry.services.common.refuse_admin).
ADMIN_WITHHELD = frozenset(_SUBMIT + ["governance.manage_all_registeredmodels"])
_DECIDE = ["governance.add_approvaldecision"]
# Risk officers own the beat schedule (governance.schedules records and guards every change).
_SCHEDULES = [f"django_celery_beat.{verb}_{model}" for verb in ("view", "add", "change", "delete")
              for model in ("periodictask", "intervalschedule", "crontabschedule", "solarschedule", "clockedschedule")]
_ALL_TIERS = [
    "governance.approve_tier_minimal",
    "governance.approve_tier_limited",
    "governance.approve_tier_high",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _VIEW_GOVERNANCE,
    DATA_SCIENTIST: _VIEW_GOVERNANCE + _SUBMIT + _RECORD_LINEAGE,
    # Approvers are scoped by object permissions or approve_tier_* granted to them or their group.
    APPROVER: _VIEW_GOVERNANCE + _DECIDE + ["governance.view_risktierchange", "governance.change_risktierchange",
                                            "fairness.view_auditspec", "fairness.view_auditrun"],
    # Risk officers review every tier and own the approval policies.
    RISK_OFFICER: _VIEW_GOVERNANCE + _DECIDE + _ALL_TIERS + [
        "governance.view_all_registeredmodels",
        "governance.add_approvalpolicy",
        "governance.change_approvalpolicy",
        "governance.view_approvalpolicychange",
        "governance.change_approvalpolicychange",
        "governance.view_risktierchange",
        "governance.add_risktierchange",
        "governance.change_risktierchange",
        # Confirming specs and waiving failing audits happen in the fairness admin too.
        "fairness.view_auditspec",
        "fairness.view_auditrun",
        "fairness.view_auditwaiver",
        # Retention overrides and erasure requests of sealed data files (issue 18) in the admin.
        "fairness.view_sealedfile",
    ] + _SCHEDULES,
    AUDITOR: ["governance.view_all_registeredmodels", "audit.view_ledgerentry"],
    ADMIN: ["governance.view_all_registeredmodels", "audit.view_ledgerentry", "auth.view_user", "auth.add_user",
            "auth.change_user", "auth.view_group", "auth.change_group"],
}
_DECISION_PERMISSIONS = {tuple(name.split(".", 1)) for name in _DECIDE + _ALL_TIERS} | {
    ("governance", "approve_registeredmodel")}
# Approval policies belong to risk officers: admins read them but never write them.
_POLICY_WRITES = {("governance", f"{verb}_approvalpolicy") for verb in ("add", "change", "delete")} | {
    ("governance", f"{verb}_approvalpolicychange") for verb in ("add", "change", "delete")} | {
    ("governance", f"{verb}_risktierchange") for verb in ("add", "change", "delete")}
_ADMIN_WITHHELD_PAIRS = {tuple(name.split(".", 1)) for name in ADMIN_WITHHELD}
# Bundle export permissions (whatever the reports app names them) go to auditors and admins.
EXPORT_CODENAME_PREFIX = "export_"


def wanted_permissions(role: str, available: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """(app_label, codename) pairs the role should hold, among the `available` ones."""
    explicit = {tuple(name.split(".", 1)) for name in ROLE_PERMISSIONS[role]}
    wanted: set[tuple[str, str]] = {pair for pair in available if pair in explicit}
    if role == DATA_SCIENTIST:
        wanted |= {(app, code) for app, code in available if app == "lineage" and code.startswith("view_")}
    if role in (AUDITOR, ADMIN):
        wanted |= {(app, code) for app, code in available
                   if app in READABLE_APPS and (code.startswith("view_") or code.startswith(EXPORT_CODENAME_PREFIX))}
    if role == ADMIN:
        # Admins run the system but do not decide approvals (that stays with approvers) nor do a
        # data scientist's work.
        wanted |= {(app, code) for app, code in available
                   if app in ADMINISTERED_APPS and (app, code) not in _DECISION_PERMISSIONS
                   and (app, code) not in _POLICY_WRITES and (app, code) not in _ADMIN_WITHHELD_PAIRS}
    return wanted


def sync_role_groups(*, group_model: Any, permission_model: Any) -> dict[str, int]:
    """Create the role groups and add the permissions they miss; return how many were added per role."""
    available = list(permission_model.objects.values_list("content_type__app_label", "codename", "pk"))
    by_pair = {(app, code): pk for app, code, pk in available}
    pairs = list(by_pair)
    added: dict[str, int] = {}
    for role in ROLE_NAMES:
        group, _ = group_model.objects.get_or_create(name=role)
        have = set(group.permissions.values_list("pk", flat=True))
        missing = [by_pair[pair] for pair in sorted(wanted_permissions(role, pairs)) if by_pair[pair] not in have]
        if missing:
            group.permissions.add(*missing)
        added[role] = len(missing)
    return added


# --- Separation of duties between roles, and the privileges that take two people ----------------
# The one matrix: a role -> the roles its holder may not also hold. Every grant path (the account
# services, the admin's user and group forms, approver scopes, grant requests) checks it through
# `governance.accounts.privileges_check`. Approver scopes (decision permissions held directly)
# count as the approver role; superusers hold everything and are made only on the command line.
EXCLUDES: dict[str, frozenset[str]] = {
    ADMIN: frozenset({APPROVER, RISK_OFFICER}),
    APPROVER: frozenset({ADMIN}),
    RISK_OFFICER: frozenset({ADMIN}),
    VIEWER: frozenset(),
    DATA_SCIENTIST: frozenset(),
    AUDITOR: frozenset(),
}
# Roles that decide approvals, and the roles whose grant needs a request approved by a second admin.
DECISION_ROLES = frozenset({APPROVER, RISK_OFFICER})
GUARDED_ROLES = DECISION_ROLES | {ADMIN}
# Permissions that make their holder an approver (scopes) or an admin when granted directly to a
# user or a group, outside the role groups' own definitions.
DECISION_PERMISSIONS = frozenset(f"{app}.{code}" for app, code in _DECISION_PERMISSIONS)
ADMIN_PERMISSION_APPS = frozenset({"auth"})
ADMIN_PERMISSIONS = frozenset({"governance.manage_all_registeredmodels"})


def permission_role(name: str) -> str | None:
    """The role a directly granted permission (`app.codename`) amounts to, if it is a guarded one."""
    if name in DECISION_PERMISSIONS:
        return APPROVER
    if name in ADMIN_PERMISSIONS or name.split(".", 1)[0] in ADMIN_PERMISSION_APPS:
        return ADMIN
    return None


def excluded_pairs(held: set[str], adding: set[str]) -> list[tuple[str, str]]:
    """(role being added, role held or added with it) pairs that the matrix forbids together."""
    together = held | adding
    return sorted((role, other) for role in adding for other in EXCLUDES.get(role, frozenset()) if other in together)


def sod_matrix_markdown() -> str:
    """The matrix as the README shows it (a test checks the README's copy against this)."""
    lines = ["| role | may not also hold |", "|---|---|"]
    for role in ROLE_NAMES:
        lines.append(f"| `{role}` | {', '.join(f'`{other}`' for other in sorted(EXCLUDES[role])) or '-'} |")
    return "\n".join(lines)

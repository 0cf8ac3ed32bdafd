"""Privilege grants that take two people: one admin requests, another admin approves, then it is executed.

A decision role (approver, risk officer), an approver scope (a risk tier or one model), the admin
role and superuser are granted to a person only this way (`accounts.privileges_check` refuses any
other grant by a person). Each step is a ledger entry: `privilege_grant.requested`,
`privilege_grant.approved` / `privilege_grant.rejected`, then the grant's own entries
(`role.granted`, `permission.granted`) and `privilege_grant.granted`. The requester never decides
their own request, the grantee never decides a grant to themselves, and the separation-of-duties
matrix (`governance.roles.EXCLUDES`) is checked when the request is made and again when it is
executed. A superuser grant, once approved, is executed only on the command line
(`manage.py superuser_grant <id>`). A refused step is kept as `<action>.refused` with its code.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.ledger import lock_for_update
from audit.refusals import refusal_recorded
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from governance import accounts
from governance.models import Decision, GrantStatus, PrivilegeGrantRequest, PrivilegeKind, RiskTier
from governance.permissions import is_active_user, is_service_account
from governance.registry.services.access import approver_scope_grant, role_grant
from governance.roles import GUARDED_ROLES, excluded_pairs

MIN_REASON_CHARS = 3
MANAGE_USERS = "auth.change_user"


def _require_admin(by: Any, what: str) -> None:
    if not (is_active_user(by) and not is_service_account(by) and by.has_perm(MANAGE_USERS)):
        raise Forbidden(f"Only admins {what}.", code="permission_denied")


def _sod_check(grant: PrivilegeGrantRequest) -> None:
    pairs = excluded_pairs(accounts.held_roles(grant.grantee), grant.roles)
    if pairs:
        raise Conflict("Separation of duties: these roles exclude each other.",
                       code="privilege_separation_of_duties",
                       extra={"user": grant.grantee.get_username(), "pairs": [list(pair) for pair in pairs]})


def _payload(grant: PrivilegeGrantRequest) -> dict[str, Any]:
    return {"grantee": grant.grantee.get_username(), "privilege": grant.privilege_label}


def privilege_grant_request(*, by: Any, grantee: Any, kind: str, reason: str, role: str = "", risk_tier: str = "",
                            model: Any = None) -> PrivilegeGrantRequest:
    """Ask that `grantee` receive a guarded privilege; another admin decides."""
    grant = PrivilegeGrantRequest(grantee=grantee, kind=kind, role=role or "", risk_tier=risk_tier or "",
                                  model=model, reason=(reason or "").strip())
    attempt = {"grantee": grantee.get_username(), "kind": kind, "role": role, "risk_tier": risk_tier,
               "model": getattr(model, "name", None)}
    with refusal_recorded(actor=by, action="privilege_grant.requested", subject=("auth.user", str(grantee.pk)),
                          attempt=attempt):
        _require_admin(by, "request privilege grants")
        _validate(grant)
        if accounts.is_same_person(by, grantee):
            raise Forbidden("Nobody requests a privilege for themselves.", code="privilege_self_change",
                            extra={"user": grantee.get_username()})
        _sod_check(grant)
        with transaction.atomic():
            grant.requested_by = by
            grant.requested_at = timezone.now()
            grant.save_recorded(action="privilege_grant.requested", by=by, extra=_payload(grant))
    return grant


def _validate(grant: PrivilegeGrantRequest) -> None:
    if len(grant.reason) < MIN_REASON_CHARS:
        raise InvalidInput("A grant request needs a reason.", code="reason_required")
    if is_service_account(grant.grantee) or not grant.grantee.is_active:
        raise InvalidInput("Privileges are granted to active people, not pipelines.", code="privilege_grant_invalid")
    valid = {
        PrivilegeKind.ROLE: grant.role in GUARDED_ROLES and not grant.risk_tier and grant.model is None,
        PrivilegeKind.TIER_SCOPE: grant.risk_tier in RiskTier.values and not grant.role and grant.model is None,
        PrivilegeKind.MODEL_SCOPE: grant.model is not None and not grant.role and not grant.risk_tier,
        PrivilegeKind.SUPERUSER: not grant.role and not grant.risk_tier and grant.model is None,
    }
    if not valid.get(grant.kind, False):  # type: ignore[call-overload]
        raise InvalidInput("A grant names one role (approver, risk_officer, admin), one risk tier, one model, "
                           "or superuser.", code="privilege_grant_invalid",
                           extra={"kinds": list(PrivilegeKind.values), "roles": sorted(GUARDED_ROLES)})


def _execute(grant: PrivilegeGrantRequest, *, by: Any) -> None:
    """Run an approved grant through the account services, which accept it only with this request."""
    if grant.kind == PrivilegeKind.ROLE:
        role_grant(user=grant.grantee, role=grant.role, by=by, grant_request=grant)
    elif grant.kind == PrivilegeKind.TIER_SCOPE:
        approver_scope_grant(by=by, to=grant.grantee, risk_tier=grant.risk_tier, grant_request=grant)
    elif grant.kind == PrivilegeKind.MODEL_SCOPE:
        approver_scope_grant(by=by, to=grant.grantee, model=grant.model, grant_request=grant)
    elif grant.kind == PrivilegeKind.SUPERUSER:
        accounts.user_flags_set(user=grant.grantee, by=by, is_staff=True, is_superuser=True)
    grant.status = GrantStatus.GRANTED
    grant.save_recorded(action="privilege_grant.granted", by=by, extra=_payload(grant))


def _locked(grant: PrivilegeGrantRequest) -> PrivilegeGrantRequest:
    found = lock_for_update(PrivilegeGrantRequest.objects).filter(pk=grant.pk).first()
    if found is None:
        raise NotFound("No such grant request.", code="privilege_grant_not_found")
    return found


def privilege_grant_decide(*, grant: PrivilegeGrantRequest, by: Any, decision: str,
                           comment: str = "") -> PrivilegeGrantRequest:
    """A second admin approves (and so executes, except a superuser grant) or rejects a pending request."""
    comment = (comment or "").strip()
    action = "privilege_grant.approved" if decision == Decision.APPROVE else "privilege_grant.rejected"
    with refusal_recorded(actor=by, action=action, subject=("governance.privilegegrantrequest", str(grant.pk)),
                          attempt={"decision": decision, **_payload(grant)}):
        _require_admin(by, "decide privilege grants")
        if decision not in Decision.values:
            raise InvalidInput("The decision is 'approve' or 'reject'.", code="invalid_decision")
        if decision == Decision.REJECT and len(comment) < MIN_REASON_CHARS:
            raise InvalidInput("A rejection needs a reason.", code="reason_required")
        if accounts.is_same_person(by, grant.requested_by):
            raise Forbidden("The requester of a grant does not decide it.", code="privilege_grant_own_request")
        if accounts.is_same_person(by, grant.grantee):
            raise Forbidden("Nobody decides a grant to themselves.", code="privilege_self_change",
                            extra={"user": grant.grantee.get_username()})
        if decision == Decision.APPROVE:
            _sod_check(grant)
        with transaction.atomic():
            grant = _locked(grant)
            if grant.status != GrantStatus.PENDING:
                raise Conflict("The grant request is no longer pending.", code="privilege_grant_not_pending",
                               extra={"status": grant.status})
            grant.status = GrantStatus.APPROVED if decision == Decision.APPROVE else GrantStatus.REJECTED
            grant.decided_by = by
            grant.decided_at = timezone.now()
            grant.decision_comment = comment
            grant.save_recorded(action=action, by=by, extra=_payload(grant))
            if decision == Decision.APPROVE and grant.kind != PrivilegeKind.SUPERUSER:
                _execute(grant, by=by)
    return grant


def superuser_grant_execute(*, grant: PrivilegeGrantRequest, by: str) -> PrivilegeGrantRequest:
    """Make the grantee of an approved superuser request a superuser: the command line's half."""
    with refusal_recorded(actor=by, action="privilege_grant.granted",
                          subject=("governance.privilegegrantrequest", str(grant.pk)), attempt=_payload(grant)):
        if not accounts.is_system_actor(by):
            raise Forbidden("Superusers are made only on the command line.", code="superuser_command_line_only")
        with transaction.atomic():
            grant = _locked(grant)
            if grant.kind != PrivilegeKind.SUPERUSER or grant.status != GrantStatus.APPROVED:
                raise Conflict("Only an approved superuser grant request is executed here.",
                               code="privilege_grant_not_pending", extra={"status": grant.status})
            _execute(grant, by=by)
    return grant

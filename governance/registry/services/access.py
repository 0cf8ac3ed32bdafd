"""Object permissions, approver scopes, roles, service accounts and their tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db import IntegrityError, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from audit.ledger import lock_for_update
from audit.refusals import refusal_recorded
from core.actor import acting_as
from core.errors import Conflict, Forbidden, InvalidInput
from governance import accounts
from governance.models import (
    RegisteredModel,
    RiskTier,
    ServiceAccount,
    ServiceToken,
    TokenScope,
)
from governance.registry.services.common import (
    SERVICE_USERNAME_PREFIX,
    TEAM_OBJECT_PERMISSIONS,
    TOKEN_PREFIX,
    User,
    actor_text,
    clean_text,
    full_clean,
    insert_unique,
    may,
    reason_required,
    require,
)
from governance.roles import APPROVER, ROLE_NAMES, permission_role


def _principal(who: Any) -> str:
    return f"group:{who.name}" if isinstance(who, Group) else f"user:{who.get_username()}"


def _scope_check(*, by: Any, to: Any, grant_request: Any) -> None:
    """An approver scope is the approver role: granted to a person only through an approved request,
    never to oneself, never to an admin (accounts.privileges_check); groups get scopes only from code."""
    with refusal_recorded(actor=by, action="permission.granted",
                          subject=("auth.group" if isinstance(to, Group) else "auth.user", str(to.pk)),
                          attempt={"to": _principal(to), "role": APPROVER}):
        if isinstance(to, Group):
            if not accounts.is_system_actor(by):
                raise Forbidden("Approver scopes go to people, through a grant request.",
                                code="privilege_request_required", extra={"group": to.name})
            return
        accounts.privileges_check(by=by, user=to, adding={APPROVER}, grant_request=grant_request)


def permission_grant(*, permission: str, to: Any, obj: Any, by: Any, grant_request: Any = None) -> None:
    """Grant an object permission (guardian) to a user or group; the signal handler records it.
    A decision permission (an approver scope) goes through `_scope_check` first."""
    if permission_role(permission) is not None:
        _scope_check(by=by, to=to, grant_request=grant_request)
    with transaction.atomic(), acting_as(by):
        assign_perm(permission, to, obj)


def permission_revoke(*, permission: str, frm: Any, obj: Any, by: Any) -> None:
    with transaction.atomic(), acting_as(by):
        remove_perm(permission, frm, obj)


def approver_scope_grant(*, by: Any, to: Any, model: RegisteredModel | None = None,
                         risk_tier: str | None = None, grant_request: Any = None) -> None:
    """Scope an approver to one model, or to a whole risk tier: for a person, the execution of an
    approved grant request (`governance.grants`); system actors (seed_demo, setup) grant directly."""
    require(may(by, "auth.change_group"), "You may not grant approver scopes.")
    if (model is None) == (risk_tier is None):
        raise InvalidInput("Give either a model or a risk tier.", code="invalid_input")
    if model is not None:
        permission_grant(permission="governance.approve_registeredmodel", to=to, obj=model, by=by,
                         grant_request=grant_request)
        return
    if risk_tier not in RiskTier.values:
        raise InvalidInput(f"Unknown risk tier '{risk_tier}'.", code="invalid_risk_tier")
    _scope_check(by=by, to=to, grant_request=grant_request)
    permission = Permission.objects.get(content_type__app_label="governance", codename=f"approve_tier_{risk_tier}")
    with transaction.atomic(), acting_as(by):
        if isinstance(to, Group):
            to.permissions.add(permission)
        else:
            to.user_permissions.add(permission)


def role_grant(*, user: Any, role: str, by: Any, grant_request: Any = None) -> None:
    """Put a user in a role group; recorded as `role.granted` by `accounts.user_groups_add`, which
    refuses a decision role or admin granted by a person without an approved `grant_request`."""
    if role not in ROLE_NAMES:
        raise InvalidInput(f"Unknown role '{role}'.", code="invalid_role", extra={"allowed": list(ROLE_NAMES)})
    require(may(by, "auth.change_user"), "You may not grant roles.")
    accounts.user_groups_add(user=user, groups=[Group.objects.get(name=role)], by=by, grant_request=grant_request)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> tuple[str, str]:
    """(prefix, whole token). The prefix finds the row; only the hash of the whole token is stored."""
    prefix = secrets.token_hex(6)  # 48 bits: collisions between live tokens are negligible
    return prefix, f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def service_account_create(*, by: Any, name: str, role: str, models: list[RegisteredModel] | None = None,
                           description: str = "", scope: str = TokenScope.WRITE,
                           expires_at: datetime | None = None) -> tuple[ServiceAccount, str]:
    """A pipeline user `svc-<name>` in `role`, with view/change on `models`, and a first token (returned once)."""
    require(may(by, "auth.add_user"), "You may not create service accounts.")
    if role not in ROLE_NAMES:
        raise InvalidInput(f"Unknown role '{role}'.", code="invalid_role", extra={"allowed": list(ROLE_NAMES)})
    account = ServiceAccount(name=name, description=clean_text(description, "description"),
                             created_by=actor_text(by))
    full_clean(account, exclude=["user"])
    with transaction.atomic():
        username = f"{SERVICE_USERNAME_PREFIX}{name}"
        if ServiceAccount.objects.filter(name=name).exists() or User.objects.filter(username=username).exists():
            raise Conflict(f"A service account named '{name}' exists.", code="service_account_name_taken")
        taken = Conflict(f"A service account named '{name}' exists.", code="service_account_name_taken")
        try:
            with transaction.atomic():
                user = accounts.user_create(by=by, username=username, password=None, is_active=True, is_staff=False)
        except IntegrityError:
            raise taken
        account.user = user
        insert_unique(account, by=by, action="service_account.created", conflict=taken, role=role,
                models=[model.name for model in models or []])
        accounts.user_groups_add(user=user, groups=[Group.objects.get(name=role)], by=by)
        for model in models or []:
            for permission in TEAM_OBJECT_PERMISSIONS:
                permission_grant(permission=permission, to=user, obj=model, by=by)
        _, token = service_token_create(account=account, by=by, scope=scope, models=models, expires_at=expires_at)
    return account, token


def service_token_create(*, account: ServiceAccount, by: Any, scope: str = TokenScope.READ,
                         models: list[RegisteredModel] | None = None,
                         expires_at: datetime | None = None) -> tuple[ServiceToken, str]:
    """A new token for the account; the returned secret is shown once and never stored."""
    require(may(by, "auth.add_user"), "You may not create tokens.")
    if scope not in TokenScope.values:
        raise InvalidInput(f"Unknown token scope '{scope}'.", code="invalid_token_scope",
                           extra={"allowed": list(TokenScope.values)})
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.", code="invalid_input")
    prefix, token = _new_token()
    with transaction.atomic():
        row = ServiceToken(account=account, prefix=prefix, token_hash=hash_token(token), scope=scope,
                           expires_at=expires_at)
        row.save_recorded(action="service_token.created", by=by, extra={"account": account.name})
        if models:
            row.m2m_set_recorded("restricted_to", models, action="service_token.restricted", by=by,
                                 extra={"account": account.name})
    return row, token


def service_token_revoke(*, token: ServiceToken, by: Any, comment: str = "") -> ServiceToken:
    require(may(by, "auth.change_user"), "You may not revoke tokens.")
    comment = reason_required(comment, action="service_token.revoke")
    with transaction.atomic():
        token = lock_for_update(ServiceToken.objects).get(pk=token.pk)
        if token.revoked_at is not None:
            raise Conflict("The token is already revoked.", code="service_token_already_revoked")
        token.revoked_at = timezone.now()
        token.save_recorded(action="service_token.revoked", by=by, extra={"comment": comment})
    return token

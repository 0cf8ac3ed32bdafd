"""Ledger entries for access changes and sign-ins, whatever path makes them (services, admin, shell).

- Role and group membership (`User.groups`), model permissions of users and groups, and
  guardian object permissions: `role.granted` / `role.revoked`, `group.member_added` /
  `group.member_removed`, `permission.granted` / `permission.revoked`.
- Accounts: `user.created`, `user.updated` (before and after of the fields that decide access:
  `username`, `is_active`, `is_staff`, `is_superuser`), `auth.password_set` (never the hash;
  the hasher and whether the password is usable) and `user.deleted`. Names and e-mail
  addresses are personal data and not access: the ledger keeps everything for ever, so they
  are left out.
- Sign-ins (`auth.signed_in`) and failed sign-ins (`auth.sign_in_failed`). A failed attempt
  names the username only if such a user exists; otherwise a hash of it, because people type
  passwords into the username field and the ledger keeps everything for ever.
- Failed sign-ins also feed the sign-in rate limit (`governance.auth.login_throttle`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save, pre_save
from guardian.models import GroupObjectPermission, UserObjectPermission

from audit.ledger import ledger_append
from core.actor import acting_as, current_actor
from core.errors import InvalidInput
from governance.roles import ROLE_NAMES

UNATTRIBUTED = "system:unattributed"
_STASH = "_governance_m2m_before"


def _actor() -> Any:
    # Access changes are recorded even when nobody declared an actor (a shell, a test fixture):
    # an entry that says "unattributed" is evidence; a refused write would hide the change.
    try:
        return current_actor()
    except InvalidInput:
        return UNATTRIBUTED


def _user_label(user: Any) -> str:
    return f"user:{user.get_username()}"


def _perm_name(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def _ids(through: Any, column: str, value: Any, other: str) -> set[Any]:
    return set(through.objects.filter(**{column: value}).values_list(other, flat=True))


def _membership_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None,
                        **kwargs: Any) -> None:
    """User.groups (and Group.user_set): role and team membership."""
    user_model = get_user_model()
    if action == "pre_clear":
        column, other = ("group_id", "user_id") if reverse else ("user_id", "group_id")
        instance.__dict__[_STASH] = _ids(sender, column, instance.pk, other)
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    changed = pk_set if action != "post_clear" else instance.__dict__.pop(_STASH, set())
    if not changed:
        return
    added = action == "post_add"
    pairs: list[tuple[Any, Any]]
    if reverse:  # instance is a group, pk_set holds users
        pairs = [(user, instance) for user in user_model.objects.filter(pk__in=changed)]
    else:
        pairs = [(instance, group) for group in Group.objects.filter(pk__in=changed)]
    actor = _actor()
    for user, group in pairs:
        if group.name in ROLE_NAMES:
            action_name, payload = ("role.granted" if added else "role.revoked"), {"role": group.name}
        else:
            action_name, payload = ("group.member_added" if added else "group.member_removed"), {"group": group.name}
        payload["user"] = user.get_username()
        ledger_append(actor=actor, action=action_name, subject=("auth.user", str(user.pk)), payload=payload)


def _model_permissions_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None,
                               model: Any, **kwargs: Any) -> None:
    """Group.permissions and User.user_permissions: global (model-level) permissions."""
    if reverse or action not in ("pre_clear", "post_add", "post_remove", "post_clear"):
        return  # changes made from the Permission side are rare; the forward side covers the admin
    if action == "pre_clear":
        instance.__dict__[_STASH] = set(getattr(instance, "permissions" if isinstance(instance, Group)
                                                else "user_permissions").values_list("pk", flat=True))
        return
    changed = pk_set if action != "post_clear" else instance.__dict__.pop(_STASH, set())
    if not changed:
        return
    names = sorted(_perm_name(permission) for permission in
                   Permission.objects.filter(pk__in=changed).select_related("content_type"))
    holder = f"group:{instance.name}" if isinstance(instance, Group) else _user_label(instance)
    subject = ("auth.group" if isinstance(instance, Group) else "auth.user", str(instance.pk))
    key = "to" if action == "post_add" else "from"
    ledger_append(actor=_actor(), action="permission.granted" if action == "post_add" else "permission.revoked",
                  subject=subject, payload={"permissions": names, key: holder})


def _object_permission_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw or not created:
        return
    _object_permission_event(instance, "permission.granted", "to")


def _object_permission_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    _object_permission_event(instance, "permission.revoked", "from")


def _object_permission_event(instance: Any, action: str, key: str) -> None:
    holder = f"group:{instance.group.name}" if hasattr(instance, "group_id") else _user_label(instance.user)
    content_type = instance.content_type
    ledger_append(actor=_actor(), action=action,
                  subject=(f"{content_type.app_label}.{content_type.model}", str(instance.object_pk)),
                  payload={"permission": _perm_name(instance.permission), key: holder})


ACCESS_FIELDS = ("username", "is_active", "is_staff", "is_superuser")
_BEFORE = "_governance_account_before"


def _password_facts(encoded: str) -> dict[str, Any]:
    from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX

    usable = bool(encoded) and not encoded.startswith(UNUSABLE_PASSWORD_PREFIX)
    return {"usable": usable, "hasher": encoded.split("$", 1)[0] if usable and "$" in encoded else None}


def _account_before(sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    """Read the stored access fields and password before a user is saved (one query)."""
    instance.__dict__.pop(_BEFORE, None)
    if raw or instance.pk is None:
        return
    watched = (*ACCESS_FIELDS, "password")
    if update_fields is not None and not set(update_fields) & set(watched):
        return  # sign-ins save only last_login: nothing to record, no query
    row = sender._default_manager.filter(pk=instance.pk).values(*watched).first()
    if row is not None:
        instance.__dict__[_BEFORE] = row


def _account_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw:
        return
    subject = ("auth.user", str(instance.pk))
    after = {name: getattr(instance, name) for name in ACCESS_FIELDS}
    if created:
        ledger_append(actor=_actor(), action="user.created", subject=subject,
                      payload={**after, "password": _password_facts(instance.password)})
        return
    before = instance.__dict__.pop(_BEFORE, None)
    if before is None:
        return
    changed = [name for name in ACCESS_FIELDS if before[name] != after[name]]
    if changed:
        ledger_append(actor=_actor(), action="user.updated", subject=subject,
                      payload={"user": instance.get_username(), "before": {name: before[name] for name in changed},
                               "after": {name: after[name] for name in changed}})
    if before["password"] != instance.password:
        ledger_append(actor=_actor(), action="auth.password_set", subject=subject,
                      payload={"user": instance.get_username(), **_password_facts(instance.password)})


def _account_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    ledger_append(actor=_actor(), action="user.deleted", subject=("auth.user", str(instance.pk)),
                  payload={"user": instance.get_username()})


def _signed_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    ledger_append(actor=user, action="auth.signed_in", subject=("auth.user", str(user.pk)),
                  payload={"path": getattr(request, "path", "")[:200]})


def _sign_in_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    from governance.auth import login_throttle

    username = str(credentials.get("username") or "")[:150]
    user = get_user_model().objects.filter(username=username).first() if username else None
    if user is not None:
        subject, payload = ("auth.user", str(user.pk)), {"username": username}
    else:
        digest = hashlib.sha256(username.encode("utf-8")).hexdigest()[:16]
        subject, payload = ("auth.user", "unknown"), {"username_sha256_16": digest}
    payload["path"] = getattr(request, "path", "")[:200] if request is not None else ""
    ledger_append(actor="system:auth", action="auth.sign_in_failed", subject=subject, payload=payload)
    if request is not None:
        login_throttle.record_failure(username, request)


def _sync_roles_after_migrate(sender: Any, **kwargs: Any) -> None:
    from governance.roles import ADMINISTERED_APPS, READABLE_APPS, sync_role_groups

    # Each app's permissions are created by its own post_migrate (auth's handler runs first),
    # so sync after every app whose permissions roles hold.
    if getattr(sender, "label", None) not in {*READABLE_APPS, *ADMINISTERED_APPS}:
        return

    with acting_as("system:migrate"):
        sync_role_groups(group_model=Group, permission_model=Permission)


def connect() -> None:
    user_model = get_user_model()
    m2m_changed.connect(_membership_changed, sender=user_model.groups.through, dispatch_uid="gov-membership")
    m2m_changed.connect(_model_permissions_changed, sender=Group.permissions.through, dispatch_uid="gov-group-perms")
    m2m_changed.connect(_model_permissions_changed, sender=user_model.user_permissions.through,
                        dispatch_uid="gov-user-perms")
    for klass in (UserObjectPermission, GroupObjectPermission):
        post_save.connect(_object_permission_saved, sender=klass, dispatch_uid=f"gov-objperm-save-{klass.__name__}")
        post_delete.connect(_object_permission_deleted, sender=klass,
                            dispatch_uid=f"gov-objperm-delete-{klass.__name__}")
    pre_save.connect(_account_before, sender=user_model, dispatch_uid="gov-account-before")
    post_save.connect(_account_saved, sender=user_model, dispatch_uid="gov-account-saved")
    post_delete.connect(_account_deleted, sender=user_model, dispatch_uid="gov-account-deleted")
    user_logged_in.connect(_signed_in, dispatch_uid="gov-signed-in")
    user_login_failed.connect(_sign_in_failed, dispatch_uid="gov-sign-in-failed")
    post_migrate.connect(_sync_roles_after_migrate, dispatch_uid="gov-sync-roles")

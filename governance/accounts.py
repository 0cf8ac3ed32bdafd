"""Account and access changes, each recorded in the ledger by the service that makes it.

Services (the admin, the management commands and other services call these):
`user_create`, `user_save` (a user edited in memory, e.g. by an admin form), `user_flags_set`,
`user_password_set`, `user_delete`, `user_groups_add`, `user_groups_remove` and `user_access_set`
(groups and model permissions together, as the admin's user form sets them). Each writes the
change and its entries in one transaction, with the action named at the write:

- `user.created` (the access fields and facts about the password), `user.updated` (before and
  after of the fields that decide access: `username`, `is_active`, `is_staff`, `is_superuser`),
  `auth.password_set` (never the hash: the hasher and whether the password is usable),
  `user.deleted`; names and e-mail addresses are personal data, not access, and the ledger keeps
  everything for ever, so they are left out.
- `role.granted` / `role.revoked` for role groups, `group.member_added` / `group.member_removed`
  for other groups (teams); `permission.granted` / `permission.revoked` for model and object
  permissions; `auth.signed_in` (failed sign-ins: `governance.signin`, one entry per username and window).

The `record_*` functions are the one home of what those entries say. `governance.signals` calls
the same functions for the paths that do not go through a service (the Django shell,
`createsuperuser`, `changepassword`, guardian's `assign_perm`, lineage's demo pipeline user,
sign-ins). A service marks the instance it writes (`service_write`), and the signal handlers
skip a marked instance, so a change is recorded once, by the service.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from audit.ledger import ledger_append
from governance.roles import ROLE_NAMES
from governance.usernames import username_check

ACCESS_FIELDS = ("username", "is_active", "is_staff", "is_superuser")
SERVICE_WRITE = "_governance_service_write"


# --- What an entry says (one home for every path) -----------------------------------------------

def password_facts(encoded: str) -> dict[str, Any]:
    from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX

    usable = bool(encoded) and not encoded.startswith(UNUSABLE_PASSWORD_PREFIX)
    return {"usable": usable, "hasher": encoded.split("$", 1)[0] if usable and "$" in encoded else None}


def user_label(user: Any) -> str:
    return f"user:{user.get_username()}"


def perm_name(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def stored_access(user: Any) -> dict[str, Any] | None:
    """The stored access fields and password of a user (None for a user not saved yet)."""
    if user.pk is None:
        return None
    return type(user)._default_manager.filter(pk=user.pk).values(*ACCESS_FIELDS, "password").first()


def record_user_saved(user: Any, before: dict[str, Any] | None, *, created: bool, by: Any) -> None:
    """`user.created`, or `user.updated` and `auth.password_set` for what changed since `before`."""
    subject = ("auth.user", str(user.pk))
    after = {name: getattr(user, name) for name in ACCESS_FIELDS}
    if created:
        ledger_append(actor=by, action="user.created", subject=subject,
                      payload={**after, "password": password_facts(user.password)})
        return
    if before is None:
        return
    changed = [name for name in ACCESS_FIELDS if before[name] != after[name]]
    if changed:
        ledger_append(actor=by, action="user.updated", subject=subject,
                      payload={"user": user.get_username(), "before": {name: before[name] for name in changed},
                               "after": {name: after[name] for name in changed}})
    if before["password"] != user.password:
        ledger_append(actor=by, action="auth.password_set", subject=subject,
                      payload={"user": user.get_username(), **password_facts(user.password)})


def record_user_deleted(user: Any, *, by: Any) -> None:
    ledger_append(actor=by, action="user.deleted", subject=("auth.user", str(user.pk)),
                  payload={"user": user.get_username()})


def record_membership(user: Any, group: Group, *, added: bool, by: Any) -> None:
    """A role (role group) or a team/other group gained or lost a member."""
    if group.name in ROLE_NAMES:
        action, payload = ("role.granted" if added else "role.revoked"), {"role": group.name}
    else:
        action, payload = ("group.member_added" if added else "group.member_removed"), {"group": group.name}
    payload["user"] = user.get_username()
    ledger_append(actor=by, action=action, subject=("auth.user", str(user.pk)), payload=payload)


def record_model_permissions(holder: Any, permissions: Iterable[Permission], *, granted: bool, by: Any) -> None:
    """Model-level permissions of a user or group, granted or revoked together."""
    names = sorted(perm_name(permission) for permission in permissions)
    is_group = isinstance(holder, Group)
    label = f"group:{holder.name}" if is_group else user_label(holder)
    ledger_append(actor=by, action="permission.granted" if granted else "permission.revoked",
                  subject=("auth.group" if is_group else "auth.user", str(holder.pk)),
                  payload={"permissions": names, "to" if granted else "from": label})


def record_object_permission(row: Any, *, granted: bool, by: Any) -> None:
    """A guardian object permission (UserObjectPermission or GroupObjectPermission row)."""
    holder = f"group:{row.group.name}" if hasattr(row, "group_id") else user_label(row.user)
    content_type = row.content_type
    ledger_append(actor=by, action="permission.granted" if granted else "permission.revoked",
                  subject=(f"{content_type.app_label}.{content_type.model}", str(row.object_pk)),
                  payload={"permission": perm_name(row.permission), "to" if granted else "from": holder})


def record_signed_in(user: Any, *, path: str) -> None:
    ledger_append(actor=user, action="auth.signed_in", subject=("auth.user", str(user.pk)),
                  payload={"path": path[:200]})


@contextmanager
def service_write(instance: Any) -> Iterator[None]:
    """Mark `instance` while a service writes it: the signal handlers leave its recording to the service."""
    instance.__dict__[SERVICE_WRITE] = True
    try:
        yield
    finally:
        instance.__dict__.pop(SERVICE_WRITE, None)


def is_service_write(instance: Any) -> bool:
    return bool(instance.__dict__.get(SERVICE_WRITE))


# --- Services -----------------------------------------------------------------------------------

def user_save(*, user: Any, by: Any) -> Any:
    """Save a user created or edited in memory (e.g. by an admin form); record what changed in access.

    A new or changed username must not pass for another (`governance.usernames.username_check`).
    """
    with transaction.atomic():
        created = user.pk is None or user._state.adding
        before = None if created else stored_access(user)
        with service_write(user):
            user.save()
        record_user_saved(user, before, created=created, by=by)
        if created or before is None or before["username"] != user.get_username():
            # Checked after the entry: the ledger's head lock, held to the commit, orders two
            # look-alikes created at once, so the second sees the first. A refusal rolls both back.
            username_check(user.get_username(), exclude_pk=user.pk)
    return user


def user_create(*, by: Any, username: str, password: str | None = None, email: str = "", is_active: bool = True,
                is_staff: bool = False, is_superuser: bool = False) -> Any:
    """A new user; without a password, one that cannot sign in with a password (set it later)."""
    user = get_user_model()(username=username, email=email, is_active=is_active, is_staff=is_staff,
                            is_superuser=is_superuser)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    return user_save(user=user, by=by)


def user_flags_set(*, user: Any, by: Any, is_active: bool | None = None, is_staff: bool | None = None,
                   is_superuser: bool | None = None) -> Any:
    """Change the access flags given (the others stay); recorded as `user.updated` if any changed."""
    for name, value in (("is_active", is_active), ("is_staff", is_staff), ("is_superuser", is_superuser)):
        if value is not None:
            setattr(user, name, bool(value))
    return user_save(user=user, by=by)


def user_password_set(*, user: Any, by: Any, password: str | None) -> Any:
    """Set a password (None: no usable password); recorded as `auth.password_set`, never the hash."""
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    return user_save(user=user, by=by)


def user_delete(*, user: Any, by: Any) -> None:
    pk = user.pk
    with transaction.atomic():
        with service_write(user):
            user.delete()
        user.pk = pk  # Django clears it after the delete; the entry names the deleted user
        try:
            record_user_deleted(user, by=by)
        finally:
            user.pk = None


def user_groups_add(*, user: Any, groups: Iterable[Group], by: Any) -> None:
    """Add the user to groups (roles or teams); one entry per group the user was not in."""
    with transaction.atomic():
        held = set(user.groups.values_list("pk", flat=True))
        new = [group for group in groups if group.pk not in held]
        with service_write(user):
            user.groups.add(*new)
        for group in new:
            record_membership(user, group, added=True, by=by)


def user_groups_remove(*, user: Any, groups: Iterable[Group], by: Any) -> None:
    with transaction.atomic():
        held = set(user.groups.values_list("pk", flat=True))
        gone = [group for group in groups if group.pk in held]
        with service_write(user):
            user.groups.remove(*gone)
        for group in gone:
            record_membership(user, group, added=False, by=by)


def user_access_set(*, user: Any, by: Any, groups: Iterable[Group] | None = None,
                    permissions: Iterable[Permission] | None = None) -> None:
    """Set the user's groups and model permissions to exactly these (as the admin's user form does)."""
    with transaction.atomic():
        if groups is not None:
            wanted = {group.pk: group for group in groups}
            current = {group.pk: group for group in user.groups.all()}
            user_groups_remove(user=user, groups=[group for pk, group in current.items() if pk not in wanted], by=by)
            user_groups_add(user=user, groups=[group for pk, group in wanted.items() if pk not in current], by=by)
        if permissions is not None:
            wanted_perms = {permission.pk: permission for permission in permissions}
            current_perms = set(user.user_permissions.values_list("pk", flat=True))
            removed = [pk for pk in current_perms if pk not in wanted_perms]
            added = [pk for pk in wanted_perms if pk not in current_perms]
            with service_write(user):
                if removed:
                    user.user_permissions.remove(*removed)
                if added:
                    user.user_permissions.add(*added)
            related = Permission.objects.select_related("content_type")
            if removed:
                record_model_permissions(user, related.filter(pk__in=removed), granted=False, by=by)
            if added:
                record_model_permissions(user, related.filter(pk__in=added), granted=True, by=by)

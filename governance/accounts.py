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
from django.db.models import Q

from audit.ledger import ledger_append
from audit.refusals import refusal_recorded
from core.errors import Conflict, Forbidden
from governance.roles import (
    APPROVER,
    GUARDED_ROLES,
    ROLE_NAMES,
    excluded_pairs,
    permission_role,
)
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


# --- Who may change whose access: the one home of the privilege rules ------------------------------
# Every account service below, the approver scopes and the grant requests (`governance.grants`)
# call `privileges_check` before they write: nobody changes their own access; a decision role,
# admin (the role or its permissions) or an approver scope is granted to a person only as the
# execution of a grant request another admin approved; the roles of the separation-of-duties
# matrix (`governance.roles.EXCLUDES`) never meet in one user; `is_superuser` changes only on the
# command line. System actors (`system:<command>`: migrations, seed_demo, tests' setup) are the
# bootstrap path: their grants are recorded under their own name.

def is_system_actor(by: Any) -> bool:
    return isinstance(by, str) and by.startswith("system:")


def is_same_person(by: Any, user: Any) -> bool:
    if isinstance(by, str):
        return user.pk is not None and by == user_label(user)
    return getattr(by, "pk", None) is not None and by.pk == user.pk


def held_roles(user: Any) -> set[str]:
    """The roles of the matrix a user holds: role groups, plus what direct or group permissions amount to."""
    if user.pk is None:
        return set()
    from guardian.models import GroupObjectPermission, UserObjectPermission

    groups = list(user.groups.all())
    held = {group.name for group in groups if group.name in ROLE_NAMES}
    other_groups = [group.pk for group in groups if group.name not in ROLE_NAMES]
    names = {perm_name(permission) for permission in Permission.objects.select_related("content_type").filter(
        Q(user=user) | Q(group__in=other_groups)).distinct()}
    held |= {role for role in map(permission_role, names) if role is not None}
    scoped = (UserObjectPermission.objects.filter(user=user, permission__codename="approve_registeredmodel").exists()
              or GroupObjectPermission.objects.filter(group__in=other_groups,
                                                      permission__codename="approve_registeredmodel").exists())
    if scoped:
        held.add(APPROVER)
    return held


def group_roles(group: Group) -> set[str]:
    """The roles membership of `group` amounts to: its role name, or what its guarded permissions grant."""
    if group.name in ROLE_NAMES:
        return {group.name}
    names = {perm_name(permission) for permission in group.permissions.select_related("content_type")}
    return {role for role in map(permission_role, names) if role is not None}


def privileges_check(*, by: Any, user: Any, adding: set[str] = frozenset(), changes_access: bool = True,  # type: ignore[assignment]
                     grant_request: Any = None) -> None:
    """Refuse an access change `by` may not make to `user`, with a stable code.

    `adding` names the roles (of `ROLE_NAMES`) the change gives; `changes_access` says whether it
    changes the user's groups, permissions or staff/superuser flags at all (self-changes are refused).
    """
    if changes_access and is_same_person(by, user):
        raise Forbidden("Nobody changes their own groups, permissions, staff or superuser flags.",
                        code="privilege_self_change", extra={"user": user.get_username()})
    guarded = sorted(set(adding) & GUARDED_ROLES)
    if guarded and not is_system_actor(by):
        covered = grant_request is not None and grant_request.covers(user=user, roles=set(guarded))
        if not covered:
            raise Forbidden("Granting a decision role, admin or superuser needs a grant request that another "
                            "admin approved.", code="privilege_request_required",
                            extra={"user": user.get_username(), "roles": guarded})
    pairs = excluded_pairs(held_roles(user), set(adding))
    if pairs:
        raise Conflict("Separation of duties: these roles exclude each other.",
                       code="privilege_separation_of_duties",
                       extra={"user": user.get_username(), "pairs": [list(pair) for pair in pairs]})


def superuser_check(*, by: Any, before: bool, after: bool) -> None:
    if before != after and not is_system_actor(by):
        raise Forbidden("Superusers are made (and unmade) only on the command line.",
                        code="superuser_command_line_only")


def password_check(*, by: Any, user: Any) -> None:
    """Only its holder (or the command line) sets the password of a decision role, an admin or a superuser."""
    if is_system_actor(by) or is_same_person(by, user):
        return
    if user.is_superuser or held_roles(user) & GUARDED_ROLES:
        raise Forbidden("The password of an approver, risk officer, admin or superuser is set by its holder "
                        "(or on the command line), never by another person.", code="privilege_password_reset",
                        extra={"user": user.get_username()})


def _refusal_subject(user: Any) -> tuple[str, str]:
    return ("auth.user", str(user.pk) if user.pk is not None else f"new:{user.get_username()}")


# --- Services -----------------------------------------------------------------------------------

def user_save(*, user: Any, by: Any) -> Any:
    """Save a user created or edited in memory (e.g. by an admin form); record what changed in access.

    Refused: a change of one's own staff or superuser flag, any change of `is_superuser` that is
    not made on the command line, and another person setting the password of a decision-role
    holder, an admin or a superuser (signing in as them would be granting oneself their role).
    A new or changed username must not pass for another (`governance.usernames.username_check`).
    """
    created = user.pk is None or user._state.adding
    before = None if created else stored_access(user)
    flags_before = {"is_staff": False, "is_superuser": False} if before is None else before
    flags = {name: (flags_before[name], bool(getattr(user, name))) for name in ("is_staff", "is_superuser")}
    changed = {name: pair for name, pair in flags.items() if pair[0] != pair[1]}
    if changed:
        with refusal_recorded(actor=by, action="user.created" if created else "user.updated",
                              subject=_refusal_subject(user),
                              attempt={name: after for name, (_, after) in changed.items()}):
            superuser_check(by=by, before=flags["is_superuser"][0], after=flags["is_superuser"][1])
            if not created:
                privileges_check(by=by, user=user, changes_access=True)
    if before is not None and before["password"] != user.password:
        with refusal_recorded(actor=by, action="auth.password_set", subject=_refusal_subject(user),
                              attempt={"user": user.get_username()}):
            password_check(by=by, user=user)
    with transaction.atomic():
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


def user_groups_add(*, user: Any, groups: Iterable[Group], by: Any, grant_request: Any = None) -> None:
    """Add the user to groups (roles or teams); one entry per group the user was not in."""
    groups = list(groups)
    held = set(user.groups.values_list("pk", flat=True))
    new = [group for group in groups if group.pk not in held]
    if not new:
        return
    adding = set().union(*(group_roles(group) for group in new))
    with refusal_recorded(actor=by, action="role.granted", subject=_refusal_subject(user),
                          attempt={"groups": sorted(group.name for group in new)}):
        privileges_check(by=by, user=user, adding=adding, grant_request=grant_request)
    with transaction.atomic():
        with service_write(user):
            user.groups.add(*new)
        for group in new:
            record_membership(user, group, added=True, by=by)


def user_groups_remove(*, user: Any, groups: Iterable[Group], by: Any) -> None:
    groups = list(groups)
    held = set(user.groups.values_list("pk", flat=True))
    gone = [group for group in groups if group.pk in held]
    if not gone:
        return
    with refusal_recorded(actor=by, action="role.revoked", subject=_refusal_subject(user),
                          attempt={"groups": sorted(group.name for group in gone)}):
        privileges_check(by=by, user=user)
    with transaction.atomic():
        with service_write(user):
            user.groups.remove(*gone)
        for group in gone:
            record_membership(user, group, added=False, by=by)


def user_access_set(*, user: Any, by: Any, groups: Iterable[Group] | None = None,
                    permissions: Iterable[Permission] | None = None) -> None:
    """Set the user's groups and model permissions to exactly these (as the admin's user form does).

    Guarded permissions (decision scopes, user and group management) are never set directly: they
    come with a role, granted through a request (`governance.grants`).
    """
    adding: set[str] = set()
    attempt: dict[str, list[str]] = {}
    changes = False
    if groups is not None:
        groups = list(groups)
        current_groups = set(user.groups.values_list("pk", flat=True))
        added_groups = [group for group in groups if group.pk not in current_groups]
        changes |= bool(added_groups) or bool(current_groups - {group.pk for group in groups})
        adding |= set().union(*(group_roles(group) for group in added_groups))
        attempt["groups"] = sorted(group.name for group in added_groups)
    if permissions is not None:
        permissions = list(permissions)
        current_perms = set(user.user_permissions.values_list("pk", flat=True))
        added_perms = [permission for permission in permissions if permission.pk not in current_perms]
        changes |= bool(added_perms) or bool(current_perms - {permission.pk for permission in permissions})
        adding |= {role for role in (permission_role(perm_name(permission)) for permission in added_perms) if role}
        attempt["permissions"] = sorted(perm_name(permission) for permission in added_perms)
    if not changes:
        return
    with refusal_recorded(actor=by, action="user.access_set", subject=_refusal_subject(user), attempt=attempt):
        privileges_check(by=by, user=user, adding=adding)
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
            _model_permissions_apply(user, user.user_permissions, removed=removed, added=added, by=by)


def _model_permissions_apply(holder: Any, manager: Any, *, removed: list[int], added: list[int], by: Any) -> None:
    """Remove and add model permissions on a user or group (inside the caller's transaction), each recorded."""
    with service_write(holder):
        if removed:
            manager.remove(*removed)
        if added:
            manager.add(*added)
    related = Permission.objects.select_related("content_type")
    if removed:
        record_model_permissions(holder, related.filter(pk__in=removed), granted=False, by=by)
    if added:
        record_model_permissions(holder, related.filter(pk__in=added), granted=True, by=by)


def group_save(*, group: Group, by: Any) -> Group:
    """Create or rename a group (the admin's group form); recorded as `group.created` / `group.updated`."""
    with transaction.atomic():
        created = group.pk is None
        before = None if created else Group.objects.filter(pk=group.pk).values_list("name", flat=True).first()
        group.save()
        if created or before != group.name:
            ledger_append(actor=by, action="group.created" if created else "group.updated",
                          subject=("auth.group", str(group.pk)),
                          payload={"name": group.name} if created else {"before": {"name": before},
                                                                       "after": {"name": group.name}})
    return group


def group_permissions_set(*, group: Group, permissions: Iterable[Permission], by: Any) -> None:
    """Set a group's model permissions to exactly these (the admin's group form).

    Refused: changing a group one belongs to (`privilege_self_change`), and adding a decision or
    admin permission by a person (`privilege_request_required`: those come with the role groups).
    """
    permissions = list(permissions)
    wanted = {permission.pk: permission for permission in permissions}
    current = set(group.permissions.values_list("pk", flat=True))
    added = [permission for pk, permission in wanted.items() if pk not in current]
    removed = [pk for pk in current if pk not in wanted]
    if not added and not removed:
        return
    adding = {role for role in (permission_role(perm_name(permission)) for permission in added) if role}
    with refusal_recorded(actor=by, action="permission.granted", subject=("auth.group", str(group.pk)),
                          attempt={"group": group.name, "permissions": sorted(perm_name(p) for p in added)}):
        if not is_system_actor(by):
            members = get_user_model().objects.filter(groups=group)
            if any(is_same_person(by, member) for member in members):
                raise Forbidden("Nobody changes the permissions of a group they belong to.",
                                code="privilege_self_change", extra={"group": group.name})
            if adding:
                raise Forbidden("Decision and admin permissions come with the role groups, granted by request.",
                                code="privilege_request_required", extra={"group": group.name,
                                                                          "roles": sorted(adding)})
        for member in get_user_model().objects.filter(groups=group):
            pairs = excluded_pairs(held_roles(member), adding)
            if pairs:
                raise Conflict("Separation of duties: these roles exclude each other.",
                               code="privilege_separation_of_duties",
                               extra={"user": member.get_username(), "pairs": [list(pair) for pair in pairs]})
    with transaction.atomic():
        _model_permissions_apply(group, group.permissions, removed=removed,
                                 added=[permission.pk for permission in added], by=by)

"""The fallback for access changes made outside the services, and the record of sign-ins.

Services record their own account and access changes (`governance.accounts`: the admin, the
management commands and the services call them). These handlers exist for the paths that do not:
the Django shell, `createsuperuser`, `changepassword`, guardian's `assign_perm`, code in a lower
layer (lineage's demo pipeline user), and sign-ins, which only Django's auth signals see. They
call the same `governance.accounts.record_*` functions (one home for what an entry says) and skip
an instance a service is writing (`accounts.is_service_write`), so nothing is recorded twice.
Entries: `role.granted` / `role.revoked`, `group.member_added` / `group.member_removed`,
`permission.granted` / `permission.revoked`, `user.created`, `user.updated`,
`auth.password_set`, `user.deleted`, `auth.signed_in`, `auth.sign_in_failed`.
Failed sign-ins are counted per username and window (`governance.signin`); django-axes limits them.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save, pre_save
from guardian.models import GroupObjectPermission, UserObjectPermission

from core.actor import acting_as, current_actor
from core.errors import InvalidInput
from governance import accounts
from governance.usernames import username_check

UNATTRIBUTED = "system:unattributed"
_STASH = "_governance_m2m_before"
_BEFORE = "_governance_account_before"


def _actor() -> Any:
    # Access changes are recorded even when nobody declared an actor (a shell, a test fixture):
    # an entry that says "unattributed" is evidence; a refused write would hide the change.
    try:
        return current_actor()
    except InvalidInput:
        return UNATTRIBUTED


def _ids(through: Any, column: str, value: Any, other: str) -> set[Any]:
    return set(through.objects.filter(**{column: value}).values_list(other, flat=True))


def _membership_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None,
                        **kwargs: Any) -> None:
    """User.groups (and Group.user_set) changed outside `accounts.user_groups_*`: role and team membership."""
    if accounts.is_service_write(instance):
        return
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
    pairs: list[tuple[Any, Any]]
    if reverse:  # instance is a group, pk_set holds users
        pairs = [(user, instance) for user in user_model.objects.filter(pk__in=changed)]
    else:
        pairs = [(instance, group) for group in Group.objects.filter(pk__in=changed)]
    actor = _actor()
    for user, group in pairs:
        accounts.record_membership(user, group, added=action == "post_add", by=actor)


def _model_permissions_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None,
                               model: Any, **kwargs: Any) -> None:
    """Group.permissions and User.user_permissions: global (model-level) permissions."""
    if reverse or action not in ("pre_clear", "post_add", "post_remove", "post_clear"):
        return  # changes made from the Permission side are rare; the forward side covers the admin
    if accounts.is_service_write(instance):
        return
    if action == "pre_clear":
        instance.__dict__[_STASH] = set(getattr(instance, "permissions" if isinstance(instance, Group)
                                                else "user_permissions").values_list("pk", flat=True))
        return
    changed = pk_set if action != "post_clear" else instance.__dict__.pop(_STASH, set())
    if not changed:
        return
    accounts.record_model_permissions(instance, Permission.objects.filter(pk__in=changed).select_related("content_type"),
                                      granted=action == "post_add", by=_actor())


def _object_permission_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw or not created:
        return
    accounts.record_object_permission(instance, granted=True, by=_actor())


def _object_permission_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    accounts.record_object_permission(instance, granted=False, by=_actor())


def _account_before(sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    """Read the stored access fields and password before a user is saved (one query)."""
    instance.__dict__.pop(_BEFORE, None)
    if raw or accounts.is_service_write(instance):
        return
    if instance.pk is None:
        username_check(instance.get_username())  # createsuperuser, the shell: no look-alike names either
        return
    if update_fields is not None and not set(update_fields) & {*accounts.ACCESS_FIELDS, "password"}:
        return  # sign-ins save only last_login: nothing to record, no query
    row = accounts.stored_access(instance)
    if row is not None:
        if row["username"] != instance.get_username():
            username_check(instance.get_username(), exclude_pk=instance.pk)
        instance.__dict__[_BEFORE] = row


def _account_saved(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw or accounts.is_service_write(instance):
        return
    before = None if created else instance.__dict__.pop(_BEFORE, None)
    accounts.record_user_saved(instance, before, created=created, by=_actor())


def _account_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    if accounts.is_service_write(instance):
        return
    accounts.record_user_deleted(instance, by=_actor())


def _signed_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    accounts.record_signed_in(user, path=getattr(request, "path", ""))


def _sign_in_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    from governance.signin import sign_in_failure_record

    username = str(credentials.get("username") or "")[:150]
    sign_in_failure_record(username, path=getattr(request, "path", "") if request is not None else "")


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

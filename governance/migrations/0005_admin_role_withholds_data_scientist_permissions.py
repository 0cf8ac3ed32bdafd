"""Take a data scientist's capabilities (roles.ADMIN_WITHHELD) away from the admin role group.

`sync_role_groups` only adds permissions, so the admin groups of existing databases keep the
ones 0002 gave them; this removes them. Reversing gives them back.
"""

from django.db import migrations


def _withheld(apps):
    from governance.roles import ADMIN, ADMIN_WITHHELD

    group = apps.get_model("auth", "Group").objects.filter(name=ADMIN).first()
    permission = apps.get_model("auth", "Permission")
    pairs = [name.split(".", 1) for name in sorted(ADMIN_WITHHELD)]
    found = [permission.objects.filter(content_type__app_label=app, codename=code).first() for app, code in pairs]
    return group, [item for item in found if item is not None]


def withhold(apps, schema_editor):
    group, permissions = _withheld(apps)
    if group is not None and permissions:
        group.permissions.remove(*permissions)


def restore(apps, schema_editor):
    group, permissions = _withheld(apps)
    if group is not None and permissions:
        group.permissions.add(*permissions)


class Migration(migrations.Migration):
    dependencies = [("governance", "0004_policy_pins_evidence_two_person_changes")]

    operations = [migrations.RunPython(withhold, restore)]

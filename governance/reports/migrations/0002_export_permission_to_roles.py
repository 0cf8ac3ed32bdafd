"""Give the auditor and admin role groups `reports.export_bundle`.

The role groups are created by governance's migration; permissions are normally created only
after all migrations (post_migrate), so this migration creates the reports app's permissions
first, then grants the export permission.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

EXPORT_ROLES = ("auditor", "admin")


def grant_export(apps, schema_editor):
    app_config = apps.get_app_config("reports")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permission = Permission.objects.get(content_type__app_label="reports", codename="export_bundle")
    for group in Group.objects.filter(name__in=EXPORT_ROLES):
        group.permissions.add(permission)


def revoke_export(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permission = Permission.objects.filter(content_type__app_label="reports", codename="export_bundle").first()
    if permission is not None:
        for group in Group.objects.filter(name__in=EXPORT_ROLES):
            group.permissions.remove(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_initial"),
        ("governance", "0002_role_groups"),
    ]

    operations = [migrations.RunPython(grant_export, revoke_export)]

"""Create the role groups (viewer, data_scientist, approver, risk_officer, auditor, admin) with their permissions.

Permissions are normally created after all migrations (post_migrate); they are created here
first so the groups can hold them. A post-migrate hook (governance.signals) re-runs the same
sync, so permissions of models added later reach the roles too.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_role_groups(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    from governance.roles import sync_role_groups

    sync_role_groups(group_model=apps.get_model("auth", "Group"), permission_model=apps.get_model("auth", "Permission"))


def remove_role_groups(apps, schema_editor):
    from governance.roles import ROLE_NAMES

    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_NAMES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_role_groups, remove_role_groups)]

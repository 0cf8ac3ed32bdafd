"""Reports permissions for the role groups: auditors read exports and reports, risk officers also
manage report schedules, admins hold every reports permission.

Like 0002, this creates the app's permissions first (they are normally created after all
migrations), so the groups can hold them on a fresh database.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GRANTS = {
    "auditor": ["view_bundleexport", "view_generatedreport", "view_reportschedule", "export_bundle"],
    "risk_officer": ["view_bundleexport", "view_generatedreport", "view_reportschedule", "add_reportschedule",
                     "change_reportschedule", "delete_reportschedule"],
    "admin": ["view_bundleexport", "view_generatedreport", "view_reportschedule", "add_reportschedule",
              "change_reportschedule", "delete_reportschedule", "export_bundle"],
}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("reports")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    for role, codenames in GRANTS.items():
        group = Group.objects.filter(name=role).first()
        if group is not None:
            group.permissions.add(*Permission.objects.filter(content_type__app_label="reports",
                                                             codename__in=codenames))


def revoke(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    for role, codenames in GRANTS.items():
        group = Group.objects.filter(name=role).first()
        if group is not None:
            group.permissions.remove(*Permission.objects.filter(content_type__app_label="reports",
                                                                codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0003_reportschedule_generatedreport"),
    ]

    operations = [migrations.RunPython(grant, revoke)]

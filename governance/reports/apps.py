from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "governance.reports"
    label = "reports"
    verbose_name = "Reports and bundles"
    default_auto_field = "django.db.models.BigAutoField"
